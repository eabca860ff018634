package providers

import (
	"errors"
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
