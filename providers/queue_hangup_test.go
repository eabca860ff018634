package providers

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testClient is a call's client for the queue: hangUp makes its watch fire.
type testClient struct {
	gone     chan struct{}
	watches  atomic.Int64
	watching atomic.Int64
	// onUnwatch, when set, runs as the watch ends.
	onUnwatch func()
}

func newTestClient() *testClient { return &testClient{gone: make(chan struct{})} }

func (c *testClient) Watch() <-chan struct{} {
	c.watches.Add(1)
	c.watching.Add(1)
	return c.gone
}

func (c *testClient) Unwatch() {
	c.watching.Add(-1)
	if c.onUnwatch != nil {
		c.onUnwatch()
	}
}

func (c *testClient) hangUp() { close(c.gone) }

// A call queued for a slot whose client hangs up leaves the queue at once, as one
// whose wait ran out does, and is sent nowhere: ErrClientGone, which counts neither
// for nor against the target. The slot it would have had goes to the next waiter.
func TestQueuedCallLeavesWhenItsClientHangsUp(t *testing.T) {
	t.Run("leaves the queue without reaching the upstream", func(t *testing.T) {
		u := startReplica(t)
		b := newPoolBackend(t, Config{BaseURL: u.url(), MaxConcurrency: 1,
			Queue: QueueConfig{Size: 4, Timeout: time.Minute}, Health: HealthConfig{EjectAfter: 1}}, nil)
		_, s := openStream(t, b, "holds the slot")
		hits := u.hits.Load()
		gone, stays := newTestClient(), newTestClient()
		callGone, callStays := promptCall("gone", false), promptCall("stays", false)
		callGone.Client, callStays.Client = gone, stays
		doneGone := sendAsync(b, callGone)
		waitUntil(t, "the first request queues", func() bool { return b.pool.queue.waiting.Load() == 1 })
		doneStays := sendAsync(b, callStays)
		waitUntil(t, "the second request queues", func() bool { return b.pool.queue.waiting.Load() == 2 })
		began := time.Now()
		gone.hangUp()
		r := <-doneGone
		if !errors.Is(r.err, ErrClientGone) {
			t.Fatalf("got %v, want ErrClientGone", r.err)
		}
		if d := time.Since(began); d > 5*time.Second {
			t.Errorf("left the queue after %v", d)
		}
		if w := b.pool.queue.waiting.Load(); w != 1 {
			t.Errorf("%d waiting, want the other request alone", w)
		}
		if gone.watching.Load() != 0 {
			t.Error("the watch was not ended")
		}
		if judged, failed := Judge(r.err); judged || failed {
			t.Errorf("Judge = %v, %v; want nothing said of the upstream", judged, failed)
		}
		// The request still queued is served when the slot frees.
		_ = drainStream(s)
		_ = s.Close()
		if r := <-doneStays; r.err != nil {
			t.Fatalf("the request still queued: %v", r.err)
		}
		if got := u.hits.Load() - hits; got != 1 {
			t.Errorf("upstream saw %d requests after the stream, want 1: the one whose client stayed", got)
		}
		if stays.watches.Load() != 1 || stays.watching.Load() != 0 {
			t.Errorf("client that stayed: %d watches, %d open; want 1 ended", stays.watches.Load(), stays.watching.Load())
		}
		if !b.Healthy() {
			t.Error("the target was ejected")
		}
		if n := b.pool.states[0].slots.load(); n != 0 {
			t.Errorf("%d slots taken, want 0", n)
		}
	})
	t.Run("a slot handed over as it leaves goes to the next waiter", func(t *testing.T) {
		b := newPoolBackend(t, Config{Targets: benchTargets(1), MaxConcurrency: 1,
			Queue: QueueConfig{Size: 4, Timeout: time.Minute}}, nil)
		st := b.pool.states[0]
		st.slots.n.Store(1)
		gone := newTestClient()
		var once sync.Once
		// The slot is freed, and handed to the leaving waiter, after its watch fired
		// and before it takes the queue's lock.
		gone.onUnwatch = func() { once.Do(func() { b.pool.free(0) }) }
		callGone := promptCall("gone", false)
		callGone.Client = gone
		left := make(chan error, 1)
		go func() {
			_, err := b.acquire(callGone)
			left <- err
		}()
		waitUntil(t, "the first request queues", func() bool { return b.pool.queue.waiting.Load() == 1 })
		next := acquireAsync(b)
		waitUntil(t, "the second request queues", func() bool { return b.pool.queue.waiting.Load() == 2 })
		gone.hangUp()
		if err := <-left; !errors.Is(err, ErrClientGone) {
			t.Fatalf("got %v, want ErrClientGone", err)
		}
		select {
		case l := <-next:
			if l.i != 0 {
				t.Fatalf("the next waiter got target %d, want the slot given back", l.i)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the slot handed to the leaving waiter did not go to the next one")
		}
		if n := st.slots.load(); n != 1 {
			t.Errorf("%d slots taken, want the next waiter's one", n)
		}
		if w := b.pool.queue.waiting.Load(); w != 0 {
			t.Errorf("%d still waiting", w)
		}
	})
	t.Run("a call served at once is not watched", func(t *testing.T) {
		u := startReplica(t)
		b := newPoolBackend(t, Config{BaseURL: u.url(), MaxConcurrency: 1, Queue: QueueConfig{Size: 4, Timeout: time.Minute}}, nil)
		c := newTestClient()
		call := promptCall("served", false)
		call.Client = c
		if _, err := sendOnce(b, call); err != nil {
			t.Fatal(err)
		}
		if n := c.watches.Load(); n != 0 {
			t.Errorf("%d watches for a call that never queued", n)
		}
	})
	t.Run("a call without a client waits out its queue timeout", func(t *testing.T) {
		// Without a Client the queue behaves as before: the wait runs out.
		u := startReplica(t)
		b := newPoolBackend(t, Config{BaseURL: u.url(), MaxConcurrency: 1, Queue: QueueConfig{Size: 4, Timeout: 30 * time.Millisecond}}, nil)
		_, s := openStream(t, b, "holds the slot")
		defer s.Close()
		if _, err := sendOnce(b, promptCall("unwatched", false)); !errors.Is(err, ErrOverloaded) {
			t.Fatalf("got %v, want ErrOverloaded", err)
		}
	})
}
