//go:build !race

package gateway

import (
	"strings"
	"testing"
)

// TestProxyDeveloperRoleAllocs: a chat call whose developer messages a backend with
// developer_role system sends as system costs no allocation more than any call
// (TestProxyAllocs' budget): the rewrite is in place, in the pooled body buffer.
func TestProxyDeveloperRoleAllocs(t *testing.T) {
	cfg := strings.Replace(benchConfig(startStaticUpstream(t)), "model: up-model}", "model: up-model, developer_role: system}", 1)
	if !strings.Contains(cfg, "developer_role: system") {
		t.Fatalf("config without developer_role:\n%s", cfg)
	}
	s := newTestServer(t, cfg)
	ctx := newProxyCtx([]byte(`{"model":"chat","messages":[{"role":"developer","content":"You are a helpful assistant."},{"role":"user","content":"Tell me a story about a gateway."}],"max_tokens":64,"user":"u-123"}`))
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	const budget = 5
	if n := allocsPerRun(200, func() { proxyOnce(s, ctx) }); n > budget {
		t.Fatalf("%.1f allocations per request, budget %d", n, budget)
	}
}
