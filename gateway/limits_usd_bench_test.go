package gateway

import (
	"testing"
	"time"
)

// usdBenchConfig is limitedBenchConfig with a priced backend behind a fallback and a
// spend budget beside the requests and tokens limits, so that every request is
// estimated at the dearer price, charged and settled in the usd bucket.
func usdBenchConfig(upstream string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://` + upstream + `/v1", model: up-model, pricing: {input_per_million: 0.15, output_per_million: 0.6}}
  spare: {provider: openai, base_url: "http://` + upstream + `/v1", model: up-model, pricing: {input_per_million: 2.5, output_per_million: 10}}
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

// BenchmarkProxyChatUSDLimited is BenchmarkProxyChatLimited with a spend budget: the
// cost estimate, the usd bucket's charge and its settlement at the actual cost.
func BenchmarkProxyChatUSDLimited(b *testing.B) {
	s := newTestServer(b, usdBenchConfig(startStaticUpstream(b)))
	ctx := newProxyCtx(benchChatBody)
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 || len(ctx.Response.Header.Peek("X-Ratelimit-Remaining-Usd")) == 0 {
		b.Fatalf("status %d, x-ratelimit-remaining-usd %q", ctx.Response.StatusCode(), ctx.Response.Header.Peek("X-Ratelimit-Remaining-Usd"))
	}
	b.ReportAllocs()
	for b.Loop() {
		proxyOnce(s, ctx)
	}
}

// BenchmarkUSDCostEstimate is the cost estimate alone: the highest prices over the
// plan's backends (a route and a fallback) for a request's token estimate.
func BenchmarkUSDCostEstimate(b *testing.B) {
	s := newTestServer(b, usdBenchConfig(startStaticUpstream(b)))
	rt := s.rt.Load()
	r := &request{rt: rt}
	rt.endpoints["chat"].routing.Plan(nil, time.Now(), &r.plan)
	var sink int64
	b.ReportAllocs()
	for b.Loop() {
		sink += r.costEstimate(20, 64)
	}
	if sink == 0 {
		b.Fatal("no estimate")
	}
}
