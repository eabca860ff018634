//go:build !race

package gateway

import (
	"testing"

	"github.com/tollgate/tollgate/internal/redistest"
)

// TestRedisCacheHitAllocs: a hit from Redis allocates what go-redis needs (its
// command, the reply's string, 3 for its health check of the pooled connection) and
// the entry over the reply's bytes, no more (BenchmarkProxyChatRedisCacheHit); the
// lookup's deadline and arguments are pooled.
func TestRedisCacheHitAllocs(t *testing.T) {
	rds := redistest.Start(t)
	s := newTestServer(t, redisCacheBenchConfig(startStaticCacheUpstream(t), rds.URL()))
	ctx := newProxyCtx(benchChatBody)
	warmRedisCache(t, s, ctx)
	const budget = 6
	if n := allocsPerRun(200, func() { proxyOnce(s, ctx) }); n > budget {
		t.Fatalf("%.1f allocations per hit, budget %d", n, budget)
	}
}
