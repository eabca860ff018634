package gateway

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// TestRedisDown kills Redis under load: with on_redis_error allow no request fails,
// with deny the limited requests get 503; no request hangs, and both recover when
// Redis is back.
// Not t.Parallel: it kills Redis under a 50 ms limiter timeout.
func TestRedisDown(t *testing.T) {
	rds := redistest.Start(t)
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	cfg := func(mode string) string {
		return mockConfig(up, "", `  - name: limited
    type: chat
    routes: [{backend: up}]
    limits: [{per: endpoint, requests: 1000000, window: second}]
`) + `limiter: {store: redis, redis: {url: "` + rds.URL() + `"}, on_redis_error: ` + mode + `, timeout: 50ms}
logging: {level: warn, access_log: false}
`
	}
	allow := startGateway(t, cfg("allow"))
	deny := startGateway(t, cfg("deny"))
	body := []byte(`{"model":"limited","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`)
	client := &http.Client{Timeout: 5 * time.Second}
	call := func(g *gw) (int, time.Duration) {
		start := time.Now()
		resp, err := client.Post(g.url+"/v1/chat/completions", "application/json", bytes.NewReader(body))
		if err != nil {
			return 0, time.Since(start)
		}
		resp.Body.Close()
		return resp.StatusCode, time.Since(start)
	}
	run := func(g *gw, n int) map[int]int {
		var mu sync.Mutex
		codes := map[int]int{}
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range n {
					code, took := call(g)
					mu.Lock()
					codes[code]++
					if took > 2*time.Second {
						codes[-1]++
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return codes
	}
	for _, g := range []*gw{allow, deny} {
		if c := run(g, 10); c[200] != 40 {
			t.Fatalf("before the outage: %v", c)
		}
	}
	rds.Kill()
	if c := run(allow, 25); c[200] != 100 || c[-1] > 0 {
		t.Fatalf("allow during the outage: %v (-1 counts requests over 2s)", c)
	}
	// Units prefetched before the outage answer requests until the heartbeat (every
	// second) finds Redis gone; from then on deny refuses.
	denied := false
	for start := time.Now(); !denied && time.Since(start) < 3*time.Second; {
		c := run(deny, 25)
		if c[200]+c[503] != 100 || c[-1] > 0 {
			t.Fatalf("deny during the outage: %v", c)
		}
		denied = c[503] > 0
	}
	if !denied {
		t.Fatal("deny during the outage: no 503 within 3s")
	}
	rds.Restart()
	for _, g := range []*gw{allow, deny} {
		waitFor(t, func() bool { code, _ := call(g); return code == 200 && !g.rt.Load().lim.Degraded() })
	}
	if c := run(deny, 10); c[200] != 40 {
		t.Fatalf("deny after recovery: %v", c)
	}
	if !bytes.Contains([]byte(allow.logs.String()), []byte("redis")) {
		t.Errorf("the outage was not logged")
	}
	// The metrics say who answered: Redis or units prefetched from it before and after
	// the outage, the local share (allow) or a refusal (deny) during it.
	for _, tc := range []struct {
		g      *gw
		during string
	}{{allow, "fallback"}, {deny, "unavailable"}} {
		fams, err := promtest.Scrape("http://" + tc.g.AdminAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		checks := func(answered string) float64 {
			v, _ := promtest.Sum(fams, "tollgate_limiter_checks_total", func(l map[string]string) bool { return l["answered"] == answered })
			return v
		}
		if checks("redis") == 0 || checks("redis")+checks("prefetched") < 80 || checks(tc.during) == 0 {
			t.Errorf("tollgate_limiter_checks_total: redis %v, prefetched %v, %s %v", checks("redis"), checks("prefetched"), tc.during, checks(tc.during))
		}
		if trips, _ := promtest.Sum(fams, "tollgate_limiter_redis_round_trips_total", nil); trips == 0 {
			t.Error("tollgate_limiter_redis_round_trips_total is 0")
		}
	}
}

// A reload that changes the limiter section during a Redis blip replaces the limiter
// while a concurrency release that failed in the blip waits to be sent again: the new
// limiter sends it once Redis answers its heartbeat, so the slot frees then rather
// than when its lease ends.
func TestRedisReloadDuringBlipFreesConcurrencySlot(t *testing.T) {
	t.Parallel()
	rds := redistest.Start(t)
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	cfg := func(timeout string) string {
		return mockConfig(up, "", `  - name: one
    type: chat
    routes: [{backend: up}]
    limits: [{per: endpoint, concurrency: 1}]
`) + `limiter: {store: redis, redis: {url: "` + rds.URL() + `"}, on_redis_error: allow, timeout: ` + timeout + `, concurrency_lease: 60s}
logging: {level: warn, access_log: false}
`
	}
	g := startGateway(t, cfg("50ms"))
	client := &http.Client{Timeout: 10 * time.Second}
	call := func(delay string) int {
		req, _ := http.NewRequest("POST", g.url+"/v1/chat/completions",
			strings.NewReader(`{"model":"one","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Content-Type", "application/json")
		if delay != "" {
			req.Header.Set("x-mock-delay", delay)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	waitFor(t, func() bool { return !g.rt.Load().lim.Degraded() })
	// A request takes the slot in Redis; Redis starts refusing while it runs, so its
	// release fails and is kept to be sent again.
	done := make(chan int, 1)
	go func() { done <- call("1500ms") }()
	time.Sleep(500 * time.Millisecond)
	leases := chaosRedisLeases(rds.Addr())
	// Redis refuses every command from now on (NOAUTH): a blip in which nothing
	// it is sent runs.
	redisCommands(t, rds.Addr(), []string{"CONFIG", "SET", "requirepass", "blip-pw"},
		[]string{"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"})
	resumed := false
	resume := func() {
		redisCommands(t, rds.Addr(), []string{"AUTH", "blip-pw"}, []string{"CONFIG", "SET", "requirepass", ""})
		resumed = true
	}
	defer func() {
		if !resumed {
			resume()
		}
	}()
	if code := <-done; code != 200 {
		t.Fatalf("first request: %d", code)
	}
	// Let the release's round fail and the heartbeat notice.
	waitFor(t, func() bool { return g.rt.Load().lim.Degraded() })
	time.Sleep(time.Second)
	// A reload that touches limiter: replaces the limiter.
	if err := os.WriteFile(g.path, []byte(cfg("60ms")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	resume()
	waitFor(t, func() bool { return !g.rt.Load().lim.Degraded() })
	// No request is in flight: the one slot must be free.
	codes := map[int]int{}
	for deadline := time.Now().Add(6 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c := call("")
		codes[c]++
		if c == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after Redis came back, a request on a concurrency: 1 endpoint with nothing in flight got %v (status: count) for 6s; leases in Redis: %v (while the first ran: %v)",
				codes, chaosRedisLeases(rds.Addr()), leases)
		}
	}
}

// redisCommands sends cmds on one connection to addr (an AUTH holds for the commands
// after it), failing the test on any error.
func redisCommands(t *testing.T, addr string, cmds ...[]string) {
	t.Helper()
	if _, err := redistest.Commands(addr, cmds...); err != nil {
		t.Fatalf("redis %v: %v", cmds, err)
	}
}

// A stream still open when the shutdown grace runs out is cut, and ends as a request
// does before the process exits: its concurrency slot in Redis is released (other
// replicas would otherwise refuse that key for the whole concurrency_lease) and its
// upstream request aborted.
// Not t.Parallel: its leases must be released within a 300 ms grace, with the default
// 50 ms limiter timeout.
func TestShutdownGraceExpiryReleasesStreamLeases(t *testing.T) {
	rds := redistest.Start(t)
	addr, upstreamClosed, release := silentStreamUpstream(t)
	t.Cleanup(release)
	g := startGateway(t, strings.Replace(mockConfig(addr, "", `  - name: one
    type: chat
    routes: [{backend: up}]
    limits: [{per: endpoint, concurrency: 5}]
`), "shutdown_grace: 5s", "shutdown_grace: 300ms", 1)+`limiter: {store: redis, redis: {url: "`+rds.URL()+`"}, concurrency_lease: 60s}
`)
	conn, br := dialGateway(t, g)
	if _, err := io.WriteString(conn, rawRequest(t, g, `{"model":"one","stream":true,"messages":[{"role":"user","content":"hi"}]}`)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stream did not start: %v %v", resp, err)
	}
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	held := func() int { return leasesHeld(rds.Addr()) }
	if n := held(); n != 1 {
		t.Fatalf("%d leases in Redis while the stream runs, want 1", n)
	}
	g.stopWithin(t, 15*time.Second)
	if !pollFor(5*time.Second, func() bool { return held() == 0 && upstreamClosed.Load() }) {
		t.Errorf("after the shutdown: %d leases in Redis, upstream connection closed %v; want 0 and closed", held(), upstreamClosed.Load())
	}
}
