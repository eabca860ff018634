package gateway

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// redisAllConfig is a production-like config turning today's features on together: a
// chat endpoint with a Redis answer cache and a context fallback to a dearer Anthropic
// backend, limits in the same Redis (onError: on_redis_error), a per-ip limit behind a
// Forwarded proxy and a key budget, a key that expired an hour ago.
func redisAllConfig(smallAddr, claudeAddr, redisURL, onError, timeout string) string {
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 1MiB, shutdown_grace: 5s,
  trusted_proxies: ["127.0.0.1/32"], forwarded_header: forwarded}
auth:
  keys:
    - {name: team-a, key: sk-team-a, limits: [{per: api_key, usd: 1, window: day}]}
    - {name: gone, key: sk-gone, expires_at: "` + past + `"}
backends:
  small: {provider: openai, base_url: "http://` + smallAddr + `/v1", model: llama-8k, timeout: 20s, pricing: {input_per_million: 0.1, output_per_million: 0.2}}
  claude:
    provider: anthropic
    base_url: "http://` + claudeAddr + `/v1"
    model: ` + pcClaudeModel + `
    api_key: ` + pcClaudeKey + `
    timeout: 20s
    pricing: {input_per_million: 3, output_per_million: 15, cache_write_per_million: 3.75, web_search_per_thousand: 10}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: small}]
    context_fallbacks: [claude]
    cache: {ttl: 1h, store: redis}
    limits: [{per: ip, requests: 100, window: minute}]
limiter: {redis: {url: "` + redisURL + `"}, timeout: ` + timeout + `, on_redis_error: ` + onError + `}
logging: {level: info, format: json}
`
}

// startRedisAll serves redisAllConfig in front of a small-window vLLM-like mockllm and a
// mockllm --api anthropic, with a fresh redis-server.
func startRedisAll(t *testing.T, onError, timeout string) (*gw, *redistest.Server) {
	t.Helper()
	rds := redistest.Start(t)
	_, small := startMock(t, mockllm.Options{Model: "llama-8k", MaxModelLen: ctxSmallWindow, MaxTokens: 8, Seed: 1})
	_, an := startMock(t, mockllm.Options{Model: pcClaudeModel, API: mockllm.APIAnthropic, APIKey: pcClaudeKey, MaxTokens: 12, Seed: 11})
	return startGateway(t, redisAllConfig(small, an, rds.URL(), onError, timeout)), rds
}

// TestRedisCacheErrorWhenLimitsRefuse: the Redis cache and the limits share one Redis
// with on_redis_error: deny; Redis dies, each lookup fails and the limiter answers 503:
// the failed lookups are counted result="error" (metric, access log), not bypass.
func TestRedisCacheErrorWhenLimitsRefuse(t *testing.T) {
	t.Parallel()
	g, rds := startRedisAll(t, "deny", "200ms")
	body := `{"model":"chat","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`
	hdr := map[string]string{"Authorization": "Bearer sk-team-a", "Forwarded": "for=203.0.113.7", "X-Request-Id": "deny-up"}
	if resp, b := contractPost(t, g, "/v1/chat/completions", body, hdr); resp.StatusCode != 200 {
		t.Fatalf("with Redis up: %d %s", resp.StatusCode, b)
	}
	rds.Kill()
	hdr["X-Request-Id"] = "deny-down"
	resp, b := contractPost(t, g, "/v1/chat/completions", body, hdr)
	if resp.StatusCode != 503 || !strings.Contains(b, "ratelimit_unavailable") {
		t.Fatalf("with Redis down and deny: %d %s, want 503 ratelimit_unavailable", resp.StatusCode, b)
	}
	line := accessLine(t, g, "deny-down")
	errs := cacheCount(t, g, "tollgate_cache_requests_total", "chat", "error")
	bypass := cacheCount(t, g, "tollgate_cache_requests_total", "chat", "bypass")
	if errs != 1 || line["cache"] != "error" {
		t.Errorf("a lookup that failed with Redis down: cache_requests_total{result=\"error\"} %v (bypass %v), access log cache %q, want error 1 and cache \"error\"",
			errs, bypass, line["cache"])
	}
}

// TestUSDEstimateDropParamsAnyCase: drop_params match in any case, and so does the
// estimate: [Web_Search_Options] keeps every search from the Anthropic backend, and the
// budget is charged none for search_context_size high.
func TestUSDEstimateDropParamsAnyCase(t *testing.T) {
	t.Parallel()
	mock, an := startMock(t, mockllm.Options{Model: pcClaudeModel, API: mockllm.APIAnthropic, APIKey: pcClaudeKey, MaxTokens: 12, Seed: 11})
	g := startGateway(t, strings.Replace(estDropConfig(an), "drop_params: [web_search_options]", "drop_params: [Web_Search_Options]", 1))
	const budget = 150_000_000 // $0.15
	const maxTokens = 20
	var resp *http.Response
	c := g.client()
	_, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "nosearch", User: openai.String("drop-case"),
		Messages: userMsg("What is new in gateway routing?"), MaxTokens: openai.Int(maxTokens),
		WebSearchOptions: openai.ChatCompletionNewParamsWebSearchOptions{SearchContextSize: "high"}}, option.WithResponseInto(&resp))
	if err != nil {
		t.Fatal(err)
	}
	if sent := mock.Stats().LastBody; bytes.Contains(sent, []byte("web_search")) {
		t.Fatalf("precondition: drop_params left the web search in the upstream body: %s", sent)
	}
	in := int64(len(`[{"role":"user","content":"What is new in gateway routing?"}]`)/4 + 1)
	want := in*3_000 + maxTokens*15_000
	if got := budget - nanoOf(t, resp.Header, "X-Ratelimit-Remaining-Usd"); got != want {
		t.Errorf("admission estimate %d nano-dollars (%d searches' worth more), want %d: no search tool reaches the backend",
			got, (got-want)/10_000_000, want)
	}
}
