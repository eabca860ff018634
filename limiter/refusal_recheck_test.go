package limiter

import (
	"errors"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
)

// README: a replica answers a refusal by an empty requests bucket itself until the
// retry Redis gave (at most 10 s), but limits are exact across replicas: capacity
// another replica gives back to the bucket (a check undone because its request gave up
// waiting) lets a request in on this one too. Replica A, its refusal cached, went on
// refusing alice for up to 10 s while replica B admitted her at once.

// twoReplicas are two limiters sharing srv, and a policy of 2 requests a minute (a
// refusal's retry is 30 s) whose bucket both have spent: A's third check was refused
// by Redis and is cached, and B's admitted ticket is returned.
func twoReplicas(t *testing.T, srv *redistest.Server) (a, b *Limiter, pol *Policy, bTk *Ticket) {
	t.Helper()
	cfg := Config{Redis: RedisConfig{URL: srv.URL()}}
	a, b = newRedisLimiter(t, cfg), newRedisLimiter(t, cfg)
	pol = mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 2, Window: "minute"})
	var aTk Ticket
	bTk = new(Ticket)
	if err := a.Take(bg, pol, alice, 0, &aTk); err != nil {
		t.Fatal(err)
	}
	if err := b.Take(bg, pol, alice, 0, bTk); err != nil {
		t.Fatal(err)
	}
	refusedLocally(t, a, pol)
	return a, b, pol, bTk
}

// refusedLocally asserts that a refuses alice without a round trip (after one to Redis
// when nothing is cached yet).
func refusedLocally(t *testing.T, a *Limiter, pol *Policy) {
	t.Helper()
	var tk Ticket
	var ref *Refused
	for range 2 {
		if err := a.Take(bg, pol, alice, 0, &tk); !errors.As(err, &ref) {
			t.Fatalf("Take on A = %v, want a refusal", err)
		}
	}
	before := a.Stats()
	if err := a.Take(bg, pol, alice, 0, &tk); !errors.As(err, &ref) {
		t.Fatalf("Take on A = %v, want a refusal", err)
	}
	if s := a.Stats(); s.RefusedLocally != before.RefusedLocally+1 || s.RoundTrips != before.RoundTrips {
		t.Fatalf("stats %+v -> %+v: want the refusal answered from A's cache", before, s)
	}
}

// undo gives back in Redis what tk took there, as l does for a check whose request
// stopped waiting for it (handOver), and returns once Redis has it.
func undo(t *testing.T, l *Limiter, tk *Ticket) {
	t.Helper()
	w := l.rs.newWaiter(tk)
	l.rs.mu.Lock()
	l.rs.undoLocked(w, []uint8{0})
	l.rs.mu.Unlock()
	l.rs.release(w)
	barrier(t, l)
}

func TestRefusalCacheSeesRefundOnAnotherReplica(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a, b, pol, bTk := twoReplicas(t, srv)
	undo(t, b, bTk)
	// A reads its refused buckets every recheckEvery; the refusal's retry is 30 s
	// and the cache's own bound 10 s.
	var tk Ticket
	waitFor(t, 3*time.Second, "A admits alice after B's refund", func() bool {
		return a.Take(bg, pol, alice, 0, &tk) == nil
	})
	// The room is taken: both replicas refuse again.
	var ref *Refused
	if err := b.Take(bg, pol, alice, 0, &tk); !errors.As(err, &ref) {
		t.Fatalf("Take on B after A took the refund = %v, want a refusal", err)
	}
}

// Reading the refused buckets voids only what admits a request again: without a
// refund the cache still answers.
func TestRefusalRecheckKeepsWhatIsStillRefused(t *testing.T) {
	srv := redistest.Start(t)
	a, b, pol, bTk := twoReplicas(t, srv)
	a.rs.recheckRefusals(nil)
	refusedLocally(t, a, pol)

	undo(t, b, bTk)
	a.rs.recheckRefusals(nil)
	var tk Ticket
	if err := a.Take(bg, pol, alice, 0, &tk); err != nil {
		t.Fatalf("Take on A after B's refund was read = %v, want admitted", err)
	}
}
