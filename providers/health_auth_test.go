package providers

import (
	"net"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"
)

// An active health check carries the backend's credentials and headers as its
// requests do: a hosted API (OpenAI's /v1/models, Azure's deployments, Anthropic's)
// answers a check without them 401, which would keep every target down.
func TestHealthCheckCarriesCredentials(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want map[string]string
	}{
		{"openai", Config{Provider: "openai", APIKey: "sk-health-0123456789", Headers: map[string]string{"OpenAI-Project": "proj_1"}},
			map[string]string{"Authorization": "Bearer sk-health-0123456789", "OpenAI-Project": "proj_1"}},
		{"azure", Config{Provider: "azure", APIKey: "az-health-0123456789", Deployment: "gpt-4o", APIVersion: "2024-10-21"},
			map[string]string{"Api-Key": "az-health-0123456789"}},
		{"anthropic", Config{Provider: "anthropic", APIKey: "sk-ant-health-0123456789"},
			map[string]string{"X-Api-Key": "sk-ant-health-0123456789", "Anthropic-Version": "2023-06-01"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var mu sync.Mutex
			var got *fasthttp.RequestHeader
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
				mu.Lock()
				got = new(fasthttp.RequestHeader)
				ctx.Request.Header.CopyTo(got)
				mu.Unlock()
				for k, v := range c.want {
					if string(ctx.Request.Header.Peek(k)) != v {
						ctx.SetStatusCode(401)
						return
					}
				}
			}}
			go func() { _ = srv.Serve(ln) }()
			t.Cleanup(func() { _ = srv.Shutdown() })
			cfg := c.cfg
			cfg.BaseURL = "http://" + ln.Addr().String()
			cfg.Health = HealthConfig{Path: "/health"}
			b := newPoolBackend(t, cfg, nil)
			b.check(0)
			if !b.Healthy() {
				mu.Lock()
				defer mu.Unlock()
				t.Fatalf("the check was answered 401: it carried %v, want %v", got, c.want)
			}
		})
	}
}
