package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"

	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// redisCacheConfig serves chat and embed with the caches given, kept in the Redis at
// redisURL, in front of upstream; keys and other sections come after.
func redisCacheConfig(upstream, redisURL, chatCache, embedCache, tail string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 1MiB, shutdown_grace: 5s}
backends:
  up: {provider: openai, base_url: "http://` + upstream + `/v1", model: up-model, timeout: 20s, pricing: {input_per_million: 1, output_per_million: 2}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], cache: ` + chatCache + `}
  - {name: embed, type: embeddings, routes: [{backend: up}], cache: ` + embedCache + `}
  - {name: plain, type: chat, routes: [{backend: up}]}
limiter: {redis: {url: "` + redisURL + `"}, timeout: 500ms}
logging: {level: info, format: json}
` + tail
}

const redisCache1h = "{ttl: 1h, store: redis}"

// cacheCount is the sum of g's series of name (a tollgate_cache_* counter) on
// endpoint with result.
func cacheCount(t testing.TB, g *gw, name, endpoint, result string) float64 {
	t.Helper()
	fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	v, _ := promtest.Sum(fams, name, func(l map[string]string) bool {
		return l["endpoint"] == endpoint && l["result"] == result
	})
	return v
}

// waitStored waits until g has written n answers of endpoint to Redis: a store goes
// through the queue after the answer, so a repeat sent at once may not find it yet.
func waitStored(t testing.TB, g *gw, endpoint string, n float64) {
	t.Helper()
	waitFor(t, func() bool { return cacheCount(t, g, "tollgate_cache_stores_total", endpoint, "stored") >= n })
}

// redisEntries lists the answer caches' entry keys in the Redis at addr (not the
// generations).
func redisEntries(t testing.TB, addr string) []string {
	t.Helper()
	out, err := redistest.Command(addr, "KEYS", "tollgate:cache:*")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, k := range strings.Fields(out) {
		if !strings.HasSuffix(k, "}:gen") {
			keys = append(keys, k)
		}
	}
	return keys
}

// TestRedisCacheSharedByReplicas: an answer one replica made is a hit on another,
// byte for byte, with the second request's own ID, the backend that made it and an
// Age; neither counts tokens for it, and the memory gauges stay at 0.
func TestRedisCacheSharedByReplicas(t *testing.T) {
	t.Parallel()
	rds := redistest.Start(t)
	mock, addr := startMock(t, mockllm.Options{MaxTokens: 12, Seed: 3, EmbeddingDim: 8})
	cfg := redisCacheConfig(addr, rds.URL(), redisCache1h, redisCache1h, "")
	a, b := startGateway(t, cfg), startGateway(t, cfg)

	first, r1 := sdkChat(t, a.client(), "chat", "tell me about caches", option.WithHeader("X-Request-Id", "req-a"))
	if got := r1.Header.Get("X-Tollgate-Cache"); got != "miss" || r1.Header.Get("Age") != "" {
		t.Fatalf("first call on a: x-tollgate-cache %q, Age %q; want miss and no Age", got, r1.Header.Get("Age"))
	}
	waitStored(t, a, "chat", 1)
	second, r2 := sdkChat(t, b.client(), "chat", "tell me about caches", option.WithHeader("X-Request-Id", "req-b"))
	if got := r2.Header.Get("X-Tollgate-Cache"); got != "hit" {
		t.Fatalf("same call on b: x-tollgate-cache %q, want hit", got)
	}
	if first.RawJSON() != second.RawJSON() {
		t.Errorf("b's hit differs from a's answer:\n%s\n%s", first.RawJSON(), second.RawJSON())
	}
	if r2.Header.Get("X-Request-Id") != "req-b" || r2.Header.Get("X-Tollgate-Backend") != "up" || r2.Header.Get("X-Tollgate-Variant") != "" {
		t.Errorf("hit's headers: request id %q, backend %q, variant %q; want req-b, up, none",
			r2.Header.Get("X-Request-Id"), r2.Header.Get("X-Tollgate-Backend"), r2.Header.Get("X-Tollgate-Variant"))
	}
	if r2.Header.Get("Age") != "0" || r2.Header.Get("Content-Type") != "application/json" {
		t.Errorf("hit's Age %q, content type %q", r2.Header.Get("Age"), r2.Header.Get("Content-Type"))
	}
	if n := upstreamCalls(mock, "/v1/chat/completions"); n != 1 {
		t.Errorf("upstream chat calls %d, want 1", n)
	}

	// Embeddings as the SDK asks them by default (base64), made on b, hit on a.
	embed := func(g *gw) (*openai.CreateEmbeddingResponse, *http.Response) {
		var resp *http.Response
		c := g.client()
		res, err := c.Embeddings.New(context.Background(), openai.EmbeddingNewParams{
			Model: "embed", Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"re-index", "this"}},
		}, option.WithResponseInto(&resp))
		if err != nil {
			t.Fatal(err)
		}
		return res, resp
	}
	e1, er1 := embed(b)
	waitStored(t, b, "embed", 1)
	e2, er2 := embed(a)
	if er1.Header.Get("X-Tollgate-Cache") != "miss" || er2.Header.Get("X-Tollgate-Cache") != "hit" {
		t.Errorf("embeddings: %q on b then %q on a, want miss then hit", er1.Header.Get("X-Tollgate-Cache"), er2.Header.Get("X-Tollgate-Cache"))
	}
	if e1.RawJSON() != e2.RawJSON() || len(e2.Data) != 2 || len(e2.Data[1].Embedding) != 8 {
		t.Errorf("embeddings hit differs or is not whole")
	}
	if n := upstreamCalls(mock, "/v1/embeddings"); n != 1 {
		t.Errorf("upstream embeddings calls %d, want 1", n)
	}
	if keys := redisEntries(t, rds.Addr()); len(keys) != 2 {
		t.Errorf("entries in Redis: %v, want one for chat and one for embed", keys)
	}

	for _, c := range []struct {
		g             *gw
		endpoint, res string
		want          float64
	}{
		{a, "chat", "miss", 1}, {b, "chat", "hit", 1}, {b, "embed", "miss", 1}, {a, "embed", "hit", 1}, {a, "chat", "error", 0},
	} {
		if got := cacheCount(t, c.g, "tollgate_cache_requests_total", c.endpoint, c.res); got != c.want {
			t.Errorf("tollgate_cache_requests_total{endpoint=%s,result=%s} = %v, want %v", c.endpoint, c.res, got, c.want)
		}
	}
	fams := contractScrape(t, b)
	if v, _ := promtest.Sum(fams, "tollgate_cache_bytes", func(l map[string]string) bool { return l["endpoint"] == "chat" }); v != 0 {
		t.Errorf("tollgate_cache_bytes of a Redis store = %v, want 0", v)
	}
	// b answered one chat from the cache: no tokens, no cost.
	if v, _ := promtest.Sum(fams, "tollgate_tokens_total", func(l map[string]string) bool { return l["endpoint"] == "chat" }); v != 0 {
		t.Errorf("b counted %v tokens for its hit", v)
	}
	waitFor(t, func() bool { return strings.Contains(b.logs.String(), `"cache":"hit"`) })
	for _, line := range strings.Split(b.logs.String(), "\n") {
		if strings.Contains(line, `"request_id":"req-b"`) && (!strings.Contains(line, `"backend":"up"`) || !strings.Contains(line, `"attempts":0`)) {
			t.Errorf("hit's access log line: %s", line)
		}
	}
}

// TestRedisCacheKeys: across replicas each key has its own entries, and with shared:
// true every key is answered from the others'.
func TestRedisCacheKeys(t *testing.T) {
	t.Parallel()
	rds := redistest.Start(t)
	mock, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	cfg := redisCacheConfig(addr, rds.URL(), redisCache1h, "{ttl: 1h, store: redis, shared: true}", `auth:
  keys:
    - {name: team-a, key: sk-team-a-0001}
    - {name: team-b, key: sk-team-b-0002}
`)
	ga, gb := startGateway(t, cfg), startGateway(t, cfg)
	a := ga.client(option.WithAPIKey("sk-team-a-0001"))
	b := gb.client(option.WithAPIKey("sk-team-b-0002"))
	aOnB := gb.client(option.WithAPIKey("sk-team-a-0001"))
	if _, r := sdkChat(t, a, "chat", "same"); r.Header.Get("X-Tollgate-Cache") != "miss" {
		t.Fatalf("team-a first: %q", r.Header.Get("X-Tollgate-Cache"))
	}
	waitStored(t, ga, "chat", 1)
	if _, r := sdkChat(t, b, "chat", "same"); r.Header.Get("X-Tollgate-Cache") != "miss" {
		t.Errorf("team-b after team-a: %q, want miss (its own entries)", r.Header.Get("X-Tollgate-Cache"))
	}
	if _, r := sdkChat(t, aOnB, "chat", "same"); r.Header.Get("X-Tollgate-Cache") != "hit" {
		t.Errorf("team-a on the other replica: %q, want hit", r.Header.Get("X-Tollgate-Cache"))
	}
	if n := upstreamCalls(mock, "/v1/chat/completions"); n != 2 {
		t.Errorf("upstream chat calls %d, want 2", n)
	}
	embed := func(c openai.Client) string {
		var resp *http.Response
		if _, err := c.Embeddings.New(context.Background(), openai.EmbeddingNewParams{
			Model: "embed", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("shared text")},
		}, option.WithResponseInto(&resp)); err != nil {
			t.Fatal(err)
		}
		return resp.Header.Get("X-Tollgate-Cache")
	}
	if got := embed(a); got != "miss" {
		t.Errorf("shared endpoint, team-a first: %q", got)
	}
	waitStored(t, ga, "embed", 1)
	if got := embed(b); got != "hit" {
		t.Errorf("shared endpoint, team-b on the other replica: %q, want hit", got)
	}
}

// TestRedisCachePurgeEveryReplica: a purge on one replica empties the cache for all:
// the generation goes up, and no replica serves what was kept before.
func TestRedisCachePurgeEveryReplica(t *testing.T) {
	t.Parallel()
	rds := redistest.Start(t)
	mock, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	cfg := redisCacheConfig(addr, rds.URL(), redisCache1h, redisCache1h, "")
	a, b := startGateway(t, cfg), startGateway(t, cfg)
	body := `{"model":"chat","messages":[{"role":"user","content":"purge me"}]}`
	post := func(g *gw) string {
		t.Helper()
		resp, out := contractPost(t, g, "/v1/chat/completions", body, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, out)
		}
		return resp.Header.Get("X-Tollgate-Cache")
	}
	if got := post(a); got != "miss" {
		t.Fatalf("first: %q", got)
	}
	waitStored(t, a, "chat", 1)
	if got := post(b); got != "hit" {
		t.Fatalf("on b before the purge: %q, want hit", got)
	}
	req, _ := http.NewRequest("DELETE", "http://"+a.AdminAddr()+"/admin/endpoints/chat/cache", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var answer map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&answer)
	resp.Body.Close()
	if resp.StatusCode != 200 || answer["endpoint"] != "chat" || answer["store"] != "redis" || answer["generation"] != float64(1) {
		t.Fatalf("purge: %d %v, want 200 with the endpoint, store redis and generation 1", resp.StatusCode, answer)
	}
	if got := post(b); got != "miss" {
		t.Errorf("on b after a's purge: %q, want miss", got)
	}
	waitStored(t, b, "chat", 1)
	if got := post(a); got != "hit" {
		t.Errorf("on a, what b kept after the purge: %q, want hit", got)
	}
	if n := upstreamCalls(mock, "/v1/chat/completions"); n != 2 {
		t.Errorf("upstream calls %d, want 2", n)
	}
	if out, _ := redistest.Command(rds.Addr(), "GET", "tollgate:cache:{chat}:gen"); out != "1" {
		t.Errorf("chat's generation in Redis %q, want 1", out)
	}
}

// TestRedisCacheFingerprint: during a rolling reload, replicas on different settings
// never serve each other's entries; a reload that keeps the settings keeps serving
// what is there.
func TestRedisCacheFingerprint(t *testing.T) {
	t.Parallel()
	rds := redistest.Start(t)
	mock, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	cfg := redisCacheConfig(addr, rds.URL(), redisCache1h, redisCache1h, "")
	a, b := startGateway(t, cfg), startGateway(t, cfg)
	post := func(g *gw, msg string) string {
		t.Helper()
		resp, out := contractPost(t, g, "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"`+msg+`"}]}`, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, out)
		}
		return resp.Header.Get("X-Tollgate-Cache")
	}
	post(b, "old")
	waitStored(t, b, "chat", 1)
	// Retries and weights are not among what shapes an answer: a keeps serving.
	kept := strings.Replace(cfg, "routes: [{backend: up}], cache: "+redisCache1h+"}", "routes: [{backend: up}], retries: 1, cache: "+redisCache1h+"}", 1)
	cacheReloadTo(t, a, kept)
	if got := post(a, "old"); got != "hit" {
		t.Errorf("after a reload that keeps the cache settings: %q, want hit", got)
	}
	changed := strings.Replace(kept, "model: up-model,", "model: up-model, drop_params: [temperature],", 1)
	cacheReloadTo(t, a, changed)
	if got := post(a, "old"); got != "miss" {
		t.Errorf("a on new settings, b's entry: %q, want miss", got)
	}
	waitStored(t, a, "chat", 1)
	post(b, "old-b-only")
	waitStored(t, b, "chat", 2)
	if got := post(a, "old-b-only"); got != "miss" {
		t.Errorf("a on new settings, an entry b made after a's reload: %q, want miss", got)
	}
	post(a, "new")
	waitStored(t, a, "chat", 3)
	if got := post(b, "new"); got != "miss" {
		t.Errorf("b on the old settings, a's entry: %q, want miss", got)
	}
	if got := post(b, "old"); got != "hit" {
		t.Errorf("b, its own entry: %q, want hit", got)
	}
	if n := upstreamCalls(mock, "/v1/chat/completions"); n != 6 {
		t.Errorf("upstream calls %d, want 6", n)
	}
}

// TestRedisCacheControl: no-store neither reads nor keeps, no-cache skips the lookup
// and keeps the fresh answer, which the other replica then serves.
func TestRedisCacheControl(t *testing.T) {
	t.Parallel()
	rds := redistest.Start(t)
	mock, addr := startMock(t, mockllm.Options{MaxTokens: 6})
	cfg := redisCacheConfig(addr, rds.URL(), redisCache1h, redisCache1h, "")
	a, b := startGateway(t, cfg), startGateway(t, cfg)
	body := `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
	post := func(g *gw, cc string) (string, string) {
		t.Helper()
		var hdr map[string]string
		if cc != "" {
			hdr = map[string]string{"Cache-Control": cc}
		}
		resp, out := contractPost(t, g, "/v1/chat/completions", body, hdr)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, out)
		}
		return resp.Header.Get("X-Tollgate-Cache"), out
	}
	if res, _ := post(a, "no-store"); res != "bypass" {
		t.Errorf("no-store: %q, want bypass", res)
	}
	if res, _ := post(b, ""); res != "miss" {
		t.Errorf("after no-store: %q, want miss (no-store kept nothing)", res)
	}
	waitStored(t, b, "chat", 1)
	res, fresh := post(a, "no-cache")
	if res != "bypass" {
		t.Errorf("no-cache: %q, want bypass", res)
	}
	waitStored(t, a, "chat", 1)
	if res, again := post(b, ""); res != "hit" || again != fresh {
		t.Errorf("after no-cache on the other replica: %q, want a hit with the fresh answer", res)
	}
	if n := upstreamCalls(mock, "/v1/chat/completions"); n != 3 {
		t.Errorf("upstream calls %d, want 3", n)
	}
}

// TestRedisCacheKeepsNothingElse: an error answer, a stream and a Responses API call
// leave nothing in Redis.
func TestRedisCacheKeepsNothingElse(t *testing.T) {
	t.Parallel()
	rds := redistest.Start(t)
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	g := startGateway(t, redisCacheConfig(addr, rds.URL(), redisCache1h, redisCache1h, ""))
	c := g.client()
	for range 2 {
		resp, out := contractPost(t, g, "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"fail"}]}`, map[string]string{"X-Mock-Status": "500"})
		if resp.StatusCode != 500 || resp.Header.Get("X-Tollgate-Cache") != "miss" {
			t.Errorf("upstream error: %d %q: %s", resp.StatusCode, resp.Header.Get("X-Tollgate-Cache"), out)
		}
	}
	s := c.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg("stream me")})
	for s.Next() {
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Responses.New(context.Background(), responses.ResponseNewParams{
		Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hi")},
	}); err != nil {
		t.Fatal(err)
	}
	// A good answer after them is kept: the queue is first in, first out per worker,
	// and its being there shows the others had their turn.
	sdkChat(t, c, "chat", "good")
	waitStored(t, g, "chat", 1)
	if keys := redisEntries(t, rds.Addr()); len(keys) != 1 {
		t.Errorf("entries in Redis %v, want only the good answer's", keys)
	}
	for _, res := range []string{"error", "stale", "dropped"} {
		if n := cacheCount(t, g, "tollgate_cache_stores_total", "chat", res); n != 0 {
			t.Errorf("stores %s: %v", res, n)
		}
	}
}

// TestRedisCacheConcurrentRepeats: identical requests at once on two replicas are all
// answered (each goes upstream unless it finds an answer already kept), and the
// answer kept is served after.
func TestRedisCacheConcurrentRepeats(t *testing.T) {
	t.Parallel()
	rds := redistest.Start(t)
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	cfg := redisCacheConfig(addr, rds.URL(), redisCache1h, redisCache1h, "")
	gs := []*gw{startGateway(t, cfg), startGateway(t, cfg)}
	body := `{"model":"embed","input":"same at once"}`
	var wg sync.WaitGroup
	errs := make(chan string, 32)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := gs[i%2]
			resp, err := http.Post(g.url+"/v1/embeddings", "application/json", strings.NewReader(body))
			if err != nil {
				errs <- err.Error()
				return
			}
			resp.Body.Close()
			if res := resp.Header.Get("X-Tollgate-Cache"); resp.StatusCode != 200 || (res != "miss" && res != "hit") {
				errs <- strconv.Itoa(resp.StatusCode) + " " + res
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	waitFor(t, func() bool {
		return cacheCount(t, gs[0], "tollgate_cache_stores_total", "embed", "stored")+cacheCount(t, gs[1], "tollgate_cache_stores_total", "embed", "stored")+
			cacheCount(t, gs[0], "tollgate_cache_requests_total", "embed", "hit")+cacheCount(t, gs[1], "tollgate_cache_requests_total", "embed", "hit") >= 16
	})
	for _, g := range gs {
		resp, out := contractPost(t, g, "/v1/embeddings", body, nil)
		if resp.StatusCode != 200 || resp.Header.Get("X-Tollgate-Cache") != "hit" {
			t.Errorf("after the burst: %d %q: %s", resp.StatusCode, resp.Header.Get("X-Tollgate-Cache"), out)
		}
	}
	if keys := redisEntries(t, rds.Addr()); len(keys) != 1 {
		t.Errorf("entries %v, want one", keys)
	}
}

// TestRedisCacheConfig: store: is checked as the cache's other keys are.
func TestRedisCacheConfig(t *testing.T) {
	cfg := func(cache, limiter string) string {
		return `
backends:
  up: {provider: mock, model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], cache: ` + cache + `}
` + limiter
	}
	const url = "limiter: {redis: {url: \"redis://127.0.0.1:6379/0\"}}\n"
	for _, tc := range []struct {
		name, cache, limiter, want string
	}{
		{"redis", "{ttl: 1h, store: redis}", url, ""},
		{"redis with an entry bound", "{ttl: 1h, store: redis, max_entry_bytes: 4MiB, shared: true}", url, ""},
		{"redis cluster", "{ttl: 1h, store: redis}", "limiter: {redis: {addrs: [\"10.0.0.1:6379\", \"10.0.0.2:6379\"]}}\n", ""},
		{"redis sentinel", "{ttl: 1h, store: redis}", "limiter: {redis: {sentinel: {master: m, addrs: [\"10.0.0.1:26379\"]}}}\n", ""},
		{"memory written", "{ttl: 1h, store: memory, max_bytes: 2MiB}", "", ""},
		{"redis without limiter.redis", "{ttl: 1h, store: redis}", "", "endpoints[0].cache.store: redis keeps the cache in the limiter's Redis, and limiter.redis is not set"},
		{"redis with a memory limiter", "{ttl: 1h, store: redis}", "limiter: {store: memory}\n", "endpoints[0].cache.store: redis keeps the cache in the limiter's Redis"},
		{"redis with max_bytes", "{ttl: 1h, store: redis, max_bytes: 1GiB}", url, "endpoints[0].cache.max_bytes: does not apply to store: redis"},
		{"redis with a ttl under 1ms", "{ttl: 500us, store: redis}", url, "endpoints[0].cache.ttl: must be at least 1ms with store: redis"},
		{"redis with an entry over the store queue", "{ttl: 1h, store: redis, max_entry_bytes: 65MiB}", url, "endpoints[0].cache.max_entry_bytes: must be at most 64MiB with store: redis"},
		{"redis with the largest entry", "{ttl: 1ms, store: redis, max_entry_bytes: 64MiB}", url, ""},
		{"unknown store", "{ttl: 1h, store: memcached}", "", "endpoints[0].cache.store: must be memory or redis"},
		{"empty store", "{ttl: 1h, store: \"\"}", "", "endpoints[0].cache.store: must be memory or redis"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("c.yaml", []byte(cfg(tc.cache, tc.limiter)), env(nil))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want a problem with %q", err, tc.want)
			}
		})
	}
	c, err := ParseConfig("c.yaml", []byte(cfg("{ttl: 1h}", "")), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Endpoints[0].Cache.Store != "memory" {
		t.Errorf("store left out: %q, want memory", c.Endpoints[0].Cache.Store)
	}
}

// TestRedisCacheTTL: Redis expires an entry at the cache's ttl; a hit's Age is the
// time since it was kept, as Redis counts it (the same on every replica).
func TestRedisCacheTTL(t *testing.T) {
	t.Parallel()
	rds := redistest.Start(t)
	mock, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	cfg := redisCacheConfig(addr, rds.URL(), "{ttl: 10s, store: redis}", redisCache1h, "")
	a, b := startGateway(t, cfg), startGateway(t, cfg)
	post := func(g *gw) (string, string) {
		t.Helper()
		resp, out := contractPost(t, g, "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"ttl"}]}`, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, out)
		}
		return resp.Header.Get("X-Tollgate-Cache"), resp.Header.Get("Age")
	}
	post(a)
	waitStored(t, a, "chat", 1)
	keys := redisEntries(t, rds.Addr())
	if len(keys) != 1 {
		t.Fatalf("entries %v", keys)
	}
	pttl, err := redistest.Command(rds.Addr(), "PTTL", keys[0])
	if ms, _ := strconv.Atoi(pttl); err != nil || ms <= 8000 || ms > 10000 {
		t.Errorf("the entry expires in %s ms (%v), want the ttl, 10s", pttl, err)
	}
	// 5.5 s of its 10 left: kept 4.5 s ago.
	if _, err := redistest.Command(rds.Addr(), "PEXPIRE", keys[0], "5500"); err != nil {
		t.Fatal(err)
	}
	if res, age := post(b); res != "hit" || age != "4" {
		t.Errorf("on b: %q, Age %q; want a hit, Age 4", res, age)
	}
	if _, err := redistest.Command(rds.Addr(), "PEXPIRE", keys[0], "1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(redisEntries(t, rds.Addr())) == 0 })
	if res, _ := post(b); res != "miss" {
		t.Errorf("past its ttl: %q, want miss", res)
	}
	if n := upstreamCalls(mock, "/v1/chat/completions"); n != 2 {
		t.Errorf("upstream calls %d, want 2", n)
	}
}

// TestRedisCacheLimits: a hit is a request to the limits, which Redis shares between
// the replicas as it shares the cache.
func TestRedisCacheLimits(t *testing.T) {
	t.Parallel()
	rds := redistest.Start(t)
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	cfg := strings.Replace(redisCacheConfig(addr, rds.URL(), redisCache1h, redisCache1h, ""), "cache: "+redisCache1h+"}\n  - {name: embed",
		"cache: "+redisCache1h+", limits: [{per: endpoint, requests: 3, window: day}]}\n  - {name: embed", 1)
	a, b := startGateway(t, cfg), startGateway(t, cfg)
	body := `{"model":"chat","messages":[{"role":"user","content":"limited"}]}`
	for i, tc := range []struct {
		g          *gw
		code       int
		cache      string
		waitStored bool
	}{
		{a, 200, "miss", true}, {b, 200, "hit", false}, {a, 200, "hit", false}, {b, 429, "bypass", false},
	} {
		resp, out := contractPost(t, tc.g, "/v1/chat/completions", body, nil)
		if resp.StatusCode != tc.code || resp.Header.Get("X-Tollgate-Cache") != tc.cache {
			t.Errorf("request %d: %d %q, want %d %s: %s", i, resp.StatusCode, resp.Header.Get("X-Tollgate-Cache"), tc.code, tc.cache, out)
		}
		if tc.waitStored {
			waitStored(t, tc.g, "chat", 1)
		}
	}
}
