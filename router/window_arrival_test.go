package router

import (
	"testing"
	"time"
)

// observeArrived records n attempts on route of requests that arrived at arrival,
// the first errs of them failed.
func observeArrived(e *Endpoint, route, n, errs int, arrival time.Time) {
	for i := 0; i < n; i++ {
		e.Observe(route, arrival, 100*time.Millisecond, 0, i < errs)
	}
}

// An attempt counts toward the window of the weights its request was routed by,
// which are those in force when it arrived: one that arrived before a step took
// effect and ended after the step's window opened (a slow answer of the old share)
// counts toward no window, and cannot roll back a step it was never served at
// (README, A/B variants and canaries). Here such attempts fail half the time.
func TestSwitchWindowCountsAttemptsByArrival(t *testing.T) {
	c := newCluster(t)
	a, b := c.replica("a", sharedCanary()), c.replica("b", sharedCanary())
	a.r.tick(bg) // a leads
	round(a, b)
	feed(a.e, 1, 200, 0, 100*time.Millisecond, 0)
	c.clock.Advance(time.Minute)
	round(a, b)
	weightsAgree(t, "after the step", 10, a, b)
	at := switchAt(t, a)

	// The step's window opens on both replicas: their ticks read the counters
	// after the instant.
	c.clock.Advance(at.Sub(c.clock.Now()) + 100*time.Millisecond)
	round(a, b)
	round(a, b)
	// Then the slow attempts of requests that arrived before the instant end.
	for _, x := range []*replica{a, b} {
		observeArrived(x.e, 1, 100, 50, at.Add(-time.Millisecond))
		x.e.ObserveUnserved(1, at.Add(-time.Second))
		x.e.ObserveTTFT(1, at.Add(-time.Second), 5*time.Second)
	}
	round(a, b)
	round(a, b)
	for i, x := range []*replica{a, b} {
		s, err := x.r.EndpointSnapshot("chat")
		if err != nil {
			t.Fatal(err)
		}
		cs := s.Canary
		if cs.State != StateStepping || cs.Weight != 10 {
			t.Fatalf("replica %d: canary %s at %v %% (%s), want stepping at 10 %%: judged on attempts routed before the step",
				i, cs.State, cs.Weight, cs.Reason)
		}
		if cs.Window.Requests != 0 || cs.Window.TTFTP99 != 0 {
			t.Errorf("replica %d: its window %+v counts attempts whose requests arrived before it opened, want none", i, cs.Window)
		}
		// The route's totals count every attempt all the same (a had the 200
		// of the step before too).
		if r, want := s.Routes[1], uint64(101+200*(1-i)); r.Requests != want || r.Errors != 51 {
			t.Errorf("replica %d: the canary route's totals are %d attempts, %d errors; want %d, 51", i, r.Requests, r.Errors, want)
		}
	}
	if s := canaryOf(t, a.r, "chat"); s.Cluster == nil || s.Cluster.Requests != 0 {
		t.Errorf("the leader's merged window %+v, want none of the attempts that arrived before the instant", s.Cluster)
	}

	// Requests that arrived from the instant on are the step's, however soon.
	for _, x := range []*replica{a, b} {
		observeArrived(x.e, 1, 60, 0, at)
	}
	round(a, b)
	if s := canaryOf(t, a.r, "chat"); s.Cluster == nil || s.Cluster.Requests != 120 {
		t.Errorf("the leader's merged window %+v, want the 120 attempts that arrived after the instant", s.Cluster)
	}
	c.clock.Advance(time.Minute)
	round(a, b)
	weightsAgree(t, "after the next interval", 25, a, b)
}

// Without Redis a step takes effect when it is decided, and its window opens then:
// an attempt of a request that arrived before (routed at the step before) counts
// toward neither window, the old one being closed when it ends.
func TestLocalWindowCountsAttemptsByArrival(t *testing.T) {
	clock := newFakeClock()
	r := New(Options{Now: clock.Now})
	e := mustEndpoint(t, "chat", sharedCanary())
	r.Apply([]*Endpoint{e})
	observeArrived(e, 1, 200, 0, clock.Now())
	clock.Advance(time.Minute)
	stepped := clock.Now()
	r.tick(bg)
	if s := canaryOf(t, r, "chat"); s.State != StateStepping || s.Weight != 10 || !s.WindowStart.Equal(stepped) {
		t.Fatalf("canary %s at %v %%, window from %v; want stepping at 10 %% from %v", s.State, s.Weight, s.WindowStart, stepped)
	}

	clock.Advance(2 * time.Second)
	observeArrived(e, 1, 100, 50, stepped.Add(-time.Second))
	e.ObserveUnserved(1, stepped.Add(-time.Second))
	r.tick(bg)
	s := canaryOf(t, r, "chat")
	if s.State != StateStepping || s.Weight != 10 {
		t.Fatalf("canary %s at %v %% (%s), want stepping at 10 %%: judged on attempts routed before the step",
			s.State, s.Weight, s.Reason)
	}
	if s.Window.Requests != 0 {
		t.Errorf("window %+v counts attempts whose requests arrived before it opened, want none", s.Window)
	}

	observeArrived(e, 1, 100, 50, stepped)
	r.tick(bg)
	if s := canaryOf(t, r, "chat"); s.State != StateRolledBack {
		t.Fatalf("canary %s at %v %%, want rolled back by the failures of requests that arrived at its step", s.State, s.Weight)
	}
}

// An attempt whose request arrived once a step took effect counts toward its window
// however soon after the instant it ends: before the replica's next read of its
// counters too, where the window's counts used to begin.
func TestSwitchWindowCountsAttemptsEndedBeforeFirstTick(t *testing.T) {
	c := newCluster(t)
	a, b := c.replica("a", sharedCanary()), c.replica("b", sharedCanary())
	a.r.tick(bg) // a leads
	round(a, b)
	feed(a.e, 1, 200, 0, 100*time.Millisecond, 0)
	c.clock.Advance(time.Minute)
	round(a, b)
	weightsAgree(t, "after the step", 10, a, b)
	at := switchAt(t, a)

	// Before the instant: attempts of the old share, which count toward no window.
	for _, x := range []*replica{a, b} {
		observeArrived(x.e, 1, 40, 40, c.clock.Now())
	}
	c.clock.Advance(at.Sub(c.clock.Now()) + 100*time.Millisecond)
	// After the instant, before either replica reads its counters again.
	for _, x := range []*replica{a, b} {
		observeArrived(x.e, 1, 30, 0, at.Add(50*time.Millisecond))
	}
	round(a, b)
	round(a, b)
	for i, x := range []*replica{a, b} {
		s := canaryOf(t, x.r, "chat")
		if s.State != StateStepping || s.Weight != 10 {
			t.Fatalf("replica %d: canary %s at %v %% (%s), want stepping at 10 %%", i, s.State, s.Weight, s.Reason)
		}
		if s.Window.Requests != 30 || s.Window.Errors != 0 {
			t.Errorf("replica %d: its window %+v, want the 30 attempts that arrived after the instant, none failed", i, s.Window)
		}
	}
	if s := canaryOf(t, a.r, "chat"); s.Cluster == nil || s.Cluster.Requests != 60 {
		t.Errorf("the leader's merged window %+v, want the 60 attempts that arrived after the instant", s.Cluster)
	}
}
