package limiter

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
)

// The read of the refused buckets runs on the limiter's sweep loop, which also sweeps
// the memory store: a Redis that stops answering holds it no longer than the store's
// timeout, and the read voids nothing.
func TestRefusalRecheckOnHungRedisEndsAtTimeout(t *testing.T) {
	srv := redistest.Start(t)
	cfg := Config{Redis: RedisConfig{URL: srv.URL()}, Timeout: 50 * time.Millisecond}
	a, b := newRedisLimiter(t, cfg), newRedisLimiter(t, cfg)
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 2, Window: "minute"})
	var tk Ticket
	for _, l := range []*Limiter{a, b} {
		if err := l.Take(bg, pol, alice, 0, &tk); err != nil {
			t.Fatal(err)
		}
	}
	refusedLocally(t, a, pol)
	waitFor(t, time.Second, "a heartbeat answered", func() bool { return a.rs.clockOff.Load() != 0 })
	srv.Pause()
	start := time.Now()
	a.rs.recheckRefusals(nil)
	took := time.Since(start)
	srv.Resume()
	if took > time.Second {
		t.Errorf("the read of the refused buckets on a hung Redis took %v, want about the 50ms timeout", took)
	}
	if n := a.rs.refusals.n.Load(); n != 1 {
		t.Errorf("%d refusals held after a failed read, want the one kept", n)
	}
}

// On Redis Cluster the buckets read are spread over the nodes by their hash tags: a
// refund on another replica is seen there too.
func TestRefusalRecheckOnCluster(t *testing.T) {
	t.Parallel()
	addrs := redistest.StartCluster(t, 3)
	cfg := Config{Redis: RedisConfig{Addrs: addrs}}
	a, b := newRedisLimiter(t, cfg), newRedisLimiter(t, cfg)
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 2, Window: "minute"})
	var aTk Ticket
	bTk := new(Ticket)
	if err := a.Take(bg, pol, alice, 0, &aTk); err != nil {
		t.Fatal(err)
	}
	if err := b.Take(bg, pol, alice, 0, bTk); err != nil {
		t.Fatal(err)
	}
	refusedLocally(t, a, pol)
	waitFor(t, time.Second, "a heartbeat answered", func() bool { return a.rs.clockOff.Load() != 0 })
	a.rs.recheckRefusals(nil)
	refusedLocally(t, a, pol)
	undo(t, b, bTk)
	a.rs.recheckRefusals(nil)
	var tk Ticket
	if err := a.Take(bg, pol, alice, 0, &tk); err != nil {
		t.Fatalf("Take on A after B's refund was read = %v, want admitted", err)
	}
}
