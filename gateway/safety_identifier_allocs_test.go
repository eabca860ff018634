//go:build !race

package gateway

import (
	"strings"
	"testing"
)

// A request naming its end user in safety_identifier, written with escapes so that
// it is unescaped into the request's pooled buffer, costs no more allocations than
// one naming it in user, with a per: user limit and sticky: {from: user} reading it.
func TestSafetyIdentifierAllocs(t *testing.T) {
	cfg := strings.Replace(limitedBenchConfig(startStaticUpstream(t)), "    routes: [{backend: up}]\n",
		"    routes: [{backend: up}]\n    sticky: {from: user}\n", 1)
	cfg = strings.Replace(cfg, "      - {per: ip,", "      - {per: user, requests: 1000000000, window: second}\n      - {per: ip,", 1)
	s := newTestServer(t, cfg)
	alloc := func(body string) float64 {
		t.Helper()
		ctx := newProxyCtx([]byte(body))
		proxyOnce(s, ctx)
		if ctx.Response.StatusCode() != 200 {
			t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
		return allocsPerRun(200, func() { proxyOnce(s, ctx) })
	}
	const prefix = `{"model":"chat","messages":[{"role":"user","content":"Hello"}],"max_tokens":64,`
	base := alloc(prefix + `"user":"jos\u00e9-123"}`)
	if n := alloc(prefix + `"user":"u-1","safety_identifier":"jos\u00e9-456"}`); n > base {
		t.Errorf("%.1f allocations per request with safety_identifier, %.1f with user", n, base)
	}
	var f fields
	body := []byte(prefix + `"user":"u-1","safety_identifier":"jos\u00e9-456"}`)
	if n := allocsPerRun(100, func() { scanBody(body, &f) }); n != 0 {
		t.Errorf("%.1f allocations per scan of %s, want 0", n, body)
	}
}
