package gateway

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
)

// A proxy that accepts the connection and never answers (the SOCKS5 greeting, or
// CONNECT) fails the attempt with 504 upstream_timeout once connect_timeout or what is
// left of the attempt's timeout has run out, whichever comes first: README
// "connect_timeout" and "within connect_timeout and the request's deadline".
func TestUpstreamProxySilentBoundedByDialDeadline(t *testing.T) {
	t.Parallel()
	silent := serveTCP(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		_, _ = io.Copy(io.Discard, c)
	})
	// Well under the 2s either bound would allow were the other one ignored.
	const within = 1500 * time.Millisecond
	cases := []struct{ name, proxy, bounds string }{
		{"socks5, connect_timeout first", "socks5://" + silent, "connect_timeout: 300ms, timeout: 2s"},
		{"http, attempt timeout first", "http://" + silent, "connect_timeout: 2s, timeout: 300ms"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://127.0.0.1:9/v1", model: up-model, proxy: "`+c.proxy+`", `+c.bounds+`}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`)
			cl := g.client()
			ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := cl.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg("hi")})
			took := time.Since(start)
			if ctx.Err() != nil {
				t.Fatalf("no answer after %v: the silent proxy holds the request (%s)", took, c.bounds)
			}
			if e := apiErr(t, err); e.StatusCode != 504 || e.Code != "upstream_timeout" || took > within {
				t.Fatalf("%d %q after %v, want 504 upstream_timeout within %v (%s)", e.StatusCode, e.Code, took, within, c.bounds)
			}
		})
	}
}
