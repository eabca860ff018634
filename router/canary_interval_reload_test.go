package router

import (
	"testing"
	"time"
)

// A reload that changes canary.interval mid-window keeps the window (its counts do
// not depend on the interval) but not the slots the gates' recent span is read from,
// whose length follows the interval: the recent span after the reload counts only
// the attempts recorded under the new slot length. Read by the new length's
// indexes, the old length's slots hold traffic from other times: here 60 attempts
// failing 10 % half a minute in, too few to judge then, would be summed
// with 60 healthy ones after the reload into 120 "recent" attempts at 5 % and roll a
// healthy canary back (max_error_rate 2 %, min_requests 100).
func TestCanaryIntervalReloadReadsItsOwnSlots(t *testing.T) {
	cfg := func(interval time.Duration) Config {
		return canaryConfig(Canary{Interval: interval, MinRequests: 100, MaxErrorRate: rate(0.02), MaxP99: time.Second})
	}
	c := newCluster(t)
	a, b := c.replica("a", cfg(time.Minute)), c.replica("b", cfg(time.Minute))
	a.r.tick(bg)
	round(a, b)
	start := canaryOf(t, a.r, "chat").WindowStart
	at := func(d time.Duration) { c.clock.Advance(start.Add(d).Sub(c.clock.Now())) }

	at(5 * time.Second)
	feed(b.e, 1, 2000, 0, 100*time.Millisecond, 0)
	round(a, b)
	at(30 * time.Second) // slot 2 of 12 s slots
	feed(b.e, 1, 60, 6, 100*time.Millisecond, 0)
	round(a, b)
	weightsAgree(t, "60 failing attempts, too few to judge alone", 5, a, b)

	at(54 * time.Second)
	for _, x := range []*replica{a, b} {
		x.e = mustEndpoint(t, "chat", cfg(2*time.Minute)) // 24 s slots
		x.r.Apply([]*Endpoint{x.e})
	}
	at(60 * time.Second) // slot 2 of 24 s slots
	feed(b.e, 1, 60, 0, 100*time.Millisecond, 0)
	round(a, b)
	round(a, b)
	for i, x := range []*replica{a, b} {
		if s := canaryOf(t, x.r, "chat"); s.State != StateStepping || s.Weight != 5 {
			t.Fatalf("replica %d after the reload: canary %s at %v %% (%s); want stepping at 5 %%, the window healthy and "+
				"its recent span too few attempts to judge", i, s.State, s.Weight, s.Reason)
		}
	}
	if s := canaryOf(t, a.r, "chat"); s.ClusterRecent == nil || s.ClusterRecent.Requests != 60 || s.ClusterRecent.Errors != 0 {
		t.Fatalf("the leader's recent span after the reload: %+v, want the 60 healthy attempts recorded since", s.ClusterRecent)
	}

	// The step waits for the new interval, counted from the window's start.
	at(110 * time.Second)
	round(a, b)
	weightsAgree(t, "110 s into a 2-minute interval", 5, a, b)
	at(2 * time.Minute)
	round(a, b)
	weightsAgree(t, "after the new interval", 10, a, b)
}
