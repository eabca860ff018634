package gateway

import (
	"net/http"
	"testing"

	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// TestLocalRefusalIsNoAttempt: a backend that refuses a request before any upstream is
// called (an anthropic one asked for n: 2) makes no upstream attempt: README, the
// access log carries "attempts", and there is "one client span per upstream attempt".
// Refused by the first route, the request answers 400 with attempts 0 and no client
// span; refused by a fallback, it keeps the last upstream's error, and only that
// upstream's attempt is counted and traced.
func TestLocalRefusalIsNoAttempt(t *testing.T) {
	_, an := startMock(t, mockllm.Options{MaxTokens: 5, Seed: 1, API: mockllm.APIAnthropic, Model: "claude-sonnet-4-5"})
	_, busy := startCountingUpstream(t, answerError(429, "Retry-After", "30"))
	g, exp := startTracedGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  an: {provider: anthropic, base_url: "http://`+an+`/v1", model: claude-sonnet-4-5, timeout: 3s}
  up: {provider: openai, base_url: "http://`+busy+`/v1", model: up-model, timeout: 3s}
endpoints:
  - {name: claude, type: chat, routes: [{backend: an}]}
  - {name: chat, type: chat, routes: [{backend: up}], fallbacks: [an]}
tracing: {exporter: otlp-grpc, sample_ratio: 1}
logging: {level: info, format: json}
`)
	for _, c := range []struct {
		name, endpoint string
		status         int
		attempts       float64
		upstreamSpans  int
	}{
		{"first route", "claude", 400, 0, 0},
		{"fallback", "chat", 429, 1, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := "refusal-" + c.endpoint
			resp, b := postRaw(t, http.DefaultClient, g.url+"/v1/chat/completions",
				`{"model":"`+c.endpoint+`","n":2,"messages":[{"role":"user","content":"hi"}]}`, map[string]string{"X-Request-Id": id})
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, b)
			}
			if got := afAccess(t, g, id)["attempts"]; got != c.attempts {
				t.Errorf("access log attempts=%v, want %v: the refusal reached no upstream", got, c.attempts)
			}
			spans := requestSpans(t, g, exp, id)
			if n := len(spans["chat claude-sonnet-4-5"]); n != 0 {
				t.Errorf("%d client span(s) for the refused call, which never went upstream", n)
			}
			if n := len(spans["chat up-model"]); n != c.upstreamSpans {
				t.Errorf("%d client span(s) of the upstream attempt, want %d", n, c.upstreamSpans)
			}
		})
	}
	fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := promtest.Sum(fams, "tollgate_upstream_attempts_total", func(l map[string]string) bool { return l["backend"] == "an" }); n != 0 {
		t.Errorf("tollgate_upstream_attempts_total{backend=\"an\"} = %v, want 0", n)
	}
}
