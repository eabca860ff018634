package router

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Operators' calls made at once on one endpoint, through several replicas sharing
// Redis, take turns: each is written once the change before it takes effect, and
// every one succeeds. None is answered shared_state_unavailable while Redis answers.
// The replicas run on the real clock (a fake one moved by each waiting call would
// move it for all of them at once), so the calls take a switch delay each.
func TestSharedConcurrentOperationsTakeTurns(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	var rs []*Router
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		rdb := redis.NewClient(&redis.Options{Addr: c.srv.Addr(), MaxRetries: -1})
		t.Cleanup(func() { _ = rdb.Close() })
		r := New(Options{Redis: rdb, KeyPrefix: c.prefix, ID: id, TickEvery: 50 * time.Millisecond, LeaseTTL: 300 * time.Millisecond})
		r.Apply([]*Endpoint{mustEndpoint(t, "chat", sharedCanary())})
		r.tick(bg)
		rs = append(rs, r)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(rs))
	for i, r := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(bg, 10*time.Second)
			defer cancel()
			_, errs[i] = r.SetWeights(ctx, "chat", map[string]int{"stable": 90 - i, "canary": 10 + i})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: weights override refused while Redis answers: %v", i, err)
		}
	}
	time.Sleep(time.Second)
	var want []float64
	for i, r := range rs {
		r.tick(bg)
		s, err := r.EndpointSnapshot("chat")
		if err != nil {
			t.Fatal(err)
		}
		got := routeWeights(s)
		if !s.Override || s.SwitchAt != nil || got[0]+got[1] != 100 || got[1] < 10 || got[1] > 14 {
			t.Fatalf("replica %d: override %v weights %v switch %v, want one of the overrides in force", i, s.Override, got, s.SwitchAt)
		}
		if want == nil {
			want = got
		} else if !slices.Equal(got, want) {
			t.Fatalf("replica %d routes by %v, replica 0 by %v", i, got, want)
		}
	}
}

// However many changes an operation finds waiting one after another, it is
// written after the last has taken effect, from its weights: written over one
// still waiting, it would have the replicas that read it after that change's
// instant take back the switch they had made.
func TestSharedOperationWaitsOutEveryPendingChange(t *testing.T) {
	c := newCluster(t)
	a := c.replica("a", sharedCanary())
	b := c.replica("b", sharedCanary())
	round(a, b)
	if _, err := a.r.SetWeights(bg, "chat", map[string]int{"stable": 90, "canary": 10}); err != nil {
		t.Fatal(err)
	}
	// Each time b waits, another operator's change is made through a just as the
	// one b waited for takes effect.
	next := 11
	b.r.wait = func(_ context.Context, d time.Duration) error {
		c.clock.Advance(d)
		if next <= 15 {
			if _, err := a.r.SetWeights(bg, "chat", map[string]int{"stable": 100 - next, "canary": next}); err != nil {
				return err
			}
			next++
		}
		return nil
	}
	s, err := b.r.SetWeights(bg, "chat", map[string]int{"stable": 50, "canary": 50})
	if err != nil {
		t.Fatal(err)
	}
	if got := routeWeights(s); !slices.Equal(got, []float64{85, 15}) || s.PendingWeights["canary"] != 50 {
		t.Fatalf("written with %v in force and %v pending, want the last change's 85/15 in force, 50 pending", got, s.PendingWeights)
	}
}

// An operator's rollback that runs out of time waiting for another change to take
// effect was refused by no outage: Redis answers, so it is not applied on the
// replica called alone (LocalOnly), where the others would never have agreed to
// it at one instant.
func TestSharedRollbackOutOfTimeWaitingIsNotLocal(t *testing.T) {
	c := newCluster(t)
	a := c.replica("a", sharedCanary())
	b := c.replica("b", sharedCanary())
	round(a, b)
	if _, err := a.r.SetWeights(bg, "chat", map[string]int{"stable": 80, "canary": 20}); err != nil {
		t.Fatal(err)
	}
	b.r.wait = func(context.Context, time.Duration) error { return context.DeadlineExceeded }
	_, err := b.r.Rollback(bg, "chat")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("rollback waiting past its deadline: %v, want shared state unavailable", err)
	}
	s, err := b.r.EndpointSnapshot("chat")
	if err != nil {
		t.Fatal(err)
	}
	if s.Canary.LocalOnly || s.Canary.State == StateRolledBack {
		t.Fatalf("rollback out of time applied on this replica alone: %s local_only %v", s.Canary.State, s.Canary.LocalOnly)
	}
}
