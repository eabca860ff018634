package gateway

import "testing"

// BenchmarkProxyChatKeyLimited is BenchmarkProxyChatLimited by a key with a limit of its
// own, checked with the endpoint's.
func BenchmarkProxyChatKeyLimited(b *testing.B) {
	s := newTestServer(b, limitedBenchConfig(startStaticUpstream(b))+`
auth:
  mode: keys
  keys:
    - {name: team-a, key: sk-team-a, limits: [{per: api_key, requests: 1000000000, window: second}]}
`)
	ctx := newProxyCtx(benchChatBody)
	ctx.Request.Header.Set("Authorization", "Bearer sk-team-a")
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 {
		b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	b.ReportAllocs()
	for b.Loop() {
		proxyOnce(s, ctx)
	}
}
