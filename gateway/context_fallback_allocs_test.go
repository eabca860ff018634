//go:build !race

package gateway

import "testing"

// A request on an endpoint with context fallbacks that fits its route's window costs
// no allocation (as TestAccessLogAllocs's path, and with the spend budget's estimate
// reading every context fallback's prices). One the route refuses for its window
// costs what any upstream 4xx does (its error, errKind and outcome) and what keeping
// it for a fallback does (keepAnswer), plus one for the refusal's rewrite.
func TestContextFallbackAllocs(t *testing.T) {
	up := startStaticUpstream(t)
	for _, tc := range []struct {
		name   string
		route  string
		budget float64
	}{
		{"fits", up, 0},
		{"falls back", startStaticRefusingUpstream(t), 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestServer(t, ctxBenchConfig(tc.route, up))
			ctx := newProxyCtx(benchChatBody)
			proxyOnce(s, ctx)
			if ctx.Response.StatusCode() != 200 {
				t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
			if n := allocsPerRun(200, func() { proxyOnce(s, ctx) }); n > tc.budget {
				t.Fatalf("%.1f allocations per request, budget %v", n, tc.budget)
			}
		})
	}
}
