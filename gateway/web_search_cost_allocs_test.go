//go:build !race

package gateway

import (
	"testing"
)

// TestWebSearchCostAllocs: an Anthropic answer with searches and a tier, its searches
// priced, counted and logged with its tier, costs the request path no allocation more
// than the same answer without them.
func TestWebSearchCostAllocs(t *testing.T) {
	allocs := func(resp []byte) float64 {
		s := wsProxyServer(t, resp)
		ctx := newProxyCtx(benchChatBody)
		proxyOnce(s, ctx)
		if ctx.Response.StatusCode() != 200 {
			t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
		return allocsPerRun(200, func() { proxyOnce(s, ctx) })
	}
	plain, searched := allocs(wsPlainResp), allocs(wsSearchResp)
	if searched > plain {
		t.Fatalf("%.1f allocations per request with searches and a tier, %.1f without", searched, plain)
	}
}
