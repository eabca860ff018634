package providers

import (
	"errors"
	"sync"
	"testing"
	"time"
)

// queuedBehindEjection sets up a pool of two targets at max_concurrency 1, without
// active checks: target 0 ejected (eject_for 10s on clk), target 1's slot held by a
// stream, and one request waiting in the queue.
func queuedBehindEjection(t *testing.T) (*Backend, []*replica, *fakeClock, <-chan sent) {
	t.Helper()
	clk := newFakeClock()
	us := startReplicas(t, 2)
	b := newPoolBackend(t, Config{Targets: replicaURLs(us), MaxConcurrency: 1,
		Queue:  QueueConfig{Size: 4, Timeout: time.Minute},
		Health: HealthConfig{EjectAfter: 1, EjectFor: 10 * time.Second}}, poolsWithClock(clk))
	us[0].status.Store(503)
	for i := 0; i < 2 && !b.pool.states[0].ejected.Load(); i++ {
		_, _ = sendOnce(b, promptCall("e", false))
	}
	if !b.pool.states[0].ejected.Load() {
		t.Fatal("target 0 not ejected")
	}
	us[0].status.Store(200)
	us[1].stall.Store(true)
	u, s := openStream(t, b, "held")
	t.Cleanup(func() { _ = s.Close() })
	if u != us[1].url() {
		t.Fatalf("stream went to %s", u)
	}
	waiter := sendAsync(b, promptCall("waiter", false))
	waitUntil(t, "the request queues", func() bool { return b.pool.queue.waiting.Load() == 1 })
	return b, us, clk, waiter
}

// README, Replica pools: requests beyond max_concurrency wait "in arrival order: the
// oldest takes the first slot freed", and a target whose ejection has run out counts
// as healthy again and takes one trial request. Without active checks nothing but the
// end of the ejection announces that trial: the request waiting gets it then, not
// 503 upstream_overloaded once queue.timeout runs out, and a request arriving after it
// does not take it first.
func TestQueuedRequestTakesTrialOnceEjectionRunsOut(t *testing.T) {
	t.Run("the ejection's end hands the trial to the waiter", func(t *testing.T) {
		b, us, clk, waiter := queuedBehindEjection(t)
		clk.Advance(10 * time.Second)
		if h := b.Health(); !h[0].Up {
			t.Fatalf("health %+v, want target 0 up once its ejection ran out", h)
		}
		// The timer set for the ejection's end fires now that the clock is there.
		if !b.pool.trials[0].Reset(0) {
			t.Fatal("the ejection set no timer for its end")
		}
		select {
		case r := <-waiter:
			if r.err != nil || r.url != us[0].url() {
				t.Fatalf("waiter went to %q (%v), want target 0's trial", r.url, r.err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("waiter still queued while target 0, its ejection run out, sat idle")
		}
		if got := us[0].hits.Load(); got != 2 {
			t.Errorf("target 0 saw %d requests, want the failed one and the waiter", got)
		}
	})
	t.Run("a request arriving later does not take the trial first", func(t *testing.T) {
		b, us, clk, waiter := queuedBehindEjection(t)
		clk.Advance(10 * time.Second)
		later := sendAsync(b, promptCall("later", false))
		if r := <-waiter; r.err != nil || r.url != us[0].url() {
			t.Fatalf("waiter went to %q (%v), want target 0's trial", r.url, r.err)
		}
		// The trial brought target 0 back: the later request follows the waiter there.
		if r := <-later; r.err != nil {
			t.Fatalf("later request: %v", r.err)
		}
	})
}

// README, Replica pools: "A retry of a request (the endpoint's retries) goes to a
// target in service that has not failed it ... while there is one." When that target
// is at max_concurrency, the retry waits in the queue for its slot rather than going
// back to the target that just failed it (whose slot the failure freed). Only a retry
// that cannot wait (no queue, or the queue full) or waited in vain takes the failed
// target: a free slot there beats 503 upstream_overloaded.
func TestRetryWaitsForTargetThatHasNotFailedIt(t *testing.T) {
	for _, tc := range []struct {
		name  string
		queue QueueConfig
		want  int // the target the retry is sent to
	}{
		{"it waits for the target that has not failed it", QueueConfig{Size: 4, Timeout: time.Minute}, 1},
		{"without a queue it goes back to the failed target", QueueConfig{}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			us := startReplicas(t, 2)
			b := newPoolBackend(t, Config{Targets: replicaURLs(us), MaxConcurrency: 1, Queue: tc.queue,
				Health: HealthConfig{EjectAfter: 5}}, nil)
			us[1].stall.Store(true)
			u, s := openStream(t, b, "held")
			held := true
			defer func() {
				if held {
					_ = s.Close()
				}
			}()
			if u != us[1].url() {
				t.Fatalf("stream went to %s", u)
			}
			us[0].status.Store(503)
			call := promptCall("q", false)
			if url, err := sendOnce(b, call); url != us[0].url() || err == nil {
				t.Fatalf("first attempt on %s: %v, want target 0's 503", url, err)
			}
			// The retry, as the gateway makes it: the same call.
			retry := sendAsync(b, call)
			if tc.want == 1 {
				waitUntil(t, "the retry queues", func() bool { return b.pool.queue.waiting.Load() == 1 })
				if got := us[0].hits.Load(); got != 1 {
					t.Fatalf("target 0 saw %d requests, want only the first attempt", got)
				}
				_ = s.Close()
				held = false
			}
			r := <-retry
			if r.url != us[tc.want].url() {
				t.Fatalf("the retry went to %q (%v), want target %d", r.url, r.err, tc.want)
			}
			var ue *UpstreamError
			if tc.want == 1 && r.err != nil || tc.want == 0 && !errors.As(r.err, &ue) {
				t.Errorf("retry on target %d: %v", tc.want, r.err)
			}
		})
	}
}

// A retry queued for the one target that has not failed it takes a free target that
// did fail it as soon as the other leaves service, instead of waiting out its queue
// timeout for a slot nothing would hand it.
func TestRetryTakesFailedTargetOnceOthersLeaveService(t *testing.T) {
	us := startReplicas(t, 2)
	b := newPoolBackend(t, Config{Targets: replicaURLs(us), MaxConcurrency: 1,
		Queue:  QueueConfig{Size: 4, Timeout: time.Minute},
		Health: HealthConfig{Path: "/health", Interval: time.Hour, UnhealthyThreshold: 1, EjectAfter: 5}}, nil)
	us[1].stall.Store(true)
	u, s := openStream(t, b, "held")
	defer s.Close()
	if u != us[1].url() {
		t.Fatalf("stream went to %s", u)
	}
	us[0].status.Store(503)
	call := promptCall("q", false)
	if url, err := sendOnce(b, call); url != us[0].url() || err == nil {
		t.Fatalf("first attempt on %s: %v, want target 0's 503", url, err)
	}
	us[0].status.Store(200)
	retry := sendAsync(b, call)
	waitUntil(t, "the retry queues", func() bool { return b.pool.queue.waiting.Load() == 1 })
	us[1].health.Store(503)
	b.check(1) // target 1 leaves service, its stream still holding its slot
	select {
	case r := <-retry:
		if r.url != us[0].url() || r.err != nil {
			t.Fatalf("the retry went to %q (%v), want target 0's answer", r.url, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the retry still waits for a target out of service while target 0 is free")
	}
}

// A retry handed a slot on the one target that had not failed it, which left service
// before the retry woke up, is put back in the queue: with no target that has not
// failed it in service, it takes the free slot of one that did at once, as at its
// first try, instead of waiting out queue.timeout. The window between the hand-over
// and the waiter's check is held open in the client's Unwatch, which runs in it.
func TestRetryPutBackTakesFailedTargetOnceOthersLeftService(t *testing.T) {
	b := newPoolBackend(t, Config{Targets: benchTargets(2), MaxConcurrency: 1,
		Queue:  QueueConfig{Size: 4, Timeout: time.Minute},
		Health: HealthConfig{EjectAfter: 5, EjectFor: time.Minute}}, nil)
	p := &b.pool
	// Target 1's slot is held by a request in flight; target 0 is free.
	p.states[1].slots.n.Store(1)

	call := promptCall("retry", false)
	// The call's first attempt failed on target 0: this is its retry.
	call.failedOn = b
	call.failed.add(0)
	woke := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	cl := newTestClient()
	cl.onUnwatch = func() {
		once.Do(func() {
			close(woke)
			<-release
		})
	}
	call.Client = cl
	done := make(chan acquired, 1)
	go func() {
		l, err := b.acquire(call)
		done <- acquired{l, err}
	}()
	waitUntil(t, "the retry queues", func() bool { return p.queue.waiting.Load() == 1 })
	if n := p.states[0].slots.load(); n != 0 {
		t.Fatalf("target 0 has %d in flight, want 0: the retry should wait for target 1", n)
	}

	// The request on target 1 ends: its slot is handed to the retry.
	p.free(1)
	select {
	case <-woke:
	case <-time.After(3 * time.Second):
		t.Fatal("the retry was not handed target 1's freed slot")
	}
	// Before the retry looks at its slot, target 1 leaves service (a failed request
	// elsewhere, or an active check finding it down).
	p.states[1].eject(p.now(), &p.set, false)
	close(release)

	select {
	case r := <-done:
		if r.err != nil || r.l.i != 0 {
			t.Fatalf("the retry got %+v, %v; want target 0's free slot", r.l, r.err)
		}
		p.free(r.l.i)
	case <-time.After(2 * time.Second):
		cl.hangUp()
		r := <-done
		t.Fatalf("the retry still waits (queue.timeout 1m) while target 0 has a free slot and "+
			"target 1, the only one that had not failed it, left service; it ended with %+v, %v once its client left", r.l, r.err)
	}
	if n0, n1 := p.states[0].slots.load(), p.states[1].slots.load(); n0 != 0 || n1 != 0 {
		t.Errorf("slots in flight after: %d, %d; want 0, 0", n0, n1)
	}
}

// The same across a reload that adds target C: a retry of the new backend that failed
// on C waits for A, held by a request of the replaced backend, which fails and ejects
// A. The replaced backend's free offers the waiters' own targets, C included, so the
// retry takes C's free slot at once.
func TestRetryAcrossReloadTakesAddedTargetOnceOthersLeftService(t *testing.T) {
	ps := NewPools()
	urls := benchTargets(2) // A, C
	old := newPoolBackend(t, Config{Targets: urls[:1], MaxConcurrency: 1,
		Queue:  QueueConfig{Size: 4, Timeout: time.Minute},
		Health: HealthConfig{EjectAfter: 1, EjectFor: time.Minute}}, ps)
	old.Activate()
	held, err := old.acquire(promptCall("held", true))
	if err != nil || held.i != 0 {
		t.Fatalf("held: %+v %v", held, err)
	}
	// The reload: A kept, C added.
	cur := newPoolBackend(t, Config{Targets: urls, MaxConcurrency: 1,
		Queue:  QueueConfig{Size: 4, Timeout: time.Minute},
		Health: HealthConfig{EjectAfter: 1, EjectFor: time.Minute}}, ps)
	cur.Activate()
	if cur.pool.states[0] != old.pool.states[0] {
		t.Fatal("target A's state is not shared across the reload")
	}

	call := promptCall("retry", false)
	call.failedOn = cur // its first attempt failed on C
	call.failed.add(1)
	cl := newTestClient()
	call.Client = cl
	done := make(chan acquired, 1)
	go func() {
		l, err := cur.acquire(call)
		done <- acquired{l, err}
	}()
	waitUntil(t, "the retry queues", func() bool { return cur.pool.queue.waiting.Load() == 1 })

	// The replaced backend's request on A fails (a 502): A is ejected, its slot freed.
	var res Result
	_ = old.settle(held, &UpstreamError{Status: 502}, &res)
	if !res.Failed || cur.pool.states[0].available() {
		t.Fatalf("A not ejected by the failure (failed %v, available %v)", res.Failed, cur.pool.states[0].available())
	}

	select {
	case r := <-done:
		if r.err != nil || r.l.i != 1 {
			t.Fatalf("the retry got %+v, %v; want target C's free slot", r.l, r.err)
		}
		cur.pool.free(r.l.i)
	case <-time.After(2 * time.Second):
		cl.hangUp()
		r := <-done
		if !errors.Is(r.err, ErrClientGone) && r.err == nil {
			cur.pool.free(r.l.i)
		}
		t.Fatalf("the retry still waits (queue.timeout 1m) though A, the only target that had not "+
			"failed it, left service and C has a free slot; ended %+v, %v once its client left", r.l, r.err)
	}
}
