package gateway

import (
	"math"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// largeBodyUpstream answers every chat completion, however large its body (up to
// 64 MiB, where fasthttp's default is 4 MiB).
func largeBodyUpstream(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{MaxRequestBodySize: 64 << 20, Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		ctx.Response.SetBodyRaw(benchChatResp)
	}}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}

// maxBodyConfig serves chat from upstream with max_body_bytes max.
func maxBodyConfig(upstream, max string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: ` + max + `}
backends:
  up: {provider: openai, base_url: "http://` + upstream + `/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
logging: {level: warn, access_log: false}
`
}

// chatOfSize is a chat request with n bytes of content.
func chatOfSize(n int) string {
	return `{"model":"chat","messages":[{"role":"user","content":"` + strings.Repeat("a", n) + `"}]}`
}

// README: raising server.max_body_bytes above its value at start takes effect on
// restart, with a warning; lowering it applies at once. The limit in force after a
// raise is the value at start, for every body size: the handler once checked the new
// value under the listener's read limit made from the old one, so a 64KiB -> 4MiB
// reload let 512 KiB through and refused 2 MiB.
func TestReloadMaxBodyBytes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, to string
		warns    bool
		bodies   map[int]int // content size -> status
	}{
		{"raised: the value at start stays", "4MiB", true, map[int]int{
			32 << 10: http.StatusOK, 512 << 10: http.StatusRequestEntityTooLarge, 2 << 20: http.StatusRequestEntityTooLarge,
		}},
		{"lowered: applies at once", "16KiB", false, map[int]int{
			8 << 10: http.StatusOK, 32 << 10: http.StatusRequestEntityTooLarge,
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			up := largeBodyUpstream(t)
			g := startGateway(t, maxBodyConfig(up, "64KiB"))
			if err := os.WriteFile(g.path, []byte(maxBodyConfig(up, c.to)), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := g.Reload(); err != nil {
				t.Fatal(err)
			}
			if warned := strings.Contains(g.logs.String(), "server.max_body_bytes can be raised"); warned != c.warns {
				t.Errorf("64KiB -> %s: restart warning logged %v, want %v: %s", c.to, warned, c.warns, g.logs.String())
			}
			for size, want := range c.bodies {
				if resp, body := postChat(t, g, chatOfSize(size)); resp.StatusCode != want {
					t.Errorf("64KiB -> %s: a %d-byte message got %d, want %d: %.200s", c.to, size, resp.StatusCode, want, body)
				}
			}
		})
	}
}

// The listener's read limit (2 * max_body_bytes + 1MiB) saturates: from 2^62 it
// wrapped negative, and fasthttp then applied its own 4 MiB default.
func TestReadLimitSaturates(t *testing.T) {
	for _, c := range []struct{ max, want int }{
		{8 << 20, 17 << 20},
		{1 << 60, 1<<61 + 1<<20},
		{1 << 62, math.MaxInt >> 1},
		{math.MaxInt64, math.MaxInt >> 1},
	} {
		if got := readLimit(c.max); got != c.want {
			t.Errorf("readLimit(%d) = %d, want %d", c.max, got, c.want)
		}
	}
}

// A max_body_bytes the config accepts, however large (an operator's "no limit"),
// lets through a body under it: 5 MiB, over fasthttp's 4 MiB default.
func TestHugeMaxBodyBytesAcceptsLargeBody(t *testing.T) {
	t.Parallel()
	g := startGateway(t, maxBodyConfig(largeBodyUpstream(t), "4611686018427387904")) // 2^62
	if resp, body := postChat(t, g, chatOfSize(5<<20)); resp.StatusCode != http.StatusOK {
		t.Fatalf("max_body_bytes 2^62: a 5 MiB body got %d %.200s (listener limit %d)", resp.StatusCode, body, g.api.MaxRequestBodySize)
	}
}
