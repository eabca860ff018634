package providers

import (
	"testing"
	"time"
)

// A reload that changes max_concurrency changes it for the requests already there: the
// requests waiting, those queued under the replaced backend included, take the slots
// a raised cap opens at once, and a slot the replaced backend's requests free is handed
// on by the new cap, not the old. A backend built but never activated (a reload that
// failed to build) leaves the cap as it was.
func TestReloadedMaxConcurrencyAppliesToWaiters(t *testing.T) {
	cfg := func(limit int) Config {
		return Config{Targets: benchTargets(1), MaxConcurrency: limit, Queue: QueueConfig{Size: 8, Timeout: time.Minute}}
	}
	// queued builds the backend in service with max_concurrency 1, one request
	// holding the slot and n queued behind it.
	queued := func(t *testing.T, ps *Pools, n int) (*Backend, lease, []<-chan lease) {
		old := newPoolBackend(t, cfg(1), ps)
		old.Activate()
		held, err := old.acquire(promptCall("held", false))
		if err != nil {
			t.Fatal(err)
		}
		var waiters []<-chan lease
		for k := range n {
			waiters = append(waiters, acquireAsync(old))
			waitUntil(t, "the request queues", func() bool { return old.pool.queue.waiting.Load() == int64(k+1) })
		}
		return old, held, waiters
	}
	t.Run("raised: the waiters take the slots it opens", func(t *testing.T) {
		ps := NewPools()
		_, _, waiters := queued(t, ps, 2)
		reloaded := newPoolBackend(t, cfg(3), ps)
		reloaded.Activate()
		for k, w := range waiters {
			select {
			case l := <-w:
				if l.i != 0 || !l.queued {
					t.Errorf("waiter %d got %+v, want a queued slot on target 0", k, l)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("waiter %d still waits after the reload raised max_concurrency 1 -> 3 with 1 in flight", k)
			}
		}
		st := reloaded.pool.states[0]
		if n, w := st.slots.load(), reloaded.pool.queue.waiting.Load(); n != 3 || w != 0 {
			t.Errorf("%d in flight and %d waiting, want 3 and 0", n, w)
		}
		st.slots.n.Store(0)
	})
	t.Run("a slot the replaced backend frees goes by the new cap", func(t *testing.T) {
		ps := NewPools()
		old, held, waiters := queued(t, ps, 3)
		reloaded := newPoolBackend(t, cfg(3), ps)
		reloaded.Activate()
		for k, w := range waiters[:2] {
			select {
			case <-w:
			case <-time.After(10 * time.Second):
				t.Fatalf("waiter %d still waits after the reload raised max_concurrency 1 -> 3 with 1 in flight", k)
			}
		}
		// 3 in flight, the third waiter behind them: the first request, admitted
		// under the old cap, ends.
		old.pool.free(held.i)
		select {
		case l := <-waiters[2]:
			if l.i != 0 {
				t.Errorf("got %+v, want target 0", l)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a slot freed by a request of the replaced backend (max_concurrency 1) was not handed on under the new cap of 3")
		}
		reloaded.pool.states[0].slots.n.Store(0)
	})
	for _, c := range []struct {
		name               string
		from, inFlight, to int
		activate           bool
		admitted           string
	}{
		{"lowered: no new slot until the requests in flight fit", 3, 2, 1, true,
			"the replaced backend admitted a third request under the new cap of 1"},
		{"built, never activated: the cap stays", 1, 1, 4, false,
			"a reload that never installed its backend raised max_concurrency 1 -> 4"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ps := NewPools()
			b := newPoolBackend(t, cfg(c.from), ps)
			b.Activate()
			b.pool.states[0].slots.n.Store(int64(c.inFlight))
			reloaded := newPoolBackend(t, cfg(c.to), ps)
			if c.activate {
				reloaded.Activate()
			} else {
				_ = reloaded.Close()
			}
			if _, err := b.acquire(promptCallDeadline("over", time.Millisecond)); err == nil {
				t.Fatal(c.admitted)
			}
			b.pool.states[0].slots.n.Store(0)
		})
	}
}

// promptCallDeadline is promptCall with a deadline d from now, the most it may queue.
func promptCallDeadline(prompt string, d time.Duration) *Call {
	c := promptCall(prompt, false)
	c.Deadline = time.Now().Add(d)
	return c
}
