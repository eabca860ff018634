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
