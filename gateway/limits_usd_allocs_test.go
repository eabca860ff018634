//go:build !race

package gateway

import "testing"

// TestUSDLimitedProxyAllocs pins the request path with a spend budget: the cost
// estimate over the plan's backends, the usd bucket's charge and settlement at the
// cost the counter adds, and the -usd headers cost no more than TestLimitedProxyAllocs.
func TestUSDLimitedProxyAllocs(t *testing.T) {
	s := newTestServer(t, usdBenchConfig(startStaticUpstream(t)))
	ctx := newProxyCtx(benchChatBody)
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 || string(ctx.Response.Header.Peek("X-Ratelimit-Limit-Usd")) != "1000000" {
		t.Fatalf("status %d, x-ratelimit-limit-usd %q: %s", ctx.Response.StatusCode(),
			ctx.Response.Header.Peek("X-Ratelimit-Limit-Usd"), ctx.Response.Body())
	}
	const budget = 5
	if n := allocsPerRun(200, func() { proxyOnce(s, ctx) }); n > budget {
		t.Fatalf("%.1f allocations per request with a usd limit, budget %d", n, budget)
	}
}
