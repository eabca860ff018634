package providers

import (
	"errors"
	"slices"
	"testing"
	"time"
)

// A tenant of weight 3 with 4 waiting in a full queue of 4 gives its newest place to
// another tenant's first request: it keeps 3 (1 a share) against the newcomer's 1, as
// README's rule says ("at least as many waiting as the newcomer's would then have"),
// compared exactly, whatever the rounding of a weight's step.
func TestFairQueuePushOutAtWeightBoundary(t *testing.T) {
	b, held := fairBackend(t, QueueConfig{Size: 4, Timeout: time.Minute, Fair: "api_key", Weights: map[string]int{"a": 3}})
	out := queueCalls(t, b, "a1", "a2", "a3", "a4")
	bs := make(chan served, 1)
	queueAsync(b, "b1", bs)
	select {
	case s := <-out:
		if s.name != "a4" || !errors.Is(s.err, ErrOverloaded) {
			t.Fatalf("%s: %v; expected a4 pushed out with ErrOverloaded", s.name, s.err)
		}
	case s := <-bs:
		if s.err == nil {
			b.done(s.l.i)
		}
		rest := serveAll(t, b, held, out, 4)
		t.Fatalf("observed b1 refused (%v) with a (weight 3) keeping all 4 waiting (served %v after); "+
			"expected a4 pushed out: a would keep 3 waiting (1 per share), as many as b1's 1", s.err, rest)
	case <-time.After(5 * time.Second):
		t.Fatal("observed neither a4 pushed out nor b1 refused within 5s; expected a4 pushed out")
	}
	got := serveAll(t, b, held, mergeServed(out, bs), 4)
	if !slices.Contains(got, "b1") {
		t.Fatalf("observed %v served; expected b1 among them", got)
	}
}

// A reload that gives a tenant 4 shares applies to its requests that come after it,
// even while the tenant has requests waiting from before.
func TestFairQueueReloadedWeightsApplyToWaitingTenant(t *testing.T) {
	ps := NewPools()
	us := startReplicas(t, 1)
	cfg := func(w map[string]int) Config {
		return Config{Targets: replicaURLs(us), MaxConcurrency: 1,
			Queue: QueueConfig{Size: 16, Timeout: time.Minute, Fair: "api_key", Weights: w}}
	}
	old := newPoolBackend(t, cfg(nil), ps)
	old.Activate()
	held, err := old.acquire(promptCall("holder", false))
	if err != nil {
		t.Fatal(err)
	}
	out := queueCalls(t, old, "a1", "b1", "b2", "b3", "b4")
	cur := newPoolBackend(t, cfg(map[string]int{"a": 4}), ps)
	cur.Activate()
	if cur.pool.queue != old.pool.queue {
		t.Fatal("the reload did not share the queue")
	}
	out2 := queueCalls(t, cur, "a2", "a3", "a4", "a5")
	got := serveAll(t, cur, held, mergeServed(out, out2), 9)
	b2 := slices.Index(got, "b2")
	for _, a := range []string{"a2", "a3", "a4"} {
		if slices.Index(got, a) > b2 {
			t.Fatalf("observed order %v: %s, sent after the reload gave a weight 4, served after b2 (weight 1); "+
				"expected a2, a3, a4 before b2 (four slots for each of b's)", got, a)
		}
	}
}

// A retry that finds no room in the queue and takes a free slot on the target that
// failed it is no 503: it is not counted full, the outcome the alert and the dashboard
// read as requests turned away.
func TestFairQueueRetryServedOnFailedTargetNotCountedFull(t *testing.T) {
	b := newPoolBackend(t, Config{Targets: benchTargets(2), MaxConcurrency: 1,
		Queue: QueueConfig{Size: 0, Timeout: time.Minute}}, nil)
	p := &b.pool
	p.states[1].slots.n.Store(1) // target 1 busy
	call := promptCall("retry", false)
	call.failedOn = b
	call.failed.add(0)
	l, err := b.acquire(call)
	if err != nil {
		t.Fatalf("retry: %v; expected a slot on target 0", err)
	}
	p.free(l.i)
	p.states[1].slots.n.Store(0)
	st := b.QueueStats()
	if st.Outcomes[QueueFull] != 0 {
		t.Fatalf("observed outcomes %v (full=%d) for a retry served on target %d; expected no full (it got no 503)",
			st.Outcomes, st.Outcomes[QueueFull], l.i)
	}
}

// A reload that makes a queue fair while its requests wait in arrival order: those
// waiting count as one tenant, whose newest gives its place to a newcomer of another
// tenant when the queue is full.
func TestFairQueueReloadToFairPushesOutArrivalOrderWaiters(t *testing.T) {
	cur, held, out := reloadedToFair(t, 3)
	bs := make(chan served, 1)
	queueAsync(cur, "b1", bs)
	if s := <-out; s.name != "a3" || !errors.Is(s.err, ErrOverloaded) {
		t.Fatalf("%s: %v; expected a3 pushed out for b1", s.name, s.err)
	}
	got := serveAll(t, cur, held, mergeServed(out, bs), 3)
	if !slices.Contains(got, "b1") {
		t.Fatalf("served %v; expected b1 among them", got)
	}
}

// reloadedToFair is a backend of one target at max_concurrency 1 whose slot the test
// holds, with a1..a3 of tenant a queued in arrival order, then reloaded (under the same
// name, sharing the queue) into one with queue.fair: api_key; both queues hold size.
func reloadedToFair(t *testing.T, size int) (*Backend, lease, <-chan served) {
	t.Helper()
	ps := NewPools()
	us := startReplicas(t, 1)
	cfg := func(fair string) Config {
		return Config{Targets: replicaURLs(us), MaxConcurrency: 1, Queue: QueueConfig{Size: size, Timeout: time.Minute, Fair: fair}}
	}
	old := newPoolBackend(t, cfg(""), ps)
	old.Activate()
	held, err := old.acquire(promptCall("holder", false))
	if err != nil {
		t.Fatal(err)
	}
	out := queueCalls(t, old, "a1", "a2", "a3")
	cur := newPoolBackend(t, cfg("api_key"), ps)
	cur.Activate()
	if cur.pool.queue != old.pool.queue {
		t.Fatal("the reload did not share the queue")
	}
	return cur, held, out
}
