package gateway

import (
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"
)

// hintUpstream answers every request with the status its X-Status header names (200
// without one), its X-Hint as x-should-retry and its X-Wait as retry-after-ms, and
// counts the requests it got.
func hintUpstream(t *testing.T) (*atomic.Int64, string) {
	t.Helper()
	var n atomic.Int64
	addr := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		n.Add(1)
		status, _ := strconv.Atoi(string(ctx.Request.Header.Peek("X-Status")))
		if status == 0 {
			answerChat(ctx)
			return
		}
		if h := ctx.Request.Header.Peek("X-Hint"); len(h) > 0 {
			ctx.Response.Header.SetBytesV("X-Should-Retry", h)
		}
		if w := ctx.Request.Header.Peek("X-Wait"); len(w) > 0 {
			ctx.Response.Header.SetBytesV("Retry-After-Ms", w)
		}
		answerError(status)(ctx)
	})
	return &n, addr
}

// The gateway's own retries heed an upstream's x-should-retry as the SDKs do. "false"
// is no retry on that backend, as a Retry-After over the longest wait is: the
// fallbacks are still tried, as for any error of the route's backend that they are
// tried for. "true" has the gateway retry, then fall back, whatever the status: a
// 400 or 409 that says it is taken as a 5xx is, where without it (or with "false")
// it goes to the client at once. A status the gateway retries anyway (429, 5xx) with
// "true" is retried as without it. Each case counts the attempts on the route's
// backend and on its fallback, which serves what it is tried for; what the client
// gets from the route's backend carries that backend's hint. (The route's one target
// is not ejected by the cases' 5xx answers, which would end its retries early.)
func TestShouldRetryHeededByRetries(t *testing.T) {
	up, addr := hintUpstream(t)
	spare, spareAddr := startCountingUpstream(t, answerChat)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model, health: {eject_after: 1000}}
  spare: {provider: openai, base_url: "http://`+spareAddr+`/v1", model: spare-model}
endpoints:
  - {name: r0, type: chat, routes: [{backend: up}], retries: 0}
  - {name: r2, type: chat, routes: [{backend: up}], retries: 2}
  - {name: f0, type: chat, routes: [{backend: up}], retries: 0, fallbacks: [spare]}
  - {name: f2, type: chat, routes: [{backend: up}], retries: 2, fallbacks: [spare]}
logging: {level: error, access_log: false}
`)
	for _, status := range []int{400, 409, 429, 500, 503} {
		for _, hint := range []string{"", "true", "false"} {
			for _, retries := range []int{0, 2} {
				for _, fallback := range []bool{false, true} {
					model := "r" + strconv.Itoa(retries)
					if fallback {
						model = "f" + strconv.Itoa(retries)
					}
					name := strconv.Itoa(status) + " hint=" + hint + " on " + model
					t.Run(name, func(t *testing.T) {
						goesOn := hint == "true" || status == 429 || status >= 500
						wantUp, wantSpare := 1, 0
						if goesOn && hint != "false" {
							wantUp += retries
						}
						if goesOn && fallback {
							wantSpare = 1
						}
						up0, spare0 := up.Load(), spare.count()
						resp, b := retryPost(t, g, "/v1/chat/completions", retryChat(model),
							"X-Status", strconv.Itoa(status), "X-Hint", hint)
						if n, m := up.Load()-up0, spare.count()-spare0; n != int64(wantUp) || m != wantSpare {
							t.Errorf("%d attempts on the route's backend and %d on the fallback, want %d and %d", n, m, wantUp, wantSpare)
						}
						if wantSpare == 1 {
							if resp.StatusCode != 200 || resp.Header.Get("X-Tollgate-Backend") != "spare" {
								t.Fatalf("%d from %q: %s", resp.StatusCode, resp.Header.Get("X-Tollgate-Backend"), b)
							}
							return
						}
						if resp.StatusCode != status || resp.Header.Get("X-Tollgate-Backend") != "up" {
							t.Fatalf("%d from %q: %s", resp.StatusCode, resp.Header.Get("X-Tollgate-Backend"), b)
						}
						checkHint(t, resp.Header, hint)
					})
				}
			}
		}
	}
}

// What the fallback is tried for, it serves: a route's 503 that says "false", and a
// 409 that says "true" after its retries, both reach the fallback, which answers.
// A "true" with a Retry-After over the longest wait skips the retries, as the wait
// alone does; a "false" with a short wait is not retried nor waited for.
func TestShouldRetryFallbackServes(t *testing.T) {
	up, addr := hintUpstream(t)
	spare, spareAddr := startCountingUpstream(t, answerChat)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model, health: {eject_after: 1000}}
  spare: {provider: openai, base_url: "http://`+spareAddr+`/v1", model: spare-model}
endpoints:
  - {name: r2, type: chat, routes: [{backend: up}], retries: 2}
  - {name: f2, type: chat, routes: [{backend: up}], retries: 2, fallbacks: [spare]}
logging: {level: error, access_log: false}
`)
	for _, c := range []struct {
		name, model, status, hint, wait string
		wantUp, wantSpare               int
		want                            int
	}{
		{"503 false", "f2", "503", "false", "", 1, 1, 200},
		{"409 true", "f2", "409", "true", "", 3, 1, 200},
		{"400 true with a wait of ten seconds", "f2", "400", "true", "10000", 1, 1, 200},
		{"429 false with a short wait", "r2", "429", "false", "3000", 1, 0, 429},
		{"429 true with a short wait", "r2", "429", "true", "30", 3, 0, 429},
	} {
		t.Run(c.name, func(t *testing.T) {
			up0, spare0 := up.Load(), spare.count()
			resp, b := retryPost(t, g, "/v1/chat/completions", retryChat(c.model),
				"X-Status", c.status, "X-Hint", c.hint, "X-Wait", c.wait)
			if resp.StatusCode != c.want {
				t.Fatalf("%d: %s", resp.StatusCode, b)
			}
			if n, m := up.Load()-up0, spare.count()-spare0; n != int64(c.wantUp) || m != c.wantSpare {
				t.Errorf("%d attempts on the route's backend and %d on the fallback, want %d and %d", n, m, c.wantUp, c.wantSpare)
			}
			if c.want != 200 {
				ms, _ := strconv.ParseInt(c.wait, 10, 64)
				checkWait(t, resp.Header, ms, ms, c.hint)
			}
		})
	}
}

// The first context fallback gets the endpoint's retries, as a route does, and heeds
// "false" as a route does: no retry there, on to the next context fallback, which
// serves.
func TestShouldRetryContextFallbackRetries(t *testing.T) {
	route := startStaticRefusingUpstream(t)
	large, largeAddr := startCountingUpstream(t, answerError(500, "X-Should-Retry", "false"))
	larger, largerAddr := startCountingUpstream(t, answerChat)
	g := hintGateway(t, route, 2, `  large: {provider: openai, base_url: "http://`+largeAddr+`/v1", model: l}
  larger: {provider: openai, base_url: "http://`+largerAddr+`/v1", model: xl}
`, ", context_fallbacks: [large, larger]")
	resp, b := retryPost(t, g, "/v1/chat/completions", retryChat("chat"))
	if resp.StatusCode != 200 || resp.Header.Get("X-Tollgate-Backend") != "larger" {
		t.Fatalf("%d from %q: %s", resp.StatusCode, resp.Header.Get("X-Tollgate-Backend"), b)
	}
	if n, m := large.count(), larger.count(); n != 1 || m != 1 {
		t.Errorf("%d attempts on the first context fallback and %d on the second, want 1 each", n, m)
	}
}
