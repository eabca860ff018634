package gateway

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestNoAttemptKeepsUpstreamError: README, Request handling: a backend that asks for
// more than 5 s is not retried, "the request goes to the next fallback at once, or, with
// none left, the client gets the upstream's 429/503 with its Retry-After", and a
// fallback that cannot take the request is skipped, "the client keeps the last
// upstream's error". A backend that makes no attempt at all (every replica at
// max_concurrency, none in service) is such a one: the client keeps the upstream's
// answer and its Retry-After, which the OpenAI SDKs honour, rather than the gateway's
// own 503, which they retry at once.
func TestNoAttemptKeepsUpstreamError(t *testing.T) {
	t.Parallel()
	const chat = `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
	const direct = `{"model":"direct","messages":[{"role":"user","content":"hi"}]}`

	t.Run("fallback at max_concurrency", func(t *testing.T) {
		_, primary := startCountingUpstream(t, answerError(429, "Retry-After", "30"))
		spare, spareArrived, release := heldChatUpstream(t)
		g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 1s}
backends:
  up: {provider: openai, base_url: "http://`+primary+`/v1", model: up-model}
  spare: {provider: openai, base_url: "http://`+spare+`/v1", model: up-model, max_concurrency: 1}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], retries: 2, fallbacks: [spare]}
  - {name: direct, type: chat, routes: [{backend: spare}]}
logging: {level: error, access_log: false}
`)
		// A request of another endpoint holds the fallback's one slot.
		held := make(chan struct{})
		go func() { tryPostChat(g.url, direct); close(held) }()
		waitFor(t, func() bool { return spareArrived.Load() == 1 })
		defer func() { close(release); <-held }()

		checkUpstreamAnswer(t, g, chat, 429, "30")
	})

	t.Run("fallback out of service", func(t *testing.T) {
		_, primary := startCountingUpstream(t, answerError(429, "Retry-After", "30"))
		// The fallback fails a request that asks for it, and holds the others.
		var trials atomic.Int64
		release := make(chan struct{})
		spare := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
			if len(ctx.Request.Header.Peek("X-Test-Fail")) > 0 {
				answerError(500)(ctx)
				return
			}
			trials.Add(1)
			select {
			case <-release:
			case <-time.After(10 * time.Second):
			}
			answerChat(ctx)
		})
		g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 1s}
backends:
  up: {provider: openai, base_url: "http://`+primary+`/v1", model: up-model}
  spare: {provider: openai, base_url: "http://`+spare+`/v1", model: up-model,
          health: {eject_after: 1, eject_for: 1m}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], retries: 2, fallbacks: [spare]}
  - {name: direct, type: chat, routes: [{backend: spare}]}
logging: {level: error, access_log: false}
`)
		// One failure ejects the fallback's only target, and a request of another
		// endpoint holds its one trial: the fallback has no target for the request.
		if resp, b := postRaw(t, http.DefaultClient, g.url+"/v1/chat/completions", direct, map[string]string{"X-Test-Fail": "1"}); resp.StatusCode != 500 {
			t.Fatalf("failing the fallback: %d %s", resp.StatusCode, b)
		}
		held := make(chan struct{})
		go func() { tryPostChat(g.url, direct); close(held) }()
		waitFor(t, func() bool { return trials.Load() == 1 })
		defer func() { close(release); <-held }()

		checkUpstreamAnswer(t, g, chat, 429, "30")
	})

	t.Run("retry finds the backend out of service", func(t *testing.T) {
		_, primary := startCountingUpstream(t, answerError(503))
		g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 1s}
backends:
  up: {provider: openai, base_url: "http://`+primary+`/v1", model: up-model,
       health: {eject_after: 1, eject_for: 1m}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], retries: 2}
logging: {level: error, access_log: false}
`)
		// The first failure ejects the only target: a retry finds none in service.
		checkUpstreamAnswer(t, g, chat, 503, "")
	})
}

// checkUpstreamAnswer posts body and checks that the client got the upstream's own
// error answer (answerError's body) with status and Retry-After, named as backend up's.
func checkUpstreamAnswer(t *testing.T, g *gw, body string, status int, retryAfter string) {
	t.Helper()
	resp, b := postRaw(t, http.DefaultClient, g.url+"/v1/chat/completions", body, nil)
	if resp.StatusCode != status || resp.Header.Get("Retry-After") != retryAfter {
		t.Fatalf("got %d (Retry-After %q) %s; want the upstream's %d with Retry-After %s: the backend after it made no attempt",
			resp.StatusCode, resp.Header.Get("Retry-After"), b, status, retryAfter)
	}
	if !strings.Contains(string(b), `"code":"s`) {
		t.Errorf("body %s, want the upstream's own", b)
	}
	if got := resp.Header.Get("X-Tollgate-Backend"); got != "up" {
		t.Errorf("x-tollgate-backend %q, want up, whose answer it is", got)
	}
}

// TestNoAttemptKeepsTimeout: the error a backend that makes no attempt leaves standing
// is any upstream's failure, not only an answer. After the primary timed out, a
// fallback that cannot take the request (an anthropic one asked for n=2, one at
// max_concurrency) is skipped, and a retry that finds the backend out of service makes
// none: the client gets the primary's 504 upstream_timeout, named as up's, not the
// gateway's own 503 named after a backend that never saw the request.
func TestNoAttemptKeepsTimeout(t *testing.T) {
	t.Parallel()
	slow := serveUpstream(t, func(ctx *fasthttp.RequestCtx) { time.Sleep(300 * time.Millisecond); answerChat(ctx) })
	spare, spareArrived, release := heldChatUpstream(t)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 1s}
backends:
  up: {provider: openai, base_url: "http://`+slow+`/v1", model: up-model, timeout: 100ms}
  ejecting: {provider: openai, base_url: "http://`+slow+`/v1", model: up-model, timeout: 100ms,
             health: {eject_after: 1, eject_for: 1m}}
  spare: {provider: openai, base_url: "http://`+spare+`/v1", model: spare-model, max_concurrency: 1}
  claude: {provider: anthropic, base_url: "http://`+spare+`/v1", model: claude-3-5-haiku-latest, api_key: abcdefghijkl}
endpoints:
  - {name: refusing-fallback, type: chat, routes: [{backend: up}], fallbacks: [claude]}
  - {name: busy-fallback, type: chat, routes: [{backend: up}], fallbacks: [spare]}
  - {name: retry-out-of-service, type: chat, routes: [{backend: ejecting}], retries: 2}
  - {name: direct, type: chat, routes: [{backend: spare}]}
logging: {level: error, access_log: false}
`)
	// A request of another endpoint holds the busy fallback's one slot.
	held := make(chan struct{})
	go func() {
		tryPostChat(g.url, `{"model":"direct","messages":[{"role":"user","content":"hi"}]}`)
		close(held)
	}()
	waitFor(t, func() bool { return spareArrived.Load() == 1 })
	defer func() { close(release); <-held }()

	for _, c := range []struct{ name, endpoint, params, backend string }{
		{"anthropic fallback refusing n=2", "refusing-fallback", `"n":2,`, "up"},
		{"fallback at max_concurrency", "busy-fallback", "", "up"},
		{"retry finds the backend out of service", "retry-out-of-service", "", "ejecting"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, b := postRaw(t, http.DefaultClient, g.url+"/v1/chat/completions",
				`{"model":"`+c.endpoint+`",`+c.params+`"messages":[{"role":"user","content":"hi"}]}`, nil)
			if resp.StatusCode != 504 || resp.Header.Get("X-Tollgate-Backend") != c.backend || !strings.Contains(string(b), `"upstream_timeout"`) {
				t.Fatalf("got %d from %q: %s; want the first attempt's 504 upstream_timeout from %s",
					resp.StatusCode, resp.Header.Get("X-Tollgate-Backend"), b, c.backend)
			}
		})
	}
}
