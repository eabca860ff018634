//go:build !race

package gateway

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate/providers"
)

// TestUSDEstimateBoundsAllocs: where the plan may reach a backend with cache-write and
// web-search prices, the estimate's reading of the body (a cache mark, a search bound)
// costs no allocation, and the request path with a spend budget no more than
// TestUSDLimitedProxyAllocs's budget.
func TestUSDEstimateBoundsAllocs(t *testing.T) {
	s := newTestServer(t, usdBoundsBenchConfig(startStaticUpstream(t)))
	rt := s.rt.Load()
	plain := &request{rt: rt, body: benchUnmarkedBody, call: providers.Call{Kind: providers.Chat}}
	marked := &request{rt: rt, body: benchBoundsBody, call: providers.Call{Kind: providers.Chat}}
	rt.endpoints["chat"].routing.Plan(nil, time.Now(), &plain.plan)
	rt.endpoints["chat"].routing.Plan(nil, time.Now(), &marked.plan)
	// At the anthropic fallback's prices: 20 prompt tokens at $6 a million (its
	// one-hour write price), 64 output at $15, 5 searches at $0.01.
	if got, want := marked.costEstimate(20, 64), int64(20*6_000+64*15_000+5*10_000_000); got != want {
		t.Fatalf("marked estimate %d nano-dollars, want %d", got, want)
	}
	if got, want := plain.costEstimate(20, 64), int64(20*3_000+64*15_000); got != want {
		t.Fatalf("plain estimate %d nano-dollars, want %d", got, want)
	}
	var sink int64
	for _, r := range []*request{plain, marked} {
		if n := allocsPerRun(200, func() { sink += r.costEstimate(20, 64) }); n != 0 {
			t.Errorf("costEstimate: %v allocations, want 0", n)
		}
	}
	for _, body := range [][]byte{benchBoundsBody, benchUnmarkedBody} {
		ctx := newProxyCtx(body)
		proxyOnce(s, ctx)
		if ctx.Response.StatusCode() != 200 {
			t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
		const budget = 5 // TestUSDLimitedProxyAllocs's
		if n := allocsPerRun(200, func() { proxyOnce(s, ctx) }); n > budget {
			t.Fatalf("%.1f allocations per request, budget %d", n, budget)
		}
	}
}
