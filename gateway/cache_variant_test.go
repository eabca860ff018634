package gateway

import (
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/internal/redistest"
)

// variantCacheConfig serves chat on two routes, stable on upStable and canary on
// upCanary, at the weights given, with cache.
func variantCacheConfig(upStable, upCanary, stableWeight, canaryWeight, cache, tail string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  stable: {provider: openai, base_url: "http://` + upStable + `/v1", model: m-stable, timeout: 5s}
  canary: {provider: openai, base_url: "http://` + upCanary + `/v1", model: m-canary, timeout: 5s}
endpoints:
  - name: chat
    type: chat
    routes:
      - {backend: stable, weight: ` + stableWeight + `, variant: stable}
      - {backend: canary, weight: ` + canaryWeight + `, variant: canary}
    cache: ` + cache + `
` + tail
}

// answerFrom is an upstream whose every chat answer names it.
func answerFrom(t *testing.T, name string) string {
	return serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetContentType("application/json")
		ctx.SetBodyString(cachedChatAnswer("chatcmpl-"+name, "made by "+name, "stop", ""))
	})
}

// An answer the canary made is not served to a request routed to the stable backend:
// once the canary is rolled back (here, an operator's weights moving every user off
// it), the repeat goes to the stable backend, not to what the canary answered; the
// canary's entry serves requests routed to the canary again.
func TestCacheAnswerOfCanaryNotServedToStable(t *testing.T) {
	t.Parallel()
	stable, canary := answerFrom(t, "stable"), answerFrom(t, "canary")
	for _, tc := range []struct{ name, cache, tail string }{
		{"memory", "{ttl: 1h}", ""},
		{"redis", "{ttl: 1h, store: redis}", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tail := tc.tail
			if tc.name == "redis" {
				tail += `limiter: {redis: {url: "` + redistest.Start(t).URL() + `"}, timeout: 500ms}` + "\n"
			}
			g := startGateway(t, variantCacheConfig(stable, canary, "0", "100", tc.cache, tail))
			body := `{"model":"chat","messages":[{"role":"user","content":"which model answers?"}]}`
			ask := func(wantBackend, wantCache string) {
				t.Helper()
				resp, b := contractPost(t, g, "/v1/chat/completions", body, nil)
				if resp.StatusCode != 200 || !strings.Contains(b, "made by "+wantBackend) ||
					resp.Header.Get("X-Tollgate-Cache") != wantCache {
					t.Fatalf("got %d, x-tollgate-cache %q, x-tollgate-backend %q, answer %.160s; want %s made by %s",
						resp.StatusCode, resp.Header.Get("X-Tollgate-Cache"), resp.Header.Get("X-Tollgate-Backend"), b, wantCache, wantBackend)
				}
			}
			ask("canary", "miss")
			if tc.name == "redis" {
				waitStored(t, g, "chat", 1)
			}
			ask("canary", "hit")
			weights := func(w string) {
				if code, out := adminCall(t, "PUT", "http://"+g.AdminAddr()+"/admin/endpoints/chat/weights", "", w); code != 200 {
					t.Fatalf("PUT weights %s: %d %v", w, code, out)
				}
				// With Redis the weights take effect on every replica at one
				// instant, shortly after the call.
				waitInForce(t, g, "chat")
			}
			weights(`{"stable": 100, "canary": 0}`)
			ask("stable", "miss")
			if tc.name == "redis" {
				waitStored(t, g, "chat", 2)
			}
			ask("stable", "hit")
			weights(`{"stable": 0, "canary": 100}`)
			ask("canary", "hit")
		})
	}
}
