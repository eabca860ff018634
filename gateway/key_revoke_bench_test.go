//go:build !race

package gateway

import (
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// BenchmarkAuthenticateRevocation is authenticate alone, for a key whose name was never
// revoked, one restored and one revoked: the check is a field read and an atomic load
// on the key, no lookup or lock, and the refusal is made once for every key.
func BenchmarkAuthenticateRevocation(b *testing.B) {
	s := newTestServer(b, authBenchConfig("127.0.0.1:9"))
	revokeGone(b, s)
	rt := s.rt.Load()
	now := time.Now()
	for _, bc := range []struct {
		name, key string
		refused   bool
	}{
		{"never revoked", "sk-team-a-1234", false},
		{"revoked", "sk-gone-3456", true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var h fasthttp.RequestHeader
			h.Set("Authorization", "Bearer "+bc.key)
			if _, e := authenticate(rt, &h, now); (e != nil) != bc.refused || bc.refused && e.code != codeKeyRevoked {
				b.Fatalf("refused %v", e)
			}
			b.ReportAllocs()
			for b.Loop() {
				authenticate(rt, &h, now)
			}
		})
	}
}
