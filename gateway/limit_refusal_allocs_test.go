//go:build !race

package gateway

import (
	"strings"
	"testing"
)

// A client hammering past its limit costs the gateway no garbage per refusal: the
// 429's message, its limit's name and the refusal itself live on the request. A
// spend budget's refusal, which names the budget in dollars, included.
func TestLimitRefusalAllocs(t *testing.T) {
	s := newTestServer(t, strings.Replace(allFeaturesConfig(startStaticCacheUpstream(t)),
		"{per: api_key, usd: 1000000, window: month}", "{per: api_key, usd: 0.000001, window: month}", 1))
	ctx := newProxyCtx(benchChatBody)
	ctx.Request.Header.Set("Authorization", "Bearer sk-team-a")
	// Not answered from the cache, which a spent budget does not refuse.
	ctx.Request.Header.Set("Cache-Control", "no-store")
	proxyOnce(s, ctx)
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 429 || !strings.Contains(string(ctx.Response.Body()), "a budget of $0.000001 per month") {
		t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	if n := allocsPerRun(200, func() { proxyOnce(s, ctx) }); n > 0 {
		t.Errorf("%v allocations per refused request, want 0", n)
	}
}
