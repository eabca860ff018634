//go:build !race

package gateway

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// TestCacheHitAllocs: a hit, chat or embeddings, allocates nothing once warm: the
// stored answer is served as it is, not copied.
func TestCacheHitAllocs(t *testing.T) {
	s := newTestServer(t, cacheBenchConfig(startStaticCacheUpstream(t)))
	for _, tc := range []struct {
		name string
		ctx  *fasthttp.RequestCtx
	}{
		{"chat", newProxyCtx(benchChatBody)},
		{"embeddings", newEmbedCtx(benchEmbedBody)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			warmCache(t, s, tc.ctx)
			if n := allocsPerRun(200, func() { proxyOnce(s, tc.ctx) }); n > 0 {
				t.Fatalf("%.1f allocations per hit, want 0", n)
			}
		})
	}
}

// TestCacheMissAllocs: a miss that stores its answer costs the request path's budget
// (TestProxyAllocs) and the entry: its struct and the one copy of body and answer.
func TestCacheMissAllocs(t *testing.T) {
	s := newTestServer(t, cacheBenchConfig(startStaticCacheUpstream(t)))
	cache := s.rt.Load().endpoints["chat"].cache
	ctx := newProxyCtx(benchChatBody)
	proxyOnce(s, ctx)
	const budget = 5 + 2
	if n := allocsPerRun(200, func() { cache.purge(); proxyOnce(s, ctx) }); n > budget {
		t.Fatalf("%.1f allocations per miss, budget %d", n, budget)
	}
}

// TestCacheBypassAllocs: a request that skips the cache (Cache-Control: no-store)
// costs what one on an endpoint without a cache does.
func TestCacheBypassAllocs(t *testing.T) {
	s := newTestServer(t, cacheBenchConfig(startStaticCacheUpstream(t)))
	ctx := newProxyCtx(benchChatBody)
	ctx.Request.Header.Set("Cache-Control", "no-store")
	proxyOnce(s, ctx)
	if string(ctx.Response.Header.Peek("X-Tollgate-Cache")) != "bypass" {
		t.Fatalf("cache %q", ctx.Response.Header.Peek("X-Tollgate-Cache"))
	}
	const budget = 5
	if n := allocsPerRun(200, func() { proxyOnce(s, ctx) }); n > budget {
		t.Fatalf("%.1f allocations per bypass, budget %d", n, budget)
	}
}
