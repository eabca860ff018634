package gateway

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// TestBackendRefusalHasNoVariant: README: the variant labels a request's header,
// metrics and access log line "when that route's own backend served it", and
// variant="none" is "for requests no route served: the gateway's own answers,
// refusals". A request the route's backend answered without an upstream (503
// upstream_overloaded with every replica at max_concurrency, a 400 for a parameter
// its API cannot express) was served by no route: it names its backend but no
// variant, and a variant's error rate on the dashboard does not count it, as the
// canary's gates do not.
func TestBackendRefusalHasNoVariant(t *testing.T) {
	t.Parallel()
	busy, arrived, release := heldChatUpstream(t)
	_, an := startMock(t, mockllm.Options{MaxTokens: 5, Seed: 1, API: mockllm.APIAnthropic, Model: "claude-sonnet-4-5"})
	g, _ := startTracedGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 1s}
backends:
  busy: {provider: openai, base_url: "http://`+busy+`/v1", model: up-model, max_concurrency: 1}
  an: {provider: anthropic, base_url: "http://`+an+`/v1", model: claude-sonnet-4-5, timeout: 3s}
endpoints:
  - {name: chat, type: chat, routes: [{backend: busy, variant: stable}]}
  - {name: claude, type: chat, routes: [{backend: an, variant: stable}]}
logging: {level: info, format: json}
`)
	// A request holds the busy backend's one slot.
	held := make(chan struct{})
	go func() {
		tryPostChat(g.url, `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`)
		close(held)
	}()
	waitFor(t, func() bool { return arrived.Load() == 1 })
	defer func() { close(release); <-held }()

	for _, c := range []struct {
		name, endpoint, backend, params, code string
		status                                int
	}{
		{"every replica busy", "chat", "busy", "", "upstream_overloaded", 503},
		{"parameter the API cannot express", "claude", "an", `"n":2,`, `"param":"n"`, 400},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := "refused-" + c.endpoint
			resp, b := postRaw(t, http.DefaultClient, g.url+"/v1/chat/completions",
				`{"model":"`+c.endpoint+`",`+c.params+`"messages":[{"role":"user","content":"hi"}]}`, map[string]string{"X-Request-Id": id})
			if resp.StatusCode != c.status || !strings.Contains(string(b), c.code) {
				t.Fatalf("got %d %s, want %d %s", resp.StatusCode, b, c.status, c.code)
			}
			if v, ok := resp.Header["X-Tollgate-Variant"]; ok {
				t.Errorf("x-tollgate-variant %q on an answer no upstream gave", v)
			}
			if got := resp.Header.Get("X-Tollgate-Backend"); got != c.backend {
				t.Errorf("x-tollgate-backend %q, want %q, the backend that answered", got, c.backend)
			}
			if line := afAccess(t, g, id); line["variant"] != "none" || line["backend"] != c.backend {
				t.Errorf("access log backend %q variant %q, want %q and none", line["backend"], line["variant"], c.backend)
			}
			code := strconv.Itoa(c.status)
			if n := requestsWith(t, g, map[string]string{"endpoint": c.endpoint, "code": code, "backend": c.backend, "variant": "none"}); n != 1 {
				t.Errorf("tollgate_requests_total{backend=%q,variant=\"none\",code=%q} = %v, want 1; series: %v",
					c.backend, code, n, seriesVariants(t, g, c.endpoint))
			}
			if n := requestsWith(t, g, map[string]string{"endpoint": c.endpoint, "variant": "stable", "code": code}); n != 0 {
				t.Errorf("tollgate_requests_total{variant=\"stable\",code=%q} = %v, want 0: no upstream gave the answer", code, n)
			}
		})
	}
}
