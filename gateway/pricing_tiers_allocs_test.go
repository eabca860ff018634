//go:build !race

package gateway

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// TestServiceTierAllocs: an answer naming its tier, priced at the tier's prices,
// counted and logged with its tier, costs the request path no allocation more than
// TestAccessLogAllocs's budget; a stream naming it in every chunk none more than
// TestStreamAllocs's.
func TestServiceTierAllocs(t *testing.T) {
	t.Run("answer", func(t *testing.T) {
		up := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
			ctx.Response.Header.SetContentTypeBytes(strJSON)
			ctx.Response.SetBodyRaw(ptTierResp)
		})
		s := newTestServer(t, ptTiersYAML(up))
		if len(s.rt.Load().backends["up"].Pricing.Tiers) != 2 {
			t.Fatal("the config's tiers did not reach the backend")
		}
		ctx := newProxyCtx(benchChatBody)
		proxyOnce(s, ctx)
		if ctx.Response.StatusCode() != 200 {
			t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
		const budget = 0
		if n := allocsPerRun(200, func() { proxyOnce(s, ctx) }); n > budget {
			t.Fatalf("%.1f allocations per request, budget %d", n, budget)
		}
	})
	t.Run("stream", func(t *testing.T) {
		var body []byte
		for range 32 {
			body = append(body, `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":" word"},"logprobs":null,"finish_reason":null}],"service_tier":"priority"}`+"\n\n"...)
		}
		body = append(body, `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":20,"completion_tokens":32,"total_tokens":52},"service_tier":"priority"}`+"\n\n"...)
		body = append(body, "data: [DONE]\n\n"...)
		up := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
			ctx.Response.Header.SetContentType("text/event-stream")
			ctx.Response.SetBodyRaw(body)
		})
		s := newTestServer(t, ptTiersYAML(up))
		ctx := newProxyCtx([]byte(`{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
		ctx.Request.Header.SetConnectionClose()
		sink := make([]byte, 4096)
		if n := streamOnce(t, s, ctx, sink); n < 1000 {
			t.Fatalf("stream relayed only %d bytes", n)
		}
		// As TestStreamAllocs: 1 per stream, and the request pool's refill after a GC.
		const budget = 3
		if n := allocsPerRun(100, func() { streamOnce(t, s, ctx, sink) }); n > budget {
			t.Fatalf("%.1f allocations per stream, budget %d", n, budget)
		}
	})
}
