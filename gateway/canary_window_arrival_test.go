package gateway

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/internal/redistest"
)

// A canary attempt counts toward the window of the weights its request was routed
// by, those in force when it arrived: on two replicas sharing a Redis, slow failures
// of requests that reached the canary before an operator's weights took effect, and
// ended well after that instant, count toward no window, so they cannot roll back
// the canary the operator's weights hold (a paused canary is still judged by its
// gates). Requests that arrive after the instant count.
// Not t.Parallel: the weights must switch within the failures' 2 s upstream delay.
func TestCanaryWindowCountsAttemptsByArrival(t *testing.T) {
	var failing atomic.Bool
	var arrived atomic.Int32
	stable := startStaticUpstream(t)
	canary := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		arrived.Add(1)
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		if failing.Load() {
			// Well past the switch delay and the replicas' next read.
			time.Sleep(2 * time.Second)
			ctx.SetStatusCode(500)
			ctx.SetBodyString(`{"error":{"message":"overloaded","type":"server_error"}}`)
			return
		}
		ctx.Response.SetBodyRaw(benchChatResp)
	})
	cfg := `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  stable: {provider: openai, base_url: "http://` + stable + `/v1", model: m, timeout: 5s}
  canary: {provider: openai, base_url: "http://` + canary + `/v1", model: m, timeout: 5s}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: stable, weight: 50}, {backend: canary, weight: 50}]
    sticky: {from: header, name: X-User-ID}
    canary: {backend: canary, steps: [50, 100], interval: 1h, min_requests: 4, max_error_rate: 0.2}
limiter: {store: redis, redis: {url: "` + redistest.Start(t).URL() + `"}}
logging: {level: error, access_log: false}
`
	a, b := startGateway(t, cfg), startGateway(t, cfg)
	user := canaryUser(t, halfCanary)

	// Three slow failures on each replica reach the canary at its first step.
	failing.Store(true)
	var wg sync.WaitGroup
	for _, g := range []*gw{a, b} {
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				postAs(t, g.url+"/v1/chat/completions", user, chatBody)
			}()
		}
	}
	waitFor(t, func() bool { return arrived.Load() >= 6 })
	failing.Store(false)

	code, out := adminCall(t, "PUT", "http://"+a.AdminAddr()+"/admin/endpoints/chat/weights", "", `{"stable": 0, "canary": 100}`)
	if _, pending := out["switch_at"]; code != 200 || !pending {
		t.Fatalf("PUT weights: %d %v; want 200 with a switch_at", code, out)
	}
	wg.Wait()
	// The leader reads the replicas' counts and judges them within a few ticks.
	time.Sleep(1500 * time.Millisecond)
	for _, g := range []*gw{a, b} {
		s := readCanaryWindow(t, g.AdminAddr())
		if s.Canary.State != "paused" || s.Canary.Window.Requests != 0 {
			t.Fatalf("replica %s: canary %s (%s) with %d attempts in its window; want paused with none: the failures of requests routed before the weights took effect were counted",
				g.url, s.Canary.State, s.Canary.Reason, s.Canary.Window.Requests)
		}
	}

	// Requests that arrive from the instant on count toward the window.
	for _, g := range []*gw{a, b} {
		if code, body := postAs(t, g.url+"/v1/chat/completions", user, chatBody); code != 200 {
			t.Fatalf("after the switch: %d %s", code, body)
		}
		waitFor(t, func() bool { return readCanaryWindow(t, g.AdminAddr()).Canary.Window.Requests == 1 })
	}
}
