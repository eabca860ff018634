package providers

import (
	"testing"
	"time"
)

// A retry queued before a reload that removed the one target that has not failed it
// takes that target's freed slot: the target it failed on, kept by the reload and in
// service, is one it does not take while another is in service, so it is no kept
// target to wait for. Counted as one, the retry would wait out queue.timeout with a
// slot free on either target.
func TestRetryQueuedBeforeReloadTakesRemovedTarget(t *testing.T) {
	urls := benchTargets(3) // A, B, C
	cfg := func(targets ...string) Config {
		return Config{Targets: targets, MaxConcurrency: 1, Queue: QueueConfig{Size: 8, Timeout: time.Minute}}
	}
	ps := NewPools()
	old := newPoolBackend(t, cfg(urls[0], urls[1]), ps)
	old.Activate()
	p := &old.pool
	// Both targets' slots are held by requests in flight.
	p.states[0].slots.n.Store(1)
	p.states[1].slots.n.Store(1)

	call := promptCall("retry", false)
	// Its first attempt failed on A: this is its retry, which waits for B.
	call.failedOn = old
	call.failed.add(0)
	done := make(chan acquired, 1)
	go func() {
		l, err := old.acquire(call)
		done <- acquired{l, err}
	}()
	waitUntil(t, "the retry queues", func() bool { return p.queue.waiting.Load() == 1 })

	// The reload keeps A and removes B.
	reloaded := newPoolBackend(t, cfg(urls[0], urls[2]), ps)
	reloaded.Activate()

	// B's request of the old config ends, then A's.
	p.free(1)
	p.free(0)
	select {
	case a := <-done:
		if a.err != nil || a.l.i != 1 {
			t.Fatalf("the retry got %+v, %v; want a slot on B, the one target that has not failed it", a.l, a.err)
		}
		p.free(a.l.i)
	case <-time.After(5 * time.Second):
		t.Fatal("the retry still waits with a slot free on B, the target it waits for, and on A, kept by the reload")
	}
}
