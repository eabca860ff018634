package limiter

import (
	"errors"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
)

// Requests a replica admitted from its fallback share while Redis was down still run
// when Redis answers again. Their slots were kept only in the replica's own bucket, so
// Redis counted none of them and admitted the whole cap again on top of them: a cap of
// 2 ran 4 requests at once (3 replicas hammering a cap of 8 through an outage ran 14).
// Each holds a lease like a request Redis admitted, which the heartbeat that finds
// Redis back adds to it before checks go there again.
func TestFallbackSlotsCountedWhenRedisReturns(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	// One replica's share is the whole cap.
	cfg := Config{Redis: RedisConfig{URL: srv.URL()}, Replicas: 1}
	a, b := newRedisLimiter(t, cfg), newRedisLimiter(t, cfg)
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Concurrency: 2})

	srv.Kill()
	waitFor(t, 10*time.Second, "a degraded", a.Degraded)
	var t1, t2 Ticket
	for _, tk := range []*Ticket{&t1, &t2} {
		if err := a.Take(bg, pol, alice, 0, tk); err != nil {
			t.Fatalf("from the fallback share: %v", err)
		}
	}
	if s := a.Stats(); s.Fallbacks != 2 {
		t.Fatalf("%d checks answered from the fallback share, want 2", s.Fallbacks)
	}
	srv.Restart()
	waitFor(t, 10*time.Second, "both recovered", func() bool { return !a.Degraded() && !b.Degraded() })

	var tk Ticket
	err := b.Take(bg, pol, alice, 0, &tk)
	var ref *Refused
	if !errors.As(err, &ref) {
		if err == nil {
			b.Settle(&tk, 0)
		}
		t.Fatalf("with 2 of 2 slots in flight, admitted from the share while Redis was down: %v, want a refusal", err)
	}
	// The slots go back when their requests end.
	a.Settle(&t1, 0)
	a.Settle(&t2, 0)
	barrier(t, a)
	if err := b.Take(bg, pol, alice, 0, &tk); err != nil {
		t.Fatalf("after both requests ended: %v, want a slot", err)
	}
	b.Settle(&tk, 0)
}
