package gateway

import (
	"bytes"
	"net/http"
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
