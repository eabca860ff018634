//go:build !race

package gateway

import (
	"context"
	"testing"

	"github.com/valyala/fasthttp"
)

// authBenchConfig is benchConfig with auth.mode keys: team-a never expires, old
// expired long ago, temp expires long from now; gone is there to be revoked
// (revokeGone).
func authBenchConfig(upstream string) string {
	return benchConfig(upstream) + `auth: {mode: keys, keys: [{name: team-a, key: sk-team-a-1234},
  {name: old, key: sk-old-5678, expires_at: "2021-01-01T00:00:00Z"},
  {name: temp, key: sk-temp-9012, expires_at: "2099-12-31T23:59:59Z"},
  {name: gone, key: sk-gone-3456}]}
`
}

// revokeGone revokes the key gone on s, as POST /admin/keys/gone/revoke does.
func revokeGone(tb testing.TB, s *Server) {
	tb.Helper()
	if _, _, err := s.revokes.revoke(context.Background(), "gone", "leaked"); err != nil {
		tb.Fatal(err)
	}
}

// authCtx is a chat request carrying the header lines hdr.
func authCtx(hdr [][2]string) *fasthttp.RequestCtx {
	ctx := newProxyCtx(benchChatBody)
	for _, h := range hdr {
		ctx.Request.Header.Add(h[0], h[1])
	}
	return ctx
}

// TestAuthRefusalAllocs pins the cost of refusing a key: a flood of bad keys (a
// stolen-key probe, a client with an expired key retrying) costs no more than the
// requests the gateway serves. The error body is rendered on the stack into the
// response's pooled buffer (writeError: it cost 4 allocations), and the key headers
// are read through the header's reused slice (keyHeader).
func TestAuthRefusalAllocs(t *testing.T) {
	s := newTestServer(t, authBenchConfig(startStaticUpstream(t)))
	revokeGone(t, s)
	for _, tc := range []struct {
		name   string
		hdr    [][2]string
		status int
	}{
		{"wrong bearer key", [][2]string{{"Authorization", "Bearer sk-wrong-0000"}}, 401},
		{"wrong api-key", [][2]string{{"Api-Key", "sk-wrong-0000"}}, 401},
		{"no key", nil, 401},
		{"key on two lines", [][2]string{{"Authorization", "Bearer sk-team-a-1234"}, {"Authorization", "Bearer sk-other-9999"}}, 400},
		{"the key", [][2]string{{"Authorization", "Bearer sk-team-a-1234"}}, 200},
		// An expiry costs a comparison with the request's start; its refusal, made
		// with the config, nothing more.
		{"expired bearer key", [][2]string{{"Authorization", "Bearer sk-old-5678"}}, 401},
		{"expired x-api-key", [][2]string{{"X-Api-Key", "sk-old-5678"}}, 401},
		{"a key expiring later", [][2]string{{"Authorization", "Bearer sk-temp-9012"}}, 200},
		// A revocation costs an atomic load on the key; its refusal, made once for
		// every key, nothing more.
		{"revoked bearer key", [][2]string{{"Authorization", "Bearer sk-gone-3456"}}, 401},
		{"revoked api-key", [][2]string{{"Api-Key", "sk-gone-3456"}}, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := authCtx(tc.hdr)
			proxyOnce(s, ctx)
			if ctx.Response.StatusCode() != tc.status {
				t.Fatalf("status %d: %s, want %d", ctx.Response.StatusCode(), ctx.Response.Body(), tc.status)
			}
			if n := allocsPerRun(200, func() { proxyOnce(s, ctx) }); n != 0 {
				t.Errorf("%.1f allocations per request, want 0", n)
			}
		})
	}
}

// BenchmarkAuthRefusal is a chat request with a wrong key, answered 401.
func BenchmarkAuthRefusal(b *testing.B) {
	s := newTestServer(b, authBenchConfig(startStaticUpstream(b)))
	ctx := authCtx([][2]string{{"Authorization", "Bearer sk-wrong-0000"}})
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 401 {
		b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	b.ReportAllocs()
	for b.Loop() {
		proxyOnce(s, ctx)
	}
}

// BenchmarkAuthKeyExpiry is a chat request with a key without expires_at (served),
// one expiring later (served) and one expired (refused 401 expired_api_key).
func BenchmarkAuthKeyExpiry(b *testing.B) {
	s := newTestServer(b, authBenchConfig(startStaticUpstream(b)))
	for _, bc := range []struct {
		name, key string
		status    int
	}{
		{"no expiry", "sk-team-a-1234", 200},
		{"expiring later", "sk-temp-9012", 200},
		{"expired", "sk-old-5678", 401},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := authCtx([][2]string{{"Authorization", "Bearer " + bc.key}})
			proxyOnce(s, ctx)
			if ctx.Response.StatusCode() != bc.status {
				b.Fatalf("status %d: %s, want %d", ctx.Response.StatusCode(), ctx.Response.Body(), bc.status)
			}
			b.ReportAllocs()
			for b.Loop() {
				proxyOnce(s, ctx)
			}
		})
	}
}

// BenchmarkAuthKeyRevoked is a chat request with a key not revoked (served, the
// revocation checked) and one revoked (refused 401 revoked_api_key).
func BenchmarkAuthKeyRevoked(b *testing.B) {
	s := newTestServer(b, authBenchConfig(startStaticUpstream(b)))
	revokeGone(b, s)
	for _, bc := range []struct {
		name, key string
		status    int
	}{
		{"not revoked", "sk-team-a-1234", 200},
		{"revoked", "sk-gone-3456", 401},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := authCtx([][2]string{{"Authorization", "Bearer " + bc.key}})
			proxyOnce(s, ctx)
			if ctx.Response.StatusCode() != bc.status {
				b.Fatalf("status %d: %s, want %d", ctx.Response.StatusCode(), ctx.Response.Body(), bc.status)
			}
			b.ReportAllocs()
			for b.Loop() {
				proxyOnce(s, ctx)
			}
		})
	}
}
