package providers

import (
	"testing"
	"time"
)

// A request queued before a reload that removed one of its targets takes a slot only
// on a target the new config keeps, while one is in service (README, Replica pools):
// a slot freed on the removed target, by a request of the old config finishing there,
// is not handed to it. Once no target it kept is in service, or when the reload kept
// none of its targets, it takes the removed target's slot rather than wait in vain.
func TestQueuedBeforeReloadSkipsRemovedTarget(t *testing.T) {
	urls := benchTargets(3) // A, B, C
	cfg := func(targets ...string) Config {
		return Config{Targets: targets, MaxConcurrency: 1, Queue: QueueConfig{Size: 8, Timeout: time.Minute}}
	}
	// queued has a backend on A and B hold both their slots, with one request queued,
	// then reloads to the targets given.
	queued := func(t *testing.T, to ...string) (old, reloaded *Backend, held [2]lease, w <-chan lease) {
		ps := NewPools()
		old = newPoolBackend(t, cfg(urls[0], urls[1]), ps)
		old.Activate()
		for range held {
			l, err := old.acquire(promptCall("held", false))
			if err != nil {
				t.Fatal(err)
			}
			held[l.i] = l
		}
		w = acquireAsync(old)
		waitUntil(t, "the request queues", func() bool { return old.pool.queue.waiting.Load() == 1 })
		reloaded = newPoolBackend(t, cfg(to...), ps)
		reloaded.Activate()
		return old, reloaded, held, w
	}
	got := func(t *testing.T, w <-chan lease, want int, what string) {
		t.Helper()
		select {
		case l := <-w:
			if l.i != want {
				t.Fatalf("got %+v, want target %d", l, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatal(what)
		}
	}

	t.Run("a kept target in service", func(t *testing.T) {
		old, _, held, w := queued(t, urls[1], urls[2])
		// A's request of the old config ends: A is no target of the config in service.
		old.pool.free(held[0].i)
		select {
		case l := <-w:
			t.Fatalf("the request queued before the reload took %+v on %s, a target the reload removed", l, old.targets[l.i].URL)
		case <-time.After(200 * time.Millisecond):
		}
		// B's ends: the waiter takes B, which the new config keeps.
		old.pool.free(held[1].i)
		got(t, w, 1, "the waiter did not take the slot freed on a target the new config keeps")
		old.pool.free(1)
	})
	t.Run("the kept target leaves service", func(t *testing.T) {
		old, _, held, w := queued(t, urls[1], urls[2])
		old.pool.free(held[0].i)
		select {
		case l := <-w:
			t.Fatalf("the request queued before the reload took %+v, a target the reload removed", l)
		case <-time.After(50 * time.Millisecond):
		}
		old.pool.states[1].down.Store(true)
		old.pool.leftService()
		got(t, w, 0, "the waiter still waits on a kept target out of service while the removed one has a slot free")
		old.pool.free(0)
		old.pool.states[1].down.Store(false)
		old.pool.free(held[1].i)
	})
	t.Run("no target kept", func(t *testing.T) {
		old, _, held, w := queued(t, urls[2])
		old.pool.free(held[0].i)
		got(t, w, 0, "a request queued before a reload that removed all its targets never took a slot on them")
		old.pool.free(0)
		old.pool.free(held[1].i)
	})
}
