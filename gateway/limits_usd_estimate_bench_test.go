package gateway

import (
	"bytes"
	"testing"
	"time"
)

// usdBoundsBenchConfig is usdBenchConfig with its fallback an anthropic backend priced
// with cache writes and web searches (never reached: the route answers), so that a
// spend budget's estimate reads the body for a cache mark and a search bound.
func usdBoundsBenchConfig(upstream string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://` + upstream + `/v1", model: up-model, pricing: {input_per_million: 0.15, output_per_million: 0.6}}
  spare: {provider: anthropic, base_url: "http://` + upstream + `/v1", model: claude-sonnet-4-5, api_key: k,
          pricing: {input_per_million: 3, output_per_million: 15, cache_write_per_million: 3.75, cache_write_1h_per_million: 6, web_search_per_thousand: 10}}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: up}]
    fallbacks: [spare]
    limits:
      - {per: ip, requests: 1000000000, window: second}
      - {per: endpoint, tokens: 1000000000000, window: minute}
      - {per: endpoint, usd: 1000000, window: second}
logging: {level: error, access_log: false}
`
}

// benchBoundsBody is benchChatBody marking its system message for the prompt cache and
// asking for web search; benchUnmarkedBody asks for neither, so the scans read it whole.
var (
	benchBoundsBody = bytes.Replace(bytes.Replace(benchChatBody,
		[]byte(`"You are a helpful assistant."}`), []byte(`"You are a helpful assistant.","cache_control":{"type":"ephemeral"}}`), 1),
		[]byte(`"max_tokens":64`), []byte(`"max_tokens":64,"web_search_options":{"search_context_size":"medium"}`), 1)
	benchUnmarkedBody = benchChatBody
)

// BenchmarkProxyChatUSDLimitedBounds is BenchmarkProxyChatUSDLimited where the plan
// may reach a backend with cache-write and web-search prices: the estimate reads the
// body for a cache mark and a search bound, on a body with both and one with neither.
func BenchmarkProxyChatUSDLimitedBounds(b *testing.B) {
	for _, bc := range []struct {
		name string
		body []byte
	}{{"marked", benchBoundsBody}, {"unmarked", benchUnmarkedBody}} {
		b.Run(bc.name, func(b *testing.B) {
			s := newTestServer(b, usdBoundsBenchConfig(startStaticUpstream(b)))
			ctx := newProxyCtx(bc.body)
			proxyOnce(s, ctx)
			if ctx.Response.StatusCode() != 200 || len(ctx.Response.Header.Peek("X-Ratelimit-Remaining-Usd")) == 0 {
				b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
			b.ReportAllocs()
			for b.Loop() {
				proxyOnce(s, ctx)
			}
		})
	}
}

// BenchmarkUSDCostEstimateBounds is the cost estimate alone over a route and an
// anthropic fallback with cache-write and search prices, for a body marking the cache
// and asking for search, and for one doing neither.
func BenchmarkUSDCostEstimateBounds(b *testing.B) {
	s := newTestServer(b, usdBoundsBenchConfig(startStaticUpstream(b)))
	rt := s.rt.Load()
	for _, bc := range []struct {
		name string
		body []byte
	}{{"marked", benchBoundsBody}, {"unmarked", benchUnmarkedBody}} {
		b.Run(bc.name, func(b *testing.B) {
			r := &request{rt: rt, body: bc.body}
			rt.endpoints["chat"].routing.Plan(nil, time.Now(), &r.plan)
			var sink int64
			b.ReportAllocs()
			for b.Loop() {
				sink += r.costEstimate(20, 64)
			}
			if sink == 0 {
				b.Fatal("no estimate")
			}
		})
	}
}
