package providers

import (
	"testing"
	"time"
)

// A request of the config a reload replaced takes a target the reload removed only
// while no target it kept, one the request takes, is in service (README, Replica
// pools), however it comes to take a slot: its retry, the trial of a target whose
// ejection ran out, or a waiter put back at the front of the queue (the slot it was
// handed was on a target that left service before it could use it), as well as a
// waiter a freed slot is handed to.
func TestRemovedTargetTakenOnlyWithNoKeptOneInService(t *testing.T) {
	urls := benchTargets(4) // A, B, C, D
	const a, b, c = 0, 1, 2
	cfg := func(targets ...string) Config {
		return Config{Targets: targets, MaxConcurrency: 1, Queue: QueueConfig{Size: 8, Timeout: time.Minute}}
	}
	// reloaded has a backend on A, B and C in service, then a reload that keeps B and
	// C and removes A; it returns the replaced backend.
	reloaded := func(t *testing.T) *Backend {
		ps := NewPools()
		old := newPoolBackend(t, cfg(urls[a], urls[b], urls[c]), ps)
		old.Activate()
		newPoolBackend(t, cfg(urls[b], urls[c], urls[3]), ps).Activate()
		if !old.pool.states[a].removed.Load() || old.pool.states[b].removed.Load() {
			t.Fatal("the reload did not mark A, and A alone, removed")
		}
		return old
	}
	// taken waits for the lease of an acquire running on its own.
	taken := func(t *testing.T, done <-chan acquired, want int, what string) {
		t.Helper()
		select {
		case got := <-done:
			if got.err != nil || got.l.i != want {
				t.Fatalf("got %+v, %v; want a slot on target %d", got.l, got.err, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatal(what)
		}
	}
	notYet := func(t *testing.T, done <-chan acquired, what string) {
		t.Helper()
		select {
		case got := <-done:
			t.Fatalf("%s: got %+v, %v", what, got.l, got.err)
		case <-time.After(100 * time.Millisecond):
		}
	}

	t.Run("a retry waits for a kept target rather than take the removed one", func(t *testing.T) {
		old := reloaded(t)
		p := &old.pool
		// B is full; the request failed on C, and A, removed, has a slot free.
		p.states[b].slots.n.Store(1)
		call := promptCall("retry", false)
		call.failedOn = old
		call.failed.add(c)
		done := make(chan acquired, 1)
		go func() {
			l, err := old.acquire(call)
			done <- acquired{l, err}
		}()
		notYet(t, done, "the retry took a slot while B, kept and in service, was full")
		p.free(b)
		taken(t, done, b, "the retry did not take the slot freed on B")
		p.free(b)
	})
	t.Run("a retry takes the removed target once no kept one it takes is in service", func(t *testing.T) {
		old := reloaded(t)
		p := &old.pool
		p.states[b].down.Store(true)
		call := promptCall("retry", false)
		call.failedOn = old
		call.failed.add(c)
		l, err := old.acquire(call)
		if err != nil || l.i != a {
			t.Fatalf("got %+v, %v; want A, the one target in service the retry has not failed on", l, err)
		}
		p.free(l.i)
	})
	t.Run("a trial of the removed target waits while a kept one is in service", func(t *testing.T) {
		old := reloaded(t)
		p := &old.pool
		st := p.states[a]
		st.ejected.Store(true)
		st.until.Store(time.Now().Add(-time.Second).UnixNano())
		l, err := old.acquire(promptCall("trial", false))
		if err != nil {
			t.Fatal(err)
		}
		if l.i == a || l.probe {
			t.Fatalf("got %+v: the trial of A, removed by the reload, while B and C are in service", l)
		}
		p.free(l.i)
		// With B and C out of service, A's trial is the request's.
		p.states[b].down.Store(true)
		p.states[c].down.Store(true)
		if l, err = old.acquire(promptCall("trial", false)); err != nil || l.i != a || !l.probe {
			t.Fatalf("got %+v, %v; want A's trial, no kept target being in service", l, err)
		}
		old.report(l, success)
		p.free(l.i)
	})
	t.Run("a waiter put back at the front waits for a kept target", func(t *testing.T) {
		old := reloaded(t)
		p := &old.pool
		p.states[b].slots.n.Store(1)
		p.states[c].slots.n.Store(1)
		done := make(chan acquired, 1)
		go func() {
			// As wait puts back a waiter whose slot's target left service.
			l, out, _ := p.queue.wait(p, b, nil, time.Minute, true, nil, nil)
			if out != waitServed {
				l.i = -1
			}
			done <- acquired{l, nil}
		}()
		notYet(t, done, "the waiter put back took a slot while B and C, kept and in service, were full")
		p.free(c)
		taken(t, done, c, "the waiter put back did not take the slot freed on C")
		p.free(c)
		p.free(b)
	})
}
