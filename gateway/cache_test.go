package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	dto "github.com/prometheus/client_model/go"
	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// cacheGatewayConfig serves chat and embed with a cache, and plain without one, in
// front of upstream; keys and extra endpoints' YAML come after.
func cacheGatewayConfig(upstream, cache, tail string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 1MiB, shutdown_grace: 5s}
backends:
  up: {provider: openai, base_url: "http://` + upstream + `/v1", model: up-model, timeout: 20s, pricing: {input_per_million: 1, output_per_million: 2}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], cache: ` + cache + `}
  - {name: embed, type: embeddings, routes: [{backend: up}], cache: ` + cache + `}
  - {name: plain, type: chat, routes: [{backend: up}]}
` + tail
}

// upstreamCalls is how many requests mock had on path.
func upstreamCalls(mock *mockllm.Server, path string) int64 {
	return mock.Stats().Requests[path]
}

// sdkChat calls chat on c with msg and returns the answer and its HTTP response.
func sdkChat(t *testing.T, c openai.Client, model, msg string, opts ...option.RequestOption) (*openai.ChatCompletion, *http.Response) {
	t.Helper()
	var resp *http.Response
	res, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model: model, Messages: userMsg(msg), Seed: openai.Int(1),
	}, append(opts, option.WithResponseInto(&resp))...)
	if err != nil {
		t.Fatalf("chat %q: %v", msg, err)
	}
	return res, resp
}

// TestCacheHitMissSDK: the official SDK asks the same chat and embeddings twice; the
// second is answered from the cache, byte for byte the first answer, with its own
// request ID, the backend that made the entry and its Age, and no upstream call.
func TestCacheHitMissSDK(t *testing.T) {
	t.Parallel()
	mock, addr := startMock(t, mockllm.Options{MaxTokens: 12, Seed: 3})
	g := startGateway(t, cacheGatewayConfig(addr, "{ttl: 1h, max_bytes: 1MiB}", ""))
	c := g.client()

	first, r1 := sdkChat(t, c, "chat", "tell me about caches", option.WithHeader("X-Request-Id", "req-first"))
	second, r2 := sdkChat(t, c, "chat", "tell me about caches", option.WithHeader("X-Request-Id", "req-second"))
	if got := r1.Header.Get("X-Tollgate-Cache"); got != "miss" {
		t.Errorf("first call: x-tollgate-cache %q, want miss", got)
	}
	if got := r2.Header.Get("X-Tollgate-Cache"); got != "hit" {
		t.Errorf("second call: x-tollgate-cache %q, want hit", got)
	}
	if first.RawJSON() != second.RawJSON() {
		t.Errorf("the hit's answer differs:\n%s\n%s", first.RawJSON(), second.RawJSON())
	}
	if r2.Header.Get("X-Request-Id") != "req-second" || r1.Header.Get("X-Request-Id") != "req-first" {
		t.Errorf("request IDs %q, %q: each answer must carry its own request's", r1.Header.Get("X-Request-Id"), r2.Header.Get("X-Request-Id"))
	}
	if b := r2.Header.Get("X-Tollgate-Backend"); b != "up" {
		t.Errorf("hit's x-tollgate-backend %q, want up (the backend that made the entry)", b)
	}
	if age := r2.Header.Get("Age"); age != "0" {
		t.Errorf("hit's Age %q, want 0", age)
	}
	if r1.Header.Get("Age") != "" {
		t.Errorf("a miss has an Age: %q", r1.Header.Get("Age"))
	}
	if r2.Header.Get("Content-Type") != "application/json" {
		t.Errorf("hit's content type %q", r2.Header.Get("Content-Type"))
	}
	if n := upstreamCalls(mock, "/v1/chat/completions"); n != 1 {
		t.Errorf("upstream chat calls %d, want 1", n)
	}

	// Another message is another entry.
	if _, r := sdkChat(t, c, "chat", "something else"); r.Header.Get("X-Tollgate-Cache") != "miss" {
		t.Errorf("another body: %q, want miss", r.Header.Get("X-Tollgate-Cache"))
	}

	embed := func() (*openai.CreateEmbeddingResponse, *http.Response) {
		var resp *http.Response
		res, err := c.Embeddings.New(context.Background(), openai.EmbeddingNewParams{
			Model: "embed", Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"re-index", "this"}},
		}, option.WithResponseInto(&resp))
		if err != nil {
			t.Fatal(err)
		}
		return res, resp
	}
	e1, er1 := embed()
	e2, er2 := embed()
	if er1.Header.Get("X-Tollgate-Cache") != "miss" || er2.Header.Get("X-Tollgate-Cache") != "hit" {
		t.Errorf("embeddings: %q then %q, want miss then hit", er1.Header.Get("X-Tollgate-Cache"), er2.Header.Get("X-Tollgate-Cache"))
	}
	if e1.RawJSON() != e2.RawJSON() || len(e2.Data) != 2 {
		t.Errorf("embeddings hit differs or is not whole: %d vectors", len(e2.Data))
	}
	if n := upstreamCalls(mock, "/v1/embeddings"); n != 1 {
		t.Errorf("upstream embeddings calls %d, want 1", n)
	}

	// An endpoint without a cache says nothing of one.
	if _, r := sdkChat(t, c, "plain", "tell me about caches"); r.Header.Get("X-Tollgate-Cache") != "" {
		t.Errorf("endpoint without cache: x-tollgate-cache %q", r.Header.Get("X-Tollgate-Cache"))
	}
}

// TestCacheExactBody: the key is the body as sent, so the same request written with
// another member order or spacing is another entry.
func TestCacheExactBody(t *testing.T) {
	t.Parallel()
	mock, addr := startMock(t, mockllm.Options{MaxTokens: 4, Seed: 1})
	g := startGateway(t, cacheGatewayConfig(addr, "{ttl: 1h}", ""))
	for i, tc := range []struct{ body, want string }{
		{`{"model":"chat","messages":[{"role":"user","content":"hi"}]}`, "miss"},
		{`{"model":"chat","messages":[{"role":"user","content":"hi"}]}`, "hit"},
		{`{"model":"chat", "messages":[{"role":"user","content":"hi"}]}`, "miss"},
		{`{"messages":[{"role":"user","content":"hi"}],"model":"chat"}`, "miss"},
		{`{"model":"chat", "messages":[{"role":"user","content":"hi"}]}`, "hit"},
	} {
		resp, b := contractPost(t, g, "/v1/chat/completions", tc.body, nil)
		if resp.StatusCode != 200 || resp.Header.Get("X-Tollgate-Cache") != tc.want {
			t.Errorf("request %d: %d %q, want 200 %q: %s", i, resp.StatusCode, resp.Header.Get("X-Tollgate-Cache"), tc.want, b)
		}
	}
	if n := upstreamCalls(mock, "/v1/chat/completions"); n != 3 {
		t.Errorf("upstream calls %d, want 3", n)
	}
}

// TestCacheControl: no-cache skips the lookup and stores the fresh answer; no-store
// neither reads nor stores.
func TestCacheControl(t *testing.T) {
	t.Parallel()
	mock, addr := startMock(t, mockllm.Options{MaxTokens: 6})
	g := startGateway(t, cacheGatewayConfig(addr, "{ttl: 1h}", ""))
	body := `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
	post := func(cc string) (string, string) {
		t.Helper()
		var hdr map[string]string
		if cc != "" {
			hdr = map[string]string{"Cache-Control": cc}
		}
		resp, b := contractPost(t, g, "/v1/chat/completions", body, hdr)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		return resp.Header.Get("X-Tollgate-Cache"), b
	}
	if res, _ := post("no-store"); res != "bypass" {
		t.Errorf("no-store: %q, want bypass", res)
	}
	if res, _ := post(""); res != "miss" {
		t.Errorf("after no-store: %q, want miss (no-store kept nothing)", res)
	}
	res, fresh := post("No-Cache, max-age=0")
	if res != "bypass" {
		t.Errorf("no-cache: %q, want bypass", res)
	}
	res, again := post("")
	if res != "hit" || again != fresh {
		t.Errorf("after no-cache: %q, want a hit with the fresh answer", res)
	}
	if res, _ := post("no-store, no-cache"); res != "bypass" {
		t.Errorf("no-store, no-cache: %q", res)
	}
	if n := upstreamCalls(mock, "/v1/chat/completions"); n != 4 {
		t.Errorf("upstream calls %d, want 4", n)
	}
}

// TestCacheStreamsAndResponsesBypass: a stream and a Responses API call neither read
// nor fill the cache, and say bypass.
func TestCacheStreamsAndResponsesBypass(t *testing.T) {
	t.Parallel()
	mock, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	g := startGateway(t, cacheGatewayConfig(addr, "{ttl: 1h}", ""))
	c := g.client()
	params := openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg("stream me")}
	for i := range 2 {
		var resp *http.Response
		s := c.Chat.Completions.NewStreaming(context.Background(), params, option.WithResponseInto(&resp))
		for s.Next() {
		}
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		if got := resp.Header.Get("X-Tollgate-Cache"); got != "bypass" {
			t.Errorf("stream %d: x-tollgate-cache %q, want bypass", i, got)
		}
	}
	// The same request without stream is not answered from anything the streams left.
	if _, r := sdkChat(t, c, "chat", "stream me"); r.Header.Get("X-Tollgate-Cache") != "miss" {
		t.Errorf("after streams: %q, want miss", r.Header.Get("X-Tollgate-Cache"))
	}
	for i := range 2 {
		var resp *http.Response
		if _, err := c.Responses.New(context.Background(), responses.ResponseNewParams{
			Model: "chat", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hi")},
		}, option.WithResponseInto(&resp)); err != nil {
			t.Fatal(err)
		}
		if got := resp.Header.Get("X-Tollgate-Cache"); got != "bypass" {
			t.Errorf("Responses call %d: %q, want bypass", i, got)
		}
	}
	if n := upstreamCalls(mock, "/v1/chat/completions"); n != 3 {
		t.Errorf("upstream chat calls %d, want 3", n)
	}
	if n := upstreamCalls(mock, "/v1/responses"); n != 2 {
		t.Errorf("upstream Responses calls %d, want 2", n)
	}
}

// TestCacheKeepsOnlyGoodAnswers: an upstream error, a 200 holding an error object, a
// refusal, a filtered answer and one over max_entry_bytes are never served again.
func TestCacheKeepsOnlyGoodAnswers(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	calls := map[string]int{}
	answers := map[string]string{
		"error-object": `{"error":{"message":"engine overloaded","type":"server_error"}}`,
		"refusal":      `{"id":"c1","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":"I can't help with that."},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}`,
		"filtered":     `{"id":"c2","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":""},"finish_reason":"content_filter"}],"usage":{"prompt_tokens":3,"completion_tokens":0,"total_tokens":3}}`,
		"large":        `{"id":"c3","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"` + strings.Repeat("x", 3000) + `"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":600,"total_tokens":603}}`,
		"good":         `{"id":"c4","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"fine","refusal":null},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`,
	}
	up := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		kind := string(ctx.Request.Header.Peek("X-Answer"))
		mu.Lock()
		calls[kind]++
		mu.Unlock()
		ctx.Response.Header.SetContentType("application/json")
		if kind == "status" {
			ctx.SetStatusCode(500)
			ctx.SetBodyString(`{"error":{"message":"boom","type":"server_error"}}`)
			return
		}
		ctx.SetBodyString(answers[kind])
	})
	g := startGateway(t, cacheGatewayConfig(up, "{ttl: 1h, max_entry_bytes: 2KiB}", ""))
	body := `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
	for _, kind := range []string{"status", "error-object", "refusal", "filtered", "large", "good"} {
		for i := range 2 {
			resp, b := contractPost(t, g, "/v1/chat/completions", body, map[string]string{"X-Answer": kind})
			want := "miss"
			if kind == "good" && i == 1 {
				want = "hit"
			}
			if got := resp.Header.Get("X-Tollgate-Cache"); got != want {
				t.Errorf("%s, call %d: %d %q, want %q: %.100s", kind, i, resp.StatusCode, got, want, b)
			}
		}
		mu.Lock()
		n := calls[kind]
		mu.Unlock()
		want := 2
		if kind == "good" {
			want = 1
		}
		if n != want {
			t.Errorf("%s: %d upstream calls, want %d", kind, n, want)
		}
	}
}

// TestCacheKeys: each key has its own entries; with shared: true every key allowed on
// the endpoint is answered from the others'.
func TestCacheKeys(t *testing.T) {
	t.Parallel()
	keys := `auth:
  keys:
    - {name: team-a, key: sk-team-a-0001}
    - {name: team-b, key: sk-team-b-0002}
`
	for _, tc := range []struct {
		name, cache string
		wantB       string
	}{
		{"own entries", "{ttl: 1h}", "miss"},
		{"shared", "{ttl: 1h, shared: true}", "hit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			mock, addr := startMock(t, mockllm.Options{MaxTokens: 4})
			g := startGateway(t, cacheGatewayConfig(addr, tc.cache, keys))
			a, b := g.client(option.WithAPIKey("sk-team-a-0001")), g.client(option.WithAPIKey("sk-team-b-0002"))
			if _, r := sdkChat(t, a, "chat", "same"); r.Header.Get("X-Tollgate-Cache") != "miss" {
				t.Errorf("team-a first: %q", r.Header.Get("X-Tollgate-Cache"))
			}
			if _, r := sdkChat(t, b, "chat", "same"); r.Header.Get("X-Tollgate-Cache") != tc.wantB {
				t.Errorf("team-b after team-a: %q, want %s", r.Header.Get("X-Tollgate-Cache"), tc.wantB)
			}
			if _, r := sdkChat(t, a, "chat", "same"); r.Header.Get("X-Tollgate-Cache") != "hit" {
				t.Errorf("team-a again: %q, want hit", r.Header.Get("X-Tollgate-Cache"))
			}
			want := int64(1)
			if tc.wantB == "miss" {
				want = 2
			}
			if n := upstreamCalls(mock, "/v1/chat/completions"); n != want {
				t.Errorf("upstream calls %d, want %d", n, want)
			}
		})
	}
}

// TestCacheTTL: an entry is served until its ttl has passed, never after; Age counts
// its seconds.
func TestCacheTTL(t *testing.T) {
	t.Parallel()
	mock, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	g := startGateway(t, cacheGatewayConfig(addr, "{ttl: 10m}", ""))
	var mu sync.Mutex
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	g.rt.Load().endpoints["chat"].cache.setClock(func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	c := g.client()
	sdkChat(t, c, "chat", "ttl")
	advance(9*time.Minute + 59*time.Second)
	_, r := sdkChat(t, c, "chat", "ttl")
	if r.Header.Get("X-Tollgate-Cache") != "hit" || r.Header.Get("Age") != "599" {
		t.Errorf("before the ttl: %q, Age %q; want hit, 599", r.Header.Get("X-Tollgate-Cache"), r.Header.Get("Age"))
	}
	advance(time.Second)
	if _, r := sdkChat(t, c, "chat", "ttl"); r.Header.Get("X-Tollgate-Cache") != "miss" {
		t.Errorf("at the ttl: %q, want miss", r.Header.Get("X-Tollgate-Cache"))
	}
	if n := upstreamCalls(mock, "/v1/chat/completions"); n != 2 {
		t.Errorf("upstream calls %d, want 2", n)
	}
	fams := contractScrape(t, g)
	if v, _ := promtest.Sum(fams, "tollgate_cache_evictions_total", func(l map[string]string) bool {
		return l["endpoint"] == "chat" && l["reason"] == "expired"
	}); v != 1 {
		t.Errorf("expired evictions %v, want 1", v)
	}
}

// TestCacheLRUByBytes: entries past max_bytes push out the least recently used; one
// read since stays.
func TestCacheLRUByBytes(t *testing.T) {
	t.Parallel()
	mock, addr := startMock(t, mockllm.Options{MaxTokens: 4, Seed: 2})
	g := startGateway(t, cacheGatewayConfig(addr, "{ttl: 1h, max_bytes: 4KiB, max_entry_bytes: 2KiB}", ""))
	cache := g.rt.Load().endpoints["chat"].cache
	c := g.client()
	sdkChat(t, c, "chat", "first")
	bytesOne, _ := cache.held()
	perEntry := bytesOne
	if perEntry < cacheEntryOverhead || perEntry > 2<<10 {
		t.Fatalf("one entry holds %d bytes", perEntry)
	}
	// Fill to just under 4 KiB, then read the first so that it is the most recent.
	n := int(4<<10/perEntry) - 1
	for i := range n {
		sdkChat(t, c, "chat", "fill "+string(rune('a'+i)))
	}
	if _, r := sdkChat(t, c, "chat", "first"); r.Header.Get("X-Tollgate-Cache") != "hit" {
		t.Fatalf("first, before the cache is full: %q", r.Header.Get("X-Tollgate-Cache"))
	}
	sdkChat(t, c, "chat", "one more")
	sdkChat(t, c, "chat", "and another")
	if b, _ := cache.held(); b > 4<<10 {
		t.Errorf("cache holds %d bytes, over max_bytes", b)
	}
	if _, r := sdkChat(t, c, "chat", "first"); r.Header.Get("X-Tollgate-Cache") != "hit" {
		t.Errorf("the most recently read entry was evicted")
	}
	if _, r := sdkChat(t, c, "chat", "fill a"); r.Header.Get("X-Tollgate-Cache") != "miss" {
		t.Errorf("the least recently used entry is still there")
	}
	fams := contractScrape(t, g)
	evicted, _ := promtest.Sum(fams, "tollgate_cache_evictions_total", func(l map[string]string) bool {
		return l["endpoint"] == "chat" && l["reason"] == "size"
	})
	if evicted < 1 {
		t.Errorf("size evictions %v, want some", evicted)
	}
	gb, _ := promtest.Sum(fams, "tollgate_cache_bytes", func(l map[string]string) bool { return l["endpoint"] == "chat" })
	ge, _ := promtest.Sum(fams, "tollgate_cache_entries", func(l map[string]string) bool { return l["endpoint"] == "chat" })
	if hb, he := cache.held(); gb != float64(hb) || ge != float64(he) {
		t.Errorf("gauges bytes %v entries %v, cache holds %d in %d", gb, ge, hb, he)
	}
	// first, the fills, one more, and another, fill a again: the hits made none.
	if calls := upstreamCalls(mock, "/v1/chat/completions"); calls != int64(n+4) {
		t.Errorf("upstream calls %d, want %d", calls, n+4)
	}
}

// TestCacheLimits: a hit is a request to the request limits, but charges no tokens:
// its token estimate is refunded when it is answered.
func TestCacheLimits(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	cfg := strings.Replace(cacheGatewayConfig(addr, "{ttl: 1h}", ""), "cache: {ttl: 1h}}\n  - {name: embed",
		"cache: {ttl: 1h}, limits: [{per: endpoint, requests: 5, window: day}, {per: endpoint, tokens: 100000, window: day}]}\n  - {name: embed", 1)
	g := startGateway(t, cfg)
	body := `{"model":"chat","messages":[{"role":"user","content":"hi"}],"max_tokens":1000}`
	var remaining []string
	for i := range 5 {
		resp, b := contractPost(t, g, "/v1/chat/completions", body, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, b)
		}
		remaining = append(remaining, resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
	}
	// Each answer's header counts its own estimate (about 1000) taken; a hit charged
	// its estimate for good would lower the next one's by as much. The bucket refills
	// about a token a second meanwhile.
	for i := 2; i < len(remaining); i++ {
		prev, err1 := strconv.Atoi(remaining[i-1])
		cur, err2 := strconv.Atoi(remaining[i])
		if err1 != nil || err2 != nil || cur < prev-5 {
			t.Errorf("remaining tokens after each request %v: the hits charged tokens", remaining)
			break
		}
	}
	resp, _ := contractPost(t, g, "/v1/chat/completions", body, nil)
	if resp.StatusCode != 429 || resp.Header.Get("X-Tollgate-Cache") != "bypass" {
		t.Errorf("sixth request: %d %q, want 429 bypass (a hit counts as a request)", resp.StatusCode, resp.Header.Get("X-Tollgate-Cache"))
	}
}

// TestCacheObservability: the cache's metrics, the requests, tokens and cost of hits,
// the access log's cache field, on a scrape parsed as Prometheus does.
func TestCacheObservability(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	g := startGateway(t, cacheGatewayConfig(addr, "{ttl: 1h}", "logging: {level: info, format: json}\n"))
	c := g.client()
	sdkChat(t, c, "chat", "observe")
	before := contractScrape(t, g)
	for range 3 {
		sdkChat(t, c, "chat", "observe")
	}
	sdkChat(t, c, "chat", "observe", option.WithHeader("Cache-Control", "no-store"))
	sdkChat(t, c, "plain", "observe")
	fams := contractScrape(t, g)
	for result, want := range map[string]float64{"hit": 3, "miss": 1, "bypass": 1} {
		if v, ok := promtest.Sum(fams, "tollgate_cache_requests_total", func(l map[string]string) bool {
			return l["endpoint"] == "chat" && l["result"] == result
		}); !ok || v != want {
			t.Errorf("tollgate_cache_requests_total{endpoint=chat,result=%s} %v, want %v", result, v, want)
		}
	}
	if v, _ := promtest.Sum(fams, "tollgate_cache_requests_total", func(l map[string]string) bool { return l["endpoint"] == "plain" }); v != 0 {
		t.Errorf("endpoint without cache counted %v cache requests", v)
	}
	if v, _ := promtest.Sum(fams, "tollgate_cache_entries", func(l map[string]string) bool { return l["endpoint"] == "chat" }); v != 1 {
		t.Errorf("tollgate_cache_entries %v, want 1", v)
	}
	if v, _ := promtest.Sum(fams, "tollgate_cache_bytes", func(l map[string]string) bool { return l["endpoint"] == "chat" }); v < float64(cacheEntryOverhead) {
		t.Errorf("tollgate_cache_bytes %v", v)
	}
	hits, _ := promtest.Sum(fams, "tollgate_requests_total", func(l map[string]string) bool {
		return l["endpoint"] == "chat" && l["backend"] == "none" && l["code"] == "200"
	})
	if hits != 3 {
		t.Errorf("tollgate_requests_total{endpoint=chat,backend=none,code=200} %v, want the 3 hits", hits)
	}
	for _, name := range []string{"tollgate_tokens_total", "tollgate_cost_usd_total"} {
		match := func(l map[string]string) bool { return l["endpoint"] == "chat" }
		was, _ := promtest.Sum(before, name, match)
		now, _ := promtest.Sum(fams, name, match)
		// Only the no-store request went upstream after the first scrape.
		if was == 0 || now != 2*was {
			t.Errorf("%s: %v after the miss, %v after 3 hits and one bypass; want twice (the bypass's alone)", name, was, now)
		}
	}
	var got []string
	deadline := time.Now().Add(3 * time.Second)
	for len(got) < 6 && time.Now().Before(deadline) {
		got = got[:0]
		for _, l := range contractAccessLines(t, g) {
			v, ok := l["cache"].(string)
			if !ok {
				t.Fatalf("access line without cache: %v", l)
			}
			got = append(got, l["endpoint"].(string)+":"+v)
			if v == "hit" && (l["input_tokens"].(float64) != 0 || l["cost_usd"].(float64) != 0 || l["attempts"].(float64) != 0 || l["backend"] != "up") {
				t.Errorf("hit's access line: %v", l)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	want := "chat:miss chat:hit chat:hit chat:hit chat:bypass plain:"
	if strings.Join(got, " ") != want {
		t.Errorf("access lines' cache %q, want %q", strings.Join(got, " "), want)
	}
}

// TestCacheReload: a reload that keeps an endpoint's cache settings, routes and models
// keeps its entries; one that changes a model starts it empty; one that removes the
// cache removes its series.
func TestCacheReload(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	_, addr2 := startMock(t, mockllm.Options{MaxTokens: 4, Model: "up-model-v2"})
	cfg := cacheGatewayConfig(addr, "{ttl: 1h}", "")
	v2 := strings.Replace(strings.Replace(cfg, "model: up-model", "model: up-model-v2", 1), addr, addr2, 1)
	g := startGateway(t, cfg)
	c := g.client()
	reload := func(yaml string) {
		t.Helper()
		if err := os.WriteFile(g.path, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := g.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	state := func(model string) string {
		t.Helper()
		_, r := sdkChat(t, c, model, "reload")
		return r.Header.Get("X-Tollgate-Cache")
	}
	state("chat")
	// Weights, retries, limits and other endpoints may change under the cache.
	reload(strings.Replace(cfg, "routes: [{backend: up}], cache: {ttl: 1h}}\n  - {name: embed",
		"routes: [{backend: up}], retries: 1, limits: [{per: endpoint, requests: 100, window: minute}], cache: {ttl: 1h}}\n  - {name: embed", 1) +
		"  - {name: extra, type: chat, routes: [{backend: up}]}\n")
	if got := state("chat"); got != "hit" {
		t.Errorf("after a reload that keeps the cache: %q, want hit", got)
	}
	// The backend moves to other addresses (a rollout): kept.
	moved := strings.Replace(cfg, addr, "localhost:"+addr[strings.LastIndexByte(addr, ':')+1:], 1)
	reload(moved)
	if got := state("chat"); got != "hit" {
		t.Errorf("after the backend's address changed: %q, want hit", got)
	}
	// drop_params changes what the backend is sent, and so its answers: emptied.
	reload(strings.Replace(moved, "model: up-model,", "model: up-model, drop_params: [seed],", 1))
	if got := state("chat"); got != "miss" {
		t.Errorf("after drop_params changed: %q, want miss", got)
	}
	// The backend's model changes: its answers would too.
	reload(v2)
	if got := state("chat"); got != "miss" {
		t.Errorf("after the model changed: %q, want miss", got)
	}
	// The cache's settings change.
	reload(strings.ReplaceAll(v2, "{ttl: 1h}", "{ttl: 2h}"))
	if got := state("chat"); got != "miss" {
		t.Errorf("after the ttl changed: %q, want miss", got)
	}
	if got := state("chat"); got != "hit" {
		t.Errorf("then: %q, want hit", got)
	}
	// The cache goes: its header with it, and its series once their last counts
	// could be scraped (removedKeep later, as a removed route's; metrics tests that).
	reload(strings.Replace(cfg, "{name: chat, type: chat, routes: [{backend: up}], cache: {ttl: 1h}}", "{name: chat, type: chat, routes: [{backend: up}]}", 1))
	if got := state("chat"); got != "" {
		t.Errorf("without a cache: %q", got)
	}
	fams := contractScrape(t, g)
	for _, name := range []string{"tollgate_cache_requests_total", "tollgate_cache_bytes", "tollgate_cache_entries", "tollgate_cache_evictions_total"} {
		if n := endpointSeries(fams, name, "chat"); n == 0 {
			t.Errorf("%s{endpoint=chat} gone at once, its last counts unscraped", name)
		}
		if n := endpointSeries(fams, name, "embed"); n == 0 {
			t.Errorf("%s{endpoint=embed} missing", name)
		}
	}
}

// endpointSeries counts the series of name with the endpoint label endpoint.
func endpointSeries(fams map[string]*dto.MetricFamily, name, endpoint string) int {
	n := 0
	for _, m := range fams[name].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "endpoint" && l.GetValue() == endpoint {
				n++
			}
		}
	}
	return n
}

// TestCacheAdminPurge: DELETE /admin/endpoints/{name}/cache empties the cache behind
// the admin token and says how many answers went.
func TestCacheAdminPurge(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	cfg := strings.Replace(cacheGatewayConfig(addr, "{ttl: 1h}", ""), "shutdown_grace: 5s}", "shutdown_grace: 5s, admin_token: adm-secret-token}", 1)
	g := startGateway(t, cfg)
	c := g.client()
	sdkChat(t, c, "chat", "one")
	sdkChat(t, c, "chat", "two")
	admin := func(method, path, token string) (int, string, http.Header) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+g.AdminAddr()+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	if code, b, _ := admin("DELETE", "/admin/endpoints/chat/cache", ""); code != 401 || !strings.Contains(b, "invalid_admin_token") {
		t.Errorf("without the token: %d %s", code, b)
	}
	if code, b, _ := admin("DELETE", "/admin/endpoints/chat/cache", "wrong"); code != 401 {
		t.Errorf("wrong token: %d %s", code, b)
	}
	if _, r := sdkChat(t, c, "chat", "one"); r.Header.Get("X-Tollgate-Cache") != "hit" {
		t.Fatalf("a refused purge emptied the cache")
	}
	if code, b, h := admin("GET", "/admin/endpoints/chat/cache", "adm-secret-token"); code != 405 || h.Get("Allow") != "DELETE" {
		t.Errorf("GET: %d %s Allow %q", code, b, h.Get("Allow"))
	}
	code, b, _ := admin("DELETE", "/admin/endpoints/chat/cache", "adm-secret-token")
	var got struct {
		Endpoint string `json:"endpoint"`
		Dropped  int    `json:"dropped"`
	}
	if code != 200 || json.Unmarshal([]byte(b), &got) != nil || got.Endpoint != "chat" || got.Dropped != 2 {
		t.Errorf("purge: %d %s, want 200 with 2 dropped", code, b)
	}
	if _, r := sdkChat(t, c, "chat", "one"); r.Header.Get("X-Tollgate-Cache") != "miss" {
		t.Errorf("after the purge: %q, want miss", r.Header.Get("X-Tollgate-Cache"))
	}
	if code, b, _ := admin("DELETE", "/admin/endpoints/plain/cache", "adm-secret-token"); code != 409 || !strings.Contains(b, "no_cache") {
		t.Errorf("endpoint without cache: %d %s", code, b)
	}
	if code, b, _ := admin("DELETE", "/admin/endpoints/nope/cache", "adm-secret-token"); code != 404 || !strings.Contains(b, "endpoint_not_found") {
		t.Errorf("unknown endpoint: %d %s", code, b)
	}
	if strings.Contains(g.logs.String(), "adm-secret-token") {
		t.Errorf("the admin token is in the log")
	}
}

// TestCacheConcurrent: identical requests at once (run with -race): the misses each go
// upstream (no request waits for another's answer), every hit is the answer of one of
// them, and once one is kept every request after is a hit with that answer.
func TestCacheConcurrent(t *testing.T) {
	t.Parallel()
	mock, addr := startMock(t, mockllm.Options{MaxTokens: 4, Seed: 9})
	g := startGateway(t, cacheGatewayConfig(addr, "{ttl: 1h}", ""))
	body := `{"model":"embed","input":["concurrent"]}`
	const n = 16
	wave := func() (answers, results []string) {
		answers, results = make([]string, n), make([]string, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				resp, b := contractPost(t, g, "/v1/embeddings", body, nil)
				if resp.StatusCode != 200 {
					t.Errorf("status %d: %s", resp.StatusCode, b)
				}
				answers[i], results[i] = b, resp.Header.Get("X-Tollgate-Cache")
			})
		}
		wg.Wait()
		return answers, results
	}
	answers, results := wave()
	upstream := map[string]bool{}
	misses := 0
	for i := range n {
		if results[i] == "miss" {
			upstream[answers[i]] = true
			misses++
		}
	}
	for i := range n {
		if results[i] == "hit" && !upstream[answers[i]] {
			t.Errorf("hit %d is no answer the upstream gave", i)
		}
	}
	if calls := upstreamCalls(mock, "/v1/embeddings"); calls != int64(misses) {
		t.Errorf("%d misses and %d upstream calls", misses, calls)
	}
	again, results := wave()
	for i := range n {
		if results[i] != "hit" || again[i] != again[0] || !upstream[again[i]] {
			t.Errorf("second wave, request %d: %q, or another answer", i, results[i])
		}
	}
	if _, entries := g.rt.Load().endpoints["embed"].cache.held(); entries != 1 {
		t.Errorf("%d entries, want 1", entries)
	}
}

// A key whose spend budget and token limit are spent is still answered from the cache
// (a hit spends neither), while its requests limit counts the hit: the lookup comes
// before the limits, and a hit is charged one request and nothing else.
func TestCacheHitPastSpentBudget(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 8})
	cfg := strings.Replace(cacheGatewayConfig(addr, "{ttl: 1h}", ""), "cache: {ttl: 1h}}\n  - {name: embed",
		"cache: {ttl: 1h}, limits: [{per: endpoint, usd: 0.00002, window: month}, {per: endpoint, tokens: 30, window: month}, {per: endpoint, requests: 4, window: day}]}\n  - {name: embed", 1)
	g := startGateway(t, cfg)
	body := `{"model":"chat","messages":[{"role":"user","content":"hi"}],"max_tokens":8}`
	resp, b := contractPost(t, g, "/v1/chat/completions", body, nil)
	if resp.StatusCode != 200 || resp.Header.Get("X-Tollgate-Cache") != "miss" {
		t.Fatalf("first: %d %q %s", resp.StatusCode, resp.Header.Get("X-Tollgate-Cache"), b)
	}
	// Another body spends what is left of the budget and the tokens (refused once
	// they are gone).
	for i := 0; ; i++ {
		other := strings.Replace(body, `"hi"`, `"other `+strconv.Itoa(i)+`"`, 1)
		resp, _ := contractPost(t, g, "/v1/chat/completions", other, nil)
		if resp.StatusCode == 429 {
			if !strings.Contains(resp.Header.Get("X-Tollgate-Cache"), "bypass") {
				t.Fatalf("refused miss: cache %q, want bypass", resp.Header.Get("X-Tollgate-Cache"))
			}
			break
		}
		if i == 2 {
			t.Fatal("the budget and tokens were never spent")
		}
	}
	// The first body again: a hit, served though the budget is spent.
	resp, b = contractPost(t, g, "/v1/chat/completions", body, nil)
	if resp.StatusCode != 200 || resp.Header.Get("X-Tollgate-Cache") != "hit" {
		t.Fatalf("a hit past the spent budget: %d %q %s", resp.StatusCode, resp.Header.Get("X-Tollgate-Cache"), b)
	}
	// Until the requests limit, which counts hits, is spent too.
	for i := 0; ; i++ {
		resp, _ = contractPost(t, g, "/v1/chat/completions", body, nil)
		if resp.StatusCode == 429 {
			if resp.Header.Get("X-Tollgate-Cache") != "bypass" || !strings.Contains(resp.Header.Get("Retry-After"), "") {
				t.Fatalf("a hit refused by the requests limit: cache %q", resp.Header.Get("X-Tollgate-Cache"))
			}
			break
		}
		if i == 4 {
			t.Fatal("hits never counted against the requests limit")
		}
	}
}
