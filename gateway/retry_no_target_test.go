package gateway

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// README (Replica pools): "A retry that finds no target in service (its own failure
// ejected the last) makes no attempt: it goes to the endpoint's fallbacks at once, or
// with none gets the error of the attempt that ejected it". A replica answering 503
// with a Retry-After (vLLM overloaded or loading behind a proxy) is ejected by that
// very answer: the retry has nowhere to go on the backend, so the request must not sit
// out the Retry-After first.
func TestRetryWithNoTargetSkipsRetryAfter(t *testing.T) {
	for _, withFallback := range []bool{true, false} {
		name := map[bool]string{true: "to the fallback", false: "no fallback"}[withFallback]
		t.Run(name, func(t *testing.T) {
			primary, primaryAddr := startCountingUpstream(t, answerError(503, "Retry-After", "5"))
			spare, spareAddr := startCountingUpstream(t, answerChat)
			fallbacks, want := "", 503
			if withFallback {
				fallbacks, want = ", fallbacks: [spare]", 200
			}
			s := newTestServer(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+primaryAddr+`/v1", model: up-model,
       health: {eject_after: 1, eject_for: 1m}}
  spare: {provider: openai, base_url: "http://`+spareAddr+`/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], retries: 2`+fallbacks+`}
logging: {level: error, access_log: false}
`)
			ctx := newProxyCtx(benchChatBody)
			start := time.Now()
			proxyOnce(s, ctx)
			took := time.Since(start)
			if ctx.Response.StatusCode() != want || primary.count() != 1 || (withFallback && spare.count() != 1) {
				t.Fatalf("status %d (want %d), primary %d attempts (want 1), fallback %d: %s",
					ctx.Response.StatusCode(), want, primary.count(), spare.count(), ctx.Response.Body())
			}
			if took > 2500*time.Millisecond {
				t.Fatalf("answered %d after %v: the gateway sat out the primary's Retry-After: 5 before a retry "+
					"that found no target in service (the 503 had ejected the only one) and made no attempt",
					ctx.Response.StatusCode(), took.Round(100*time.Millisecond))
			}
		})
	}
}

// An ejection that runs out while the retry waits out the upstream's Retry-After
// leaves the retry its trial of the target: it is made, and answers.
func TestRetryTakesTrialDueDuringItsWait(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	first := answerError(503, "Retry-After", "1")
	primary, primaryAddr := startCountingUpstream(t, func(ctx *fasthttp.RequestCtx) {
		if n.Add(1) == 1 {
			first(ctx)
			return
		}
		answerChat(ctx)
	})
	s := newTestServer(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+primaryAddr+`/v1", model: up-model,
       health: {eject_after: 1, eject_for: 200ms}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], retries: 1}
logging: {level: error, access_log: false}
`)
	ctx := newProxyCtx(benchChatBody)
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 || primary.count() != 2 {
		t.Fatalf("status %d, %d attempts on the primary: %s; want the retry's trial (eject_for 200ms, Retry-After 1s) to answer 200",
			ctx.Response.StatusCode(), primary.count(), ctx.Response.Body())
	}
}
