package gateway

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// idleConfig turns on every part of a gateway that calls Redis: limits of each kind,
// the Redis answer cache, a canary (router shared state) and keys (revocation polls).
func idleConfig(stable, canary, redisURL string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 5s}
auth:
  keys:
    - {name: team-a, key: sk-team-a}
backends:
  stable: {provider: openai, base_url: "http://` + stable + `/v1", model: up-model, timeout: 20s, pricing: {input_per_million: 1, output_per_million: 2}}
  canary: {provider: openai, base_url: "http://` + canary + `/v1", model: up-model, timeout: 20s, pricing: {input_per_million: 1, output_per_million: 2}}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: stable, weight: 90, variant: stable}, {backend: canary, weight: 10, variant: canary}]
    sticky: {from: user}
    canary: {backend: canary, steps: [10, 50, 100], interval: 1h, max_error_rate: 0.5}
    cache: {ttl: 1h, store: redis}
    limits:
      - {per: api_key, requests: 100000, window: minute}
      - {per: api_key, tokens: 10000000, window: minute}
      - {per: api_key, usd: 100, window: day}
      - {per: user, concurrency: 50}
limiter: {redis: {url: "` + redisURL + `"}, timeout: 5s}
logging: {level: info, format: json}
`
}

// idleBursts has Redis close connections idle for a second (timeout 1) and sends
// bursts of requests to two gateways with 2.5 s of quiet between them, so that each
// burst finds the connections of the last closed: no part of the gateway (limiter
// checks and true-ups, its heartbeat, the router's shared state, the revocation polls,
// the answer cache) sees a failed call: every request is answered, the cached
// question from the cache, no limiter degraded, no settlement dropped, no warning.
// Redis is given 5 s to answer (limiter.timeout), as in the exact-accounting tests:
// a call slowed past a timeout by a loaded machine is not what this checks. The Redis
// client's own messages (a pool that cannot dial) go to the latest limiter's logger
// whatever client they come from (go-redis has one logger per process), so those
// that do not name this test's Redis, addrs, are other tests' clients'.
func idleBursts(t *testing.T, srv *redistest.Server, url string, addrs ...string) {
	t.Helper()
	if _, err := redistest.Command(srv.Addr(), "CONFIG", "SET", "timeout", "1"); err != nil {
		t.Fatal(err)
	}
	_, stable := startMock(t, mockllm.Options{MaxTokens: 4, Seed: 1})
	_, canary := startMock(t, mockllm.Options{MaxTokens: 4, Seed: 2})
	gws := []*gw{startGateway(t, idleConfig(stable, canary, url)), startGateway(t, idleConfig(stable, canary, url))}
	hdr := func(id string) map[string]string {
		return map[string]string{"Authorization": "Bearer sk-team-a", "X-Request-Id": id}
	}
	cached := `{"model":"chat","max_tokens":4,"user":"u1","messages":[{"role":"user","content":"the same question"}]}`
	for i, g := range gws {
		if resp, b := contractPost(t, g, "/v1/chat/completions", cached, hdr("warm"+strconv.Itoa(i))); resp.StatusCode != 200 {
			t.Fatalf("warm-up: %d %s", resp.StatusCode, b)
		}
		waitStored(t, gws[0], "chat", 1)
	}
	info0, _ := redistest.Command(srv.Addr(), "INFO", "stats")
	const bursts, per = 4, 30
	var mu sync.Mutex
	var fails []string
	misses := 0
	for b := range bursts {
		time.Sleep(2500 * time.Millisecond)
		var wg sync.WaitGroup
		for gi, g := range gws {
			for r := range per {
				wg.Add(1)
				go func() {
					defer wg.Done()
					body := cached
					if r%2 == 1 {
						body = `{"model":"chat","max_tokens":4,"user":"u` + strconv.Itoa(r) + `","messages":[{"role":"user","content":"q ` + strconv.Itoa(b) + " " + strconv.Itoa(gi) + " " + strconv.Itoa(r) + `"}]}`
					}
					resp, out := contractPost(t, g, "/v1/chat/completions", body, hdr("b"+strconv.Itoa(b)+"g"+strconv.Itoa(gi)+"r"+strconv.Itoa(r)))
					mu.Lock()
					defer mu.Unlock()
					if resp.StatusCode != 200 {
						fails = append(fails, strconv.Itoa(resp.StatusCode)+" "+out)
					}
					if body == cached && resp.Header.Get("X-Tollgate-Cache") != "hit" {
						misses++
					}
				}()
			}
		}
		wg.Wait()
	}
	time.Sleep(1500 * time.Millisecond)
	info1, _ := redistest.Command(srv.Addr(), "INFO", "stats")
	t.Logf("redis connections received: before %s after %s", statLine(info0, "total_connections_received"), statLine(info1, "total_connections_received"))
	if len(fails) > 0 {
		t.Errorf("%d failed requests: %q", len(fails), fails)
	}
	if misses > 0 {
		t.Errorf("%d cached questions not answered from the cache", misses)
	}
	for i, g := range gws {
		s := scrapeSeries(t, g)
		for k, v := range s {
			if (strings.Contains(k, "settlements_dropped") || strings.Contains(k, "result=error")) && v != 0 {
				t.Errorf("gateway %d: %s = %v", i, k, v)
			}
		}
		if v, _ := gaugeValue(t, g.Server, "tollgate_limiter_degraded"); v != 0 {
			t.Errorf("gateway %d: limiter degraded", i)
		}
		for _, line := range strings.Split(g.logs.String(), "\n") {
			if strings.Contains(line, "limiter: redis client: ") && !slices.ContainsFunc(addrs, func(a string) bool { return strings.Contains(line, a) }) {
				continue
			}
			if (strings.Contains(line, `"WARN"`) || strings.Contains(line, `"ERROR"`) || strings.Contains(line, "unavailable") || strings.Contains(line, "not read")) && !strings.Contains(line, "response_secret") {
				t.Errorf("gateway %d log: %s", i, line)
			}
		}
	}
}

// statLine is the value of key in an INFO reply.
func statLine(info, key string) string {
	for _, l := range strings.Split(info, "\n") {
		if strings.HasPrefix(l, key+":") {
			return strings.TrimSpace(strings.TrimPrefix(l, key+":"))
		}
	}
	return "?"
}

func TestRedisIdleTimeoutPlain(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	idleBursts(t, srv, srv.URL(), srv.Addr())
}

func TestRedisIdleTimeoutTLS(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	port := srv.TLSPort(t)
	tls := "127.0.0.1:" + strconv.Itoa(port)
	idleBursts(t, srv, "rediss://"+tls+"/0?skip_verify=true", srv.Addr(), tls)
}
