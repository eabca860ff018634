package gateway

import "testing"

// A retry does not go back to a target it failed on and ejected: with no target of
// the backend in service it goes to the endpoint's fallback at once. A later request
// makes one last-resort trial of the ejected target, then goes to the fallback too;
// none spends its retries on trials, each of which would double the ejection and keep
// the client waiting.
func TestRetriesSkipTheTargetTheyEjected(t *testing.T) {
	primary, primaryAddr := startCountingUpstream(t, answerError(500))
	spare, spareAddr := startCountingUpstream(t, answerChat)
	s := newTestServer(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+primaryAddr+`/v1", model: up-model,
       health: {eject_after: 1, eject_for: 1m}}
  spare: {provider: openai, base_url: "http://`+spareAddr+`/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], retries: 2, fallbacks: [spare]}
logging: {level: error, access_log: false}
`)
	ctx := newProxyCtx(benchChatBody)
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 || spare.count() != 1 {
		t.Fatalf("first request: %d, fallback asked %d times", ctx.Response.StatusCode(), spare.count())
	}
	if n := primary.count(); n != 1 {
		t.Fatalf("the first request made %d attempts on the primary, want 1: its failure ejected the only target", n)
	}
	for i := range 3 {
		ctx := newProxyCtx(benchChatBody)
		proxyOnce(s, ctx)
		if ctx.Response.StatusCode() != 200 {
			t.Fatalf("request %d: %d %s", i+2, ctx.Response.StatusCode(), ctx.Response.Body())
		}
		if n := primary.count(); n != 2+i {
			t.Fatalf("after request %d the primary saw %d attempts, want %d: one last-resort trial per request", i+2, n, 2+i)
		}
	}
}
