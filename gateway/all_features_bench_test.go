package gateway

import (
	"strings"
	"testing"
)

// allFeaturesConfig turns on budgets, key metrics, an alias, the answer cache, a fallback and the access log for one request path: a key
// with its own spend budget and concurrency cap (so its chargeback series count), and
// an endpoint with an alias, a cache, a spend budget, a fallback to a dearer backend,
// and the access log.
func allFeaturesConfig(upstream string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
auth:
  keys:
    - {name: team-a, key: sk-team-a, limits: [{per: api_key, usd: 1000000, window: month}, {per: api_key, concurrency: 1000000}]}
backends:
  up: {provider: openai, base_url: "http://` + upstream + `/v1", model: up-model, pricing: {input_per_million: 0.15, output_per_million: 0.6}}
  spare: {provider: openai, base_url: "http://` + upstream + `/v1", model: up-model, pricing: {input_per_million: 2.5, output_per_million: 10}}
endpoints:
  - name: chat
    type: chat
    aliases: [gpt-4o]
    routes: [{backend: up}]
    fallbacks: [spare]
    cache: {ttl: 1h}
    limits:
      - {per: endpoint, requests: 1000000000, window: second}
      - {per: endpoint, usd: 1000000, window: second}
logging: {level: info, format: json}
`
}

// BenchmarkProxyAllFeaturesMiss is a chat request from a key with a usd budget
// and a concurrency cap, its chargeback series counted, on an endpoint with a budget
// of its own and a cache that the request misses (and fills), with the access log on.
func BenchmarkProxyAllFeaturesMiss(b *testing.B) {
	s := newTestServer(b, allFeaturesConfig(startStaticCacheUpstream(b)))
	cache := s.rt.Load().endpoints["chat"].cache
	ctx := newProxyCtx(benchChatBody)
	ctx.Request.Header.Set("Authorization", "Bearer sk-team-a")
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 || string(ctx.Response.Header.Peek("X-Tollgate-Cache")) != "miss" ||
		len(ctx.Response.Header.Peek("X-Ratelimit-Remaining-Usd")) == 0 {
		b.Fatalf("status %d, cache %q, usd %q: %s", ctx.Response.StatusCode(), ctx.Response.Header.Peek("X-Tollgate-Cache"),
			ctx.Response.Header.Peek("X-Ratelimit-Remaining-Usd"), ctx.Response.Body())
	}
	b.ReportAllocs()
	for b.Loop() {
		cache.purge()
		proxyOnce(s, ctx)
	}
}

// BenchmarkProxyAllFeaturesHit is the same request answered from the cache: the
// limits taken and the estimates refunded, no upstream.
func BenchmarkProxyAllFeaturesHit(b *testing.B) {
	s := newTestServer(b, allFeaturesConfig(startStaticCacheUpstream(b)))
	ctx := newProxyCtx(benchChatBody)
	ctx.Request.Header.Set("Authorization", "Bearer sk-team-a")
	warmCache(b, s, ctx)
	b.ReportAllocs()
	for b.Loop() {
		proxyOnce(s, ctx)
	}
}

// BenchmarkProxyAllFeaturesBudgetRefused is the same request refused by the key's spent
// budget: the 429 with its retry-after, x-ratelimit-*-usd headers and message.
func BenchmarkProxyAllFeaturesBudgetRefused(b *testing.B) {
	s := newTestServer(b, strings.Replace(allFeaturesConfig(startStaticCacheUpstream(b)),
		"{per: api_key, usd: 1000000, window: month}", "{per: api_key, usd: 0.000001, window: month}", 1))
	ctx := newProxyCtx(benchChatBody)
	ctx.Request.Header.Set("Authorization", "Bearer sk-team-a")
	// Not answered from the cache, which a spent budget does not refuse.
	ctx.Request.Header.Set("Cache-Control", "no-store")
	proxyOnce(s, ctx)
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 429 {
		b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	b.ReportAllocs()
	for b.Loop() {
		proxyOnce(s, ctx)
	}
}
