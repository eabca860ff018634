package main

import (
	"runtime"
	"time"
)

// pacer is the schedule of an open-loop constant arrival rate: request i is
// due at offset i/rate from the start, whatever happened to requests before
// it. Offsets are computed from the index, never accumulated, so rounding
// never drifts over a long run.
type pacer struct {
	rate float64 // requests per second, > 0
}

// at returns the offset from the start at which request i is due.
func (p pacer) at(i int64) time.Duration {
	return time.Duration(float64(i) * float64(time.Second) / p.rate)
}

// count returns how many requests are due in [0, d): the i with at(i) < d.
func (p pacer) count(d time.Duration) int64 {
	if d <= 0 || p.rate <= 0 {
		return 0
	}
	n := int64(float64(d) * p.rate / float64(time.Second))
	// Float rounding can put the boundary one index off either way.
	for n > 0 && p.at(n-1) >= d {
		n--
	}
	for p.at(n) < d {
		n++
	}
	return n
}

// due returns how many requests are due at elapsed time e: the i with
// at(i) <= e, capped at total.
func (p pacer) due(e time.Duration, total int64) int64 {
	if e < 0 {
		return 0
	}
	n := p.count(e + 1)
	if n > total {
		return total
	}
	return n
}

// waiter sleeps until a deadline with better precision than time.Sleep: the
// Go runtime rounds sub-millisecond timer waits up to about a millisecond,
// which would put up to 1 ms of harness jitter into every latency measured
// from the scheduled send time. A nanosleep on a locked thread wakes within
// tens of microseconds; spin, when set, busy-waits the last stretch for
// microsecond precision at the cost of a busy core.
type waiter struct {
	spin time.Duration
}

// lock binds the calling goroutine to its thread and asks the kernel for the
// least timer slack on it; call it once from the pacing goroutine.
func (w waiter) lock() {
	runtime.LockOSThread()
	leastTimerSlack()
}

// until blocks until t.
func (w waiter) until(t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	if d > w.spin {
		threadSleep(d - w.spin)
	}
	for time.Now().Before(t) {
		runtime.Gosched()
	}
}
