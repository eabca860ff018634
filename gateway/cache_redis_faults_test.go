package gateway

import (
	"crypto/sha256"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/limiter"
	"github.com/tollgate/tollgate/metrics"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// unitRemote is an endpoint's Redis cache (chat, ttl 1h) over its own client to rds,
// with workers writing from a queue of queueLen, its series on reg.
func unitRemote(t *testing.T, rds *redistest.Server, timeout time.Duration, workers, queueLen int) (*answerCache, *redisCache, *prometheus.Registry, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	q, err := newRedisCache(&limiter.RedisConfig{URL: rds.URL()}, timeout, slogTo(logs), workers, queueLen)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.close)
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	mc := m.Cache("chat")
	m.CacheRemote(mc)
	cc := &CacheConfig{TTL: time.Hour, MaxEntryBytes: 1 << 20, Store: cacheStoreRedis}
	c := newAnswerCache(cc, "fp", mc)
	c.remote = newRemoteCache(q, "chat", "fp", cc.TTL, mc)
	return c, q, reg, logs
}

// storeCount is reg's tollgate_cache_stores_total for chat with result.
func storeCount(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "tollgate_cache_stores_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			var ep, res string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "endpoint":
					ep = l.GetValue()
				case "result":
					res = l.GetValue()
				}
			}
			if ep == "chat" && res == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// putN hands c n answers to keep, each to its own body.
func putN(c *answerCache, n int) {
	for i := range n {
		body := []byte(`{"model":"chat","messages":[{"role":"user","content":"` + strconv.Itoa(i) + `"}]}`)
		c.putRemote("", "up", nil, body, benchChatResp, strJSON, "up", c.gen.Load(), 0)
	}
}

// TestRedisCacheQueueFull: while the workers cannot keep up (Redis stalled), a store
// past the queue's room is dropped at once and counted, with one log line for the
// lot; what was queued is written once Redis answers.
func TestRedisCacheQueueFull(t *testing.T) {
	t.Parallel()
	rds := redistest.Start(t)
	// The worker's write waits on the stalled Redis until it resumes, however long
	// the ten stores take on a loaded machine: with a short timeout it could fail
	// and free the worker for a store that must be dropped. A store that waited for
	// Redis would take that timeout, far past the bound below.
	const timeout = 30 * time.Second
	c, q, reg, logs := unitRemote(t, rds, timeout, 1, 2)
	rds.Pause()
	start := time.Now()
	putN(c, 10)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("10 stores took %v to queue with Redis's timeout at %v: a store must not wait for Redis", took, timeout)
	}
	dropped := storeCount(t, reg, "dropped")
	if dropped < 7 {
		t.Errorf("%v stores dropped, want at least 7 (one worker, a queue of 2)", dropped)
	}
	if n := strings.Count(logs.String(), "the redis store queue is full"); n != 1 {
		t.Errorf("%d log lines about the full queue, want 1:\n%s", n, logs.String())
	}
	rds.Resume()
	q.close()
	stored, failed := storeCount(t, reg, "stored"), storeCount(t, reg, "error")
	if stored+failed+dropped != 10 || stored < 1 {
		t.Errorf("stored %v, error %v, dropped %v: want the 10 accounted for, the queued ones written", stored, failed, dropped)
	}
	if q.queued.Load() != 0 {
		t.Errorf("%d bytes still counted as queued", q.queued.Load())
	}
}

// TestRedisCacheCloseWritesQueued: closing the client (the process stopping, or the
// last config using it retired) writes what is queued before it returns; with Redis
// stalled it returns after cacheDrainBound, what is left dropped and counted.
func TestRedisCacheCloseWritesQueued(t *testing.T) {
	t.Parallel()
	t.Run("redis answering", func(t *testing.T) {
		t.Parallel()
		rds := redistest.Start(t)
		c, q, reg, _ := unitRemote(t, rds, time.Second, 1, 64)
		putN(c, 50)
		q.close()
		if n := storeCount(t, reg, "stored"); n != 50 {
			t.Errorf("%v stored at close, want 50", n)
		}
		if keys := redisEntries(t, rds.Addr()); len(keys) != 50 {
			t.Errorf("%d entries in Redis, want 50", len(keys))
		}
		// After close a store is dropped, not queued for no one.
		putN(c, 1)
		if n := storeCount(t, reg, "dropped"); n != 1 {
			t.Errorf("a store after close: %v dropped, want 1", n)
		}
	})
	t.Run("redis stalled", func(t *testing.T) {
		t.Parallel()
		rds := redistest.Start(t)
		c, q, reg, _ := unitRemote(t, rds, 200*time.Millisecond, 1, 64)
		rds.Pause()
		defer rds.Resume()
		putN(c, 40)
		start := time.Now()
		q.close()
		if took := time.Since(start); took > cacheDrainBound+2*time.Second {
			t.Errorf("close took %v with Redis stalled, want about %v", took, cacheDrainBound)
		}
		failed, dropped := storeCount(t, reg, "error"), storeCount(t, reg, "dropped")
		if failed+dropped != 40 || dropped == 0 {
			t.Errorf("error %v, dropped %v: want the 40 accounted for, those past the bound dropped", failed, dropped)
		}
	})
}

// TestRedisCacheRedisDown: with Redis stalled, then killed, requests are answered by
// the upstream within the timeout (a miss to the client, an error to the metrics)
// and the log gets one line, not one per request; once Redis is back, hits again.
func TestRedisCacheRedisDown(t *testing.T) {
	t.Parallel()
	rds := redistest.Start(t)
	mock, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	cfg := strings.Replace(redisCacheConfig(addr, rds.URL(), redisCache1h, redisCache1h, ""), "timeout: 500ms", "timeout: 100ms", 1)
	g := startGateway(t, cfg)
	post := func(msg string) (string, time.Duration) {
		t.Helper()
		start := time.Now()
		resp, out := contractPost(t, g, "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"`+msg+`"}]}`, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, out)
		}
		return resp.Header.Get("X-Tollgate-Cache"), time.Since(start)
	}
	// A store slowed past the 100 ms timeout by a loaded machine is dropped (counted
	// an error): the question is asked again until one is kept.
	waitFor(t, func() bool {
		res, _ := post("kept")
		return res == "hit"
	})
	for _, outage := range []struct {
		name       string
		stop, back func()
	}{
		{"stalled", rds.Pause, rds.Resume},
		{"killed", rds.Kill, rds.Restart},
	} {
		calls := upstreamCalls(mock, "/v1/chat/completions")
		errors := cacheCount(t, g, "tollgate_cache_requests_total", "chat", "error")
		outage.stop()
		var slowest time.Duration
		for range 20 {
			res, took := post("kept")
			if res != "miss" {
				t.Errorf("%s: x-tollgate-cache %q, want miss", outage.name, res)
			}
			slowest = max(slowest, took)
		}
		// 100ms of timeout at most, and the upstream's answer; generous for a loaded
		// machine under the race detector.
		if slowest > time.Second {
			t.Errorf("%s: slowest request took %v", outage.name, slowest)
		}
		if n := upstreamCalls(mock, "/v1/chat/completions") - calls; n != 20 {
			t.Errorf("%s: %d upstream calls, want 20", outage.name, n)
		}
		if n := cacheCount(t, g, "tollgate_cache_requests_total", "chat", "error") - errors; n != 20 {
			t.Errorf("%s: %v lookups counted as errors, want 20", outage.name, n)
		}
		if outage.name == "killed" {
			req, _ := http.NewRequest("DELETE", "http://"+g.AdminAddr()+"/admin/endpoints/chat/cache", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 503 || !strings.Contains(string(b), `"cache_unavailable"`) {
				t.Errorf("purge with Redis down: %d %s, want 503 cache_unavailable", resp.StatusCode, b)
			}
		}
		outage.back()
		// Hits again once Redis answers (the killed one lost what it held).
		waitFor(t, func() bool {
			res, _ := post("kept")
			return res == "hit"
		})
	}
	logs := g.logs.String()
	if n := strings.Count(logs, "redis lookup failed"); n < 1 || n > 2 {
		t.Errorf("%d log lines about failed lookups, want one per outage at most (10 s apart):\n%s", n, logs)
	}
	if n := strings.Count(logs, "redis store failed"); n > 2 {
		t.Errorf("%d log lines about failed stores, want one per outage at most", n)
	}
	if !strings.Contains(logs, "redis lookups answered again") {
		t.Errorf("no line saying the lookups recovered:\n%s", logs)
	}
	if !strings.Contains(logs, `"cache":"error"`) {
		t.Errorf("no access log line says the lookup failed")
	}
}

// TestRedisCacheCollision: an entry found under the request's hash that holds another
// body, or another key's, is never served; the same body and owner is.
func TestRedisCacheCollision(t *testing.T) {
	t.Parallel()
	rds := redistest.Start(t)
	// Entries of at most 300 bytes: the body (180) is looked up, but the gateway
	// keeps none of its own answers (290 more), and each case finds what it planted.
	s := newTestServer(t, strings.Replace(redisCacheBenchConfig(startStaticCacheUpstream(t), rds.URL()),
		"{ttl: 1h, store: redis}", "{ttl: 1h, store: redis, max_entry_bytes: 300}", -1))
	rm := s.rt.Load().endpoints["chat"].cache.remote
	lk := &remoteLookup{h: sha256.New()}
	lk.entryHash("", "up", nil, benchChatBody)
	key := rm.prefix.(string) + "0:" + string(lk.key[:])
	other := []byte(`{"model":"chat","messages":[{"role":"user","content":"something else entirely"}]}`)
	for _, tc := range []struct {
		name  string
		owner string
		route string
		body  []byte
		want  string
	}{
		{"another body", "", "up", other, "miss"},
		{"another key's", "team-b", "up", benchChatBody, "miss"},
		{"another route's", "", "canary", benchChatBody, "miss"},
		{"this request's", "", "up", benchChatBody, "hit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			value, _ := appendCacheValue(nil, time.Now(), "up", strJSON, []byte(`{"planted":true}`), tc.owner, tc.route, nil, tc.body)
			if _, err := redistest.Command(rds.Addr(), "SET", key, string(value), "PX", "3600000"); err != nil {
				t.Fatal(err)
			}
			ctx := newProxyCtx(benchChatBody)
			proxyOnce(s, ctx)
			planted := strings.Contains(string(ctx.Response.Body()), "planted")
			if got := string(ctx.Response.Header.Peek("X-Tollgate-Cache")); got != tc.want || planted != (tc.want == "hit") {
				t.Errorf("x-tollgate-cache %q (want %s), the planted answer served: %v", got, tc.want, planted)
			}
		})
	}
}

// TestRedisCacheReloadClient: a reload that changes limiter.redis gives the caches a
// new client to that Redis and closes the old one once no request uses it; one that
// leaves it keeps the client.
func TestRedisCacheReloadClient(t *testing.T) {
	t.Parallel()
	rds, other := redistest.Start(t), redistest.Start(t)
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	cfg := redisCacheConfig(addr, rds.URL(), redisCache1h, redisCache1h, "")
	g := startGateway(t, cfg)
	post := func() string {
		t.Helper()
		resp, out := contractPost(t, g, "/v1/embeddings", `{"model":"embed","input":"reload"}`, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, out)
		}
		return resp.Header.Get("X-Tollgate-Cache")
	}
	post()
	waitStored(t, g, "embed", 1)
	first := g.rt.Load().rcache
	cacheReloadTo(t, g, strings.Replace(cfg, "level: info", "level: debug", 1))
	if g.rt.Load().rcache != first {
		t.Errorf("a reload that left limiter alone made a new client")
	}
	if res := post(); res != "hit" {
		t.Errorf("after a reload that kept the settings: %q, want hit", res)
	}
	cacheReloadTo(t, g, strings.Replace(cfg, rds.URL(), other.URL(), 1))
	if g.rt.Load().rcache == first {
		t.Fatalf("a reload to another Redis kept the client")
	}
	waitFor(t, first.closed.Load)
	if res := post(); res != "miss" {
		t.Errorf("on the other Redis: %q, want miss (it holds nothing)", res)
	}
	waitStored(t, g, "embed", 2)
	if keys := redisEntries(t, other.Addr()); len(keys) != 1 {
		t.Errorf("the other Redis holds %v, want the new entry", keys)
	}
	cacheReloadTo(t, g, strings.Replace(cfg, "store: redis", "store: memory", -1))
	if g.rt.Load().rcache != nil {
		t.Errorf("no endpoint keeps its cache in Redis, and the runtime holds a client")
	}
	if res := post(); res != "miss" {
		t.Errorf("on the memory store: %q, want miss", res)
	}
}

// TestRedisCacheCluster: on a Redis Cluster an endpoint's keys share a slot (the
// lookup script reads two), so lookups, stores and purges work there too.
func TestRedisCacheCluster(t *testing.T) {
	t.Parallel()
	addrs := redistest.StartCluster(t, 3)
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	cfg := redisCacheConfig(addr, "", redisCache1h, redisCache1h, "")
	cfg = strings.Replace(cfg, `url: ""`, `addrs: ["`+strings.Join(addrs, `", "`)+`"]`, 1)
	a, b := startGateway(t, cfg), startGateway(t, cfg)
	for _, ep := range []string{"chat", "embed"} {
		path, body := "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"cluster"}]}`
		if ep == "embed" {
			path, body = "/v1/embeddings", `{"model":"embed","input":"cluster"}`
		}
		post := func(g *gw) string {
			t.Helper()
			resp, out := contractPost(t, g, path, body, nil)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, out)
			}
			return resp.Header.Get("X-Tollgate-Cache")
		}
		if res := post(a); res != "miss" {
			t.Errorf("%s first: %q", ep, res)
		}
		waitStored(t, a, ep, 1)
		if res := post(b); res != "hit" {
			t.Errorf("%s on the other replica: %q, want hit", ep, res)
		}
		req, _ := http.NewRequest("DELETE", "http://"+b.AdminAddr()+"/admin/endpoints/"+ep+"/cache", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s purge: %d", ep, resp.StatusCode)
		}
		if res := post(a); res != "miss" {
			t.Errorf("%s after the purge: %q, want miss", ep, res)
		}
		if n := cacheCount(t, a, "tollgate_cache_requests_total", ep, "error"); n != 0 {
			t.Errorf("%s: %v lookups failed on the cluster", ep, n)
		}
	}
}

// TestRedisCacheGoroutines: a gateway with a Redis cache leaves no goroutine behind
// once it has stopped: the store workers and the client end with it.
func TestRedisCacheGoroutines(t *testing.T) {
	rds := redistest.Start(t)
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	ignore := goleak.IgnoreCurrent()
	g := startGateway(t, redisCacheConfig(addr, rds.URL(), redisCache1h, redisCache1h, ""))
	for range 3 {
		contractPost(t, g, "/v1/embeddings", `{"model":"embed","input":"leak"}`, nil)
	}
	waitStored(t, g, "embed", 1)
	g.stop()
	goleak.VerifyNone(t, ignore,
		// fasthttp's idle workers and its date ticker outlive a server by design.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).workerFunc"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		// The upstream client's idle connection sweeper ends with its last connection.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"))
}
