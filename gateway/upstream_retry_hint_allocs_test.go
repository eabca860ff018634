//go:build !race

package gateway

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// Passing an upstream's x-should-retry on costs nothing: the hint is read into the
// upstream's error as a small value, and written from the gateway's own "true" and
// "false". An upstream error that says it, with a wait the gateway answers "false"
// for, costs no more than one that says neither.
func TestUpstreamRetryHintAllocs(t *testing.T) {
	cost := func(hdr ...string) float64 {
		var kv [][2][]byte
		for i := 0; i+1 < len(hdr); i += 2 {
			kv = append(kv, [2][]byte{[]byte(hdr[i]), []byte(hdr[i+1])})
		}
		addr := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
			for _, h := range kv {
				ctx.Response.Header.SetBytesKV(h[0], h[1])
			}
			ctx.SetStatusCode(fasthttp.StatusTooManyRequests)
			ctx.Response.Header.SetContentTypeBytes(strJSON)
			ctx.Response.SetBodyRaw(benchRateLimited)
		})
		s := newTestServer(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], retries: 0}
logging: {level: error, access_log: false}
`)
		ctx := newProxyCtx(benchChatBody)
		proxyOnce(s, ctx)
		if ctx.Response.StatusCode() != 429 {
			t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
		return allocsPerRun(200, func() { proxyOnce(s, ctx) })
	}
	plain := cost()
	t.Logf("%.1f allocations per upstream error answer", plain)
	for _, hdr := range [][]string{
		{"X-Should-Retry", "false"},
		{"X-Should-Retry", "true", "Retry-After", "0.5"},
		{"X-Should-Retry", "true", "Retry-After", "120"},
	} {
		if n := cost(hdr...); n > plain {
			t.Errorf("%q: %.1f allocations per answer, %.1f without", hdr, n, plain)
		}
	}
}

var benchRateLimited = []byte(`{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}`)
