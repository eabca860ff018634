package gateway

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/router"
)

// waitCanaryState polls the admin view of endpoint chat until its canary is in state
// want or d passes, and returns the last view.
func waitCanaryState(t *testing.T, admin, want string, d time.Duration) canarySnap {
	t.Helper()
	s := readCanaryWindow(t, admin)
	for end := time.Now().Add(d); time.Now().Before(end) && s.Canary.State != want; {
		time.Sleep(100 * time.Millisecond)
		s = readCanaryWindow(t, admin)
	}
	return s
}

// startSlowUpstream serves a fixed chat completion after d.
func startSlowUpstream(tb testing.TB, d time.Duration) string {
	return serveUpstream(tb, func(ctx *fasthttp.RequestCtx) {
		time.Sleep(d)
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		ctx.Response.SetBodyRaw(benchChatResp)
	})
}

// halfCanary is the routing of the tests' endpoint chat: stable and canary at 50 %.
var halfCanary = router.Config{
	Routes: []router.Route{{Backend: "stable", Weight: 50}, {Backend: "canary", Weight: 50}},
	Canary: &router.Canary{Backend: "canary", Steps: []int{50, 100}},
}

// A canary attempt is timed from when it went upstream: the time a request waited in
// the gateway's own queue (max_concurrency 1 here) for a slot is the gateway's, not
// the canary's latency. Every upstream answer takes 300ms, far under max_p99: 1s,
// while the fifth request of a burst answers after about 1.5s.
func TestCanaryLatencyExcludesQueueWait(t *testing.T) {
	t.Parallel()
	stable := startStaticUpstream(t)
	canary := startSlowUpstream(t, 300*time.Millisecond)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  stable: {provider: openai, base_url: "http://`+stable+`/v1", model: m}
  canary: {provider: openai, base_url: "http://`+canary+`/v1", model: m, max_concurrency: 1, queue: {size: 16, timeout: 10s}}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: stable, weight: 50}, {backend: canary, weight: 50}]
    sticky: {from: header, name: X-User-ID}
    canary: {backend: canary, steps: [50, 100], interval: 1h, min_requests: 5, max_p99: 1s}
logging: {level: error, access_log: false}
`)
	user := canaryUser(t, halfCanary)
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, body := postAs(t, g.url+"/v1/chat/completions", user, chatBody); code != 200 {
				t.Errorf("status %d: %s", code, body)
			}
		}()
	}
	wg.Wait()
	s := waitCanaryState(t, g.AdminAddr(), "rolled_back", 2*time.Second)
	if s.Canary.State == "rolled_back" {
		t.Fatalf("a canary whose upstream answered every request in 300ms was rolled back by the p99 gate (max_p99 1s): %s", s.Canary.Reason)
	}
	if s.Canary.Window.Requests != 5 {
		t.Errorf("canary window holds %d attempts, want the 5 sent", s.Canary.Window.Requests)
	}
}

// A request that waited in the gateway's queue and ran out of the endpoint's deadline
// there, before its answer began, is no canary error, as it is none against the
// target's health: the first request takes the canary's one slot for 600ms, the
// second waits for it and then has 400ms of its 1s timeout left.
func TestCanaryQueuedDeadlineIsNoError(t *testing.T) {
	t.Parallel()
	stable := startStaticUpstream(t)
	canary := startSlowUpstream(t, 600*time.Millisecond)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  stable: {provider: openai, base_url: "http://`+stable+`/v1", model: m}
  canary: {provider: openai, base_url: "http://`+canary+`/v1", model: m, max_concurrency: 1, queue: {size: 16, timeout: 10s}}
endpoints:
  - name: chat
    type: chat
    timeout: 1s
    routes: [{backend: stable, weight: 50}, {backend: canary, weight: 50}]
    sticky: {from: header, name: X-User-ID}
    canary: {backend: canary, steps: [50, 100], interval: 1h, min_requests: 2, max_error_rate: 0.4}
logging: {level: error, access_log: false}
`)
	user := canaryUser(t, halfCanary)
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], _ = postAs(t, g.url+"/v1/chat/completions", user, chatBody)
		}()
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	if codes[0] != 200 {
		t.Fatalf("the first request, which did not wait, answered %d", codes[0])
	}
	s := waitCanaryState(t, g.AdminAddr(), "rolled_back", 2*time.Second)
	if s.Canary.Window.Errors != 0 || s.Canary.State == "rolled_back" {
		t.Errorf("codes %v; canary %s with %d errors in %d attempts (%s): the gateway's own queue wait counted against it",
			codes, s.Canary.State, s.Canary.Window.Errors, s.Canary.Window.Requests, s.Canary.Reason)
	}
}

// A stream whose client went away before its first token has no verdict, as it has
// none for the target's health: a canary whose streams answer 200 and then never
// produce a token, so that every client gives up, shows no healthy attempt and is
// not stepped up.
func TestCanaryAbandonedStreamsEarnNoStep(t *testing.T) {
	t.Parallel()
	stable := startStaticUpstream(t)
	release := make(chan struct{})
	canary := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetContentType("text/event-stream")
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			_, _ = w.WriteString(": waiting\n\n")
			if w.Flush() != nil {
				return
			}
			select {
			case <-release:
			case <-time.After(10 * time.Second):
			}
		})
	})
	t.Cleanup(func() { close(release) })
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  stable: {provider: openai, base_url: "http://`+stable+`/v1", model: m}
  canary: {provider: openai, base_url: "http://`+canary+`/v1", model: m}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: stable, weight: 50}, {backend: canary, weight: 50}]
    sticky: {from: header, name: X-User-ID}
    canary: {backend: canary, steps: [50, 100], interval: 2s, min_requests: 5, max_error_rate: 0.1, max_ttft_p99: 500ms}
logging: {level: error, access_log: false}
`)
	user := canaryUser(t, halfCanary)
	for range 6 {
		ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
		req, _ := http.NewRequestWithContext(ctx, "POST", g.url+"/v1/chat/completions", strings.NewReader(streamBody))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-User-ID", user)
		// A transport of its own per request: the hang-up closes its connection.
		tr := &http.Transport{}
		if resp, err := (&http.Client{Transport: tr}).Do(req); err == nil {
			_, _ = bufio.NewReader(resp.Body).ReadString('x')
			resp.Body.Close()
		}
		cancel()
		tr.CloseIdleConnections()
	}
	// The window began at start; the controller (500ms ticks) may step it from 2s on.
	s := waitCanaryState(t, g.AdminAddr(), "promoted", 3*time.Second)
	if s.Canary.State == "promoted" || s.Canary.Weight > 50 || s.Canary.Window.Requests != 0 {
		t.Errorf("a canary none of whose streams produced a token: %s at %v %% with %d attempts in its window (%s)",
			s.Canary.State, s.Canary.Weight, s.Canary.Window.Requests, s.Canary.Reason)
	}
}
