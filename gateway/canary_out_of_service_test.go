package gateway

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// A canary whose one replica is out of service (ejected after its first 500) answers
// most of its users 503 no_healthy_upstream while a last-resort trial is under way:
// those requests are failed attempts for its gates, not nothing. Only the trials
// reached the upstream, a handful in 48 requests, far under min_requests; the
// canary is rolled back on the refusals (and its users then go to the stable route).
func TestCanaryOutOfServiceCountsAsFailed(t *testing.T) {
	t.Parallel()
	g, reached := startDeadCanary(t, 150*time.Millisecond, 40)
	user := canaryUser(t, halfCanary)
	const workers, each = 8, 6
	var wg sync.WaitGroup
	var refused atomic.Int64
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				code, body := postAs(t, g.url+"/v1/chat/completions", user, chatBody)
				switch {
				case code == 503 && strings.Contains(body, "no_healthy_upstream"):
					refused.Add(1)
				case code != 500 && code != 200:
					t.Errorf("status %d: %s", code, body)
				}
			}
		}()
	}
	wg.Wait()
	if n := reached.Load(); n >= 40 {
		t.Fatalf("the canary's upstream saw %d requests; the test needs most of them refused (fewer than min_requests: 40 reaching it)", n)
	}
	if refused.Load() == 0 {
		t.Fatal("no request was refused no_healthy_upstream")
	}
	s := waitCanaryState(t, g.AdminAddr(), "rolled_back", 3*time.Second)
	if s.Canary.State != "rolled_back" {
		t.Fatalf("canary state %q with every replica out of service and %d of %d requests refused no_healthy_upstream (window %+v); want rolled_back",
			s.Canary.State, refused.Load(), workers*each, s.Canary.Window)
	}
	if !strings.Contains(s.Canary.Reason, "error rate") {
		t.Errorf("rolled back for %q, want the error rate gate", s.Canary.Reason)
	}
}

// A request whose last-resort trial of the ejected canary failed is one failed
// attempt for the gates: its retry finds no target in service and makes none (a
// retry takes no trial), and is no refusal counted besides. 20 such requests one
// after another leave the canary at its step with min_requests: 40, its window
// holding 20 attempts.
func TestCanaryOutOfServiceRetryCountsOnce(t *testing.T) {
	t.Parallel()
	g, reached := startDeadCanary(t, 0, 40)
	user := canaryUser(t, halfCanary)
	for range 20 {
		if code, body := postAs(t, g.url+"/v1/chat/completions", user, chatBody); code != 500 {
			t.Fatalf("status %d, want the trial's 500: %s", code, body)
		}
	}
	if n := reached.Load(); n != 20 {
		t.Fatalf("the canary's upstream saw %d requests, want each one's trial (20)", n)
	}
	s := waitCanaryState(t, g.AdminAddr(), "rolled_back", 500*time.Millisecond)
	if s.Canary.State == "rolled_back" {
		t.Fatalf("rolled back (%s) on 20 requests with min_requests 40: a retry was counted besides its failed trial", s.Canary.Reason)
	}
	if w := s.Canary.Window; w.Requests != 20 || w.Errors != 20 {
		t.Errorf("canary window %d attempts, %d errors; want 20 of each", w.Requests, w.Errors)
	}
}

// startDeadCanary starts the endpoint chat of halfCanary (one retry) whose canary's
// one replica answers 500 after d and is ejected on its first failure; the gates
// need minRequests attempts. reached counts the requests its upstream saw.
func startDeadCanary(t *testing.T, d time.Duration, minRequests int) (g *gw, reached *atomic.Int64) {
	stable := startStaticUpstream(t)
	reached = new(atomic.Int64)
	canary := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		reached.Add(1)
		time.Sleep(d)
		ctx.SetStatusCode(500)
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		ctx.SetBodyString(`{"error":{"message":"engine dead","type":"server_error"}}`)
	})
	return startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  stable: {provider: openai, base_url: "http://`+stable+`/v1", model: m}
  canary: {provider: openai, base_url: "http://`+canary+`/v1", model: m, health: {eject_after: 1, eject_for: 1h}}
endpoints:
  - name: chat
    type: chat
    retries: 1
    routes: [{backend: stable, weight: 50}, {backend: canary, weight: 50}]
    sticky: {from: header, name: X-User-ID}
    canary: {backend: canary, steps: [50, 100], interval: 1h, min_requests: `+strconv.Itoa(minRequests)+`, max_error_rate: 0.5}
logging: {level: error, access_log: false}
`), reached
}
