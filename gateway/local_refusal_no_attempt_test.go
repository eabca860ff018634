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
	t.Parallel()
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

// TestBusyBackendIsNoAttempt: a backend with every replica at max_concurrency answers
// without an upstream, as one refusing a parameter does: README, "one client span per
// upstream attempt (none for a call its backend refused before any upstream)", and the
// access log's "attempts" count upstream attempts. A busy fallback is skipped (the
// client keeps the primary's 429), and a busy first backend answers 503 itself: neither
// leaves a client span or an attempt, in the access log or in
// tollgate_upstream_attempts_total.
func TestBusyBackendIsNoAttempt(t *testing.T) {
	t.Parallel()
	_, primary := startCountingUpstream(t, answerError(429, "Retry-After", "30"))
	spare, spareArrived, release := heldChatUpstream(t)
	g, exp := startTracedGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 1s}
backends:
  up: {provider: openai, base_url: "http://`+primary+`/v1", model: up-model}
  spare: {provider: openai, base_url: "http://`+spare+`/v1", model: spare-model, max_concurrency: 1}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up, variant: stable}], fallbacks: [spare]}
  - {name: direct, type: chat, routes: [{backend: spare}]}
tracing: {exporter: otlp-grpc, sample_ratio: 1}
logging: {level: info, format: json}
`)
	// A request of another endpoint holds the fallback's one slot.
	held := make(chan struct{})
	go func() {
		tryPostChat(g.url, `{"model":"direct","messages":[{"role":"user","content":"hi"}]}`)
		close(held)
	}()
	waitFor(t, func() bool { return spareArrived.Load() == 1 })
	defer func() { close(release); <-held }()

	for _, c := range []struct {
		name, endpoint, backend string
		status                  int
		attempts                float64
		upstreamSpans           int
	}{
		{"busy fallback skipped", "chat", "up", 429, 1, 1},
		{"busy first backend", "direct", "spare", 503, 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := "busy-" + c.endpoint
			resp, b := postRaw(t, http.DefaultClient, g.url+"/v1/chat/completions",
				`{"model":"`+c.endpoint+`","messages":[{"role":"user","content":"hi"}]}`, map[string]string{"X-Request-Id": id})
			if resp.StatusCode != c.status || resp.Header.Get("X-Tollgate-Backend") != c.backend {
				t.Fatalf("got %d from %q: %s; want %d from %s", resp.StatusCode, resp.Header.Get("X-Tollgate-Backend"), b, c.status, c.backend)
			}
			if got := afAccess(t, g, id)["attempts"]; got != c.attempts {
				t.Errorf("access log attempts=%v, want %v: the busy backend reached no upstream", got, c.attempts)
			}
			spans := requestSpans(t, g, exp, id)
			if n := len(spans["chat spare-model"]); n != 0 {
				t.Errorf("%d client span(s) for the busy backend, which sent nothing upstream", n)
			}
			if n := len(spans["chat up-model"]); n != c.upstreamSpans {
				t.Errorf("%d client span(s) of the upstream attempt, want %d", n, c.upstreamSpans)
			}
		})
	}
	// The request holding the slot is counted when it ends, after this.
	fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := promtest.Sum(fams, "tollgate_upstream_attempts_total", func(l map[string]string) bool { return l["backend"] == "spare" }); n != 0 {
		t.Errorf("tollgate_upstream_attempts_total{backend=\"spare\"} = %v, want 0", n)
	}
}
