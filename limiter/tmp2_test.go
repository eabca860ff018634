package limiter

import (
	"testing"
	"time"
	"github.com/tollgate/tollgate/internal/redistest"
)

func BenchmarkTmpDirect(b *testing.B) {
	srv := redistest.Start(b)
	rc := redisClient(b, srv.Addr())
	b.Run("get", func(b *testing.B) {
		for b.Loop() { rc.Get(bg, "x") }
	})
	l := newRedisLimiter(b, Config{Redis: RedisConfig{URL: srv.URL()}})
	pol := benchPolicy(b)
	b.Run("take", func(b *testing.B) {
		var tk Ticket
		for b.Loop() { _ = l.Take(bg, pol, alice, 100, &tk) }
	})
	b.Run("takesettle", func(b *testing.B) {
		var tk Ticket
		for b.Loop() { _ = l.Take(bg, pol, alice, 100, &tk); l.Settle(&tk, 80) }
	})
	_ = time.Now
}
