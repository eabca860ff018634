//go:build !race

package gateway

import "testing"

// TestKeyLimitedProxyAllocs pins the request path of a key with limits on an endpoint
// with limits: the pair's policy, joined by the first request, costs the next nothing.
func TestKeyLimitedProxyAllocs(t *testing.T) {
	s := newTestServer(t, limitedBenchConfig(startStaticUpstream(t))+`
auth:
  mode: keys
  keys:
    - {name: team-a, key: sk-team-a, limits: [{per: api_key, requests: 1000000000, window: second}]}
`)
	ctx := newProxyCtx(benchChatBody)
	ctx.Request.Header.Set("Authorization", "Bearer sk-team-a")
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 || string(ctx.Response.Header.Peek("X-Ratelimit-Limit-Requests")) != "1000000000" {
		t.Fatalf("status %d, x-ratelimit-limit-requests %q: %s", ctx.Response.StatusCode(),
			ctx.Response.Header.Peek("X-Ratelimit-Limit-Requests"), ctx.Response.Body())
	}
	// As TestLimitedProxyAllocs, the same request without a key.
	const budget = 5
	if n := allocsPerRun(200, func() { proxyOnce(s, ctx) }); n > budget {
		t.Fatalf("%.1f allocations per key-limited request, budget %d", n, budget)
	}
}
