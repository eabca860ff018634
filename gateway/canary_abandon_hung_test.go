package gateway

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// postWithTimeout sends a chat request as user with a client-side timeout, over a connection
// of its own so that giving up closes it.
func postWithTimeout(url, user, body string, timeout time.Duration) (int, error) {
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-User-ID", user)
	resp, err := (&http.Client{Transport: tr, Timeout: timeout}).Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// A canary whose every fifth answer takes 1.5s, against max_p99: 300ms, with clients
// that give up after 500ms: the abandoned attempts count their time so far (at least
// 500ms) for the latency gate, and the canary is rolled back rather than promoted on
// its fast answers alone.
func TestCanarySlowAnswersClientsAbandonBreachP99(t *testing.T) {
	t.Parallel()
	stable := startStaticUpstream(t)
	var n atomic.Int64
	canary := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		if n.Add(1)%5 == 0 {
			time.Sleep(1500 * time.Millisecond)
		}
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		ctx.Response.SetBodyRaw(benchChatResp)
	})
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
    canary: {backend: canary, steps: [50, 100], interval: 1s, min_requests: 10, max_p99: 300ms}
logging: {level: error, access_log: false}
`)
	user := canaryUser(t, halfCanary)
	var wg sync.WaitGroup
	var ok, gaveUp atomic.Int64
	for range 25 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, err := postWithTimeout(g.url+"/v1/chat/completions", user, chatBody, 500*time.Millisecond)
			switch {
			case err != nil:
				gaveUp.Add(1)
			case code == 200:
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	t.Logf("canary upstream got %d attempts: %d answered within 500ms, %d given up on by their clients", n.Load(), ok.Load(), gaveUp.Load())
	if gaveUp.Load() < 3 {
		t.Fatalf("only %d slow attempts; the test needs several", gaveUp.Load())
	}
	s := waitCanaryState(t, g.AdminAddr(), "rolled_back", 2500*time.Millisecond)
	if s.Canary.State != "rolled_back" {
		t.Errorf("canary with %d of %d attempts slower than 500ms (max_p99 300ms) ended %s at %v%% (%s); its window counts %d attempts: the slow ones its clients gave up on are missing",
			gaveUp.Load(), n.Load(), s.Canary.State, s.Canary.Weight, s.Canary.Reason, s.Canary.Window.Requests)
	}
}

// A canary whose upstream hangs behind max_concurrency: every attempt ends at the
// endpoint's timeout, the later ones after a short wait (100ms of 500ms) in the queue.
// Those timeouts are the upstream's, so the window fills and the canary is rolled back.
func TestCanaryHungUpstreamBehindQueueRolledBack(t *testing.T) {
	t.Parallel()
	stable := startStaticUpstream(t)
	release := make(chan struct{})
	var seen atomic.Int64
	canary := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		seen.Add(1)
		select {
		case <-release:
		case <-time.After(5 * time.Second):
		}
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		ctx.Response.SetBodyRaw(benchChatResp)
	})
	t.Cleanup(func() { close(release) })
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  stable: {provider: openai, base_url: "http://`+stable+`/v1", model: m}
  canary: {provider: openai, base_url: "http://`+canary+`/v1", model: m, max_concurrency: 3, queue: {size: 16, timeout: 10s}}
endpoints:
  - name: chat
    type: chat
    timeout: 500ms
    routes: [{backend: stable, weight: 50}, {backend: canary, weight: 50}]
    sticky: {from: header, name: X-User-ID}
    canary: {backend: canary, steps: [50, 100], interval: 1h, min_requests: 5, max_error_rate: 0.5}
logging: {level: error, access_log: false}
`)
	user := canaryUser(t, halfCanary)
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for wave := range 3 {
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, _ := postWithTimeout(g.url+"/v1/chat/completions", user, chatBody, 5*time.Second)
				mu.Lock()
				codes[code]++
				mu.Unlock()
			}()
		}
		if wave < 2 {
			time.Sleep(400 * time.Millisecond)
		}
	}
	wg.Wait()
	t.Logf("answers by status: %v; the canary upstream got %d requests and answered none", codes, seen.Load())
	if codes[200] != 0 {
		t.Fatalf("the hung canary answered %d requests", codes[200])
	}
	s := waitCanaryState(t, g.AdminAddr(), "rolled_back", 1500*time.Millisecond)
	if s.Canary.State != "rolled_back" {
		t.Errorf("canary whose upstream got %d requests and timed out on every one is still %s at %v%%: its window counts %d attempts, %d errors (min_requests 5, max_error_rate 0.5)",
			seen.Load(), s.Canary.State, s.Canary.Weight, s.Canary.Window.Requests, s.Canary.Window.Errors)
	}
}
