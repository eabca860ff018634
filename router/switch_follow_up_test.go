package router

import (
	"testing"
	"time"
)

// An operator's call made while a leader's step waits for its instant, read by the
// other replicas after that instant (their poll comes round every half second), must
// not take the step back there: the users it moved went to the canary at its instant
// on every replica, and stay there while the call waits for its own instant.
func TestSwitchOperationDuringPendingStepKeepsStep(t *testing.T) {
	c := newCluster(t)
	a, b, d := c.replica("a", sharedCanary()), c.replica("b", sharedCanary()), c.replica("d", sharedCanary())
	a.r.tick(bg) // a leads
	round(a, b, d)
	feed(a.e, 1, 200, 0, 100*time.Millisecond, 0)
	c.clock.Advance(time.Minute)
	a.r.tick(bg) // the step
	step := switchAt(t, a)
	b.r.tick(bg)
	d.r.tick(bg)
	moved := movedUsers(t, a, step.Add(-time.Millisecond), step)
	if len(moved) < 100 {
		t.Fatalf("%d users moved by the step, want a few hundred at least", len(moved))
	}
	c.clock.Advance(500 * time.Millisecond)
	if _, err := b.r.Pause(bg, "chat"); err != nil {
		t.Fatal(err)
	}
	if now := c.clock.Now(); now.Before(step.Add(10 * time.Millisecond)) {
		c.clock.Advance(step.Add(10 * time.Millisecond).Sub(now))
	}
	routesAt(t, "after the step's instant, before the pause is read", moved, c.clock.Now(), 1, a, b, d)
	a.r.tick(bg)
	d.r.tick(bg)
	routesAt(t, "after the pause is read", moved, c.clock.Now(), 1, a, b, d)
	for i, x := range []*replica{a, b, d} {
		s, _ := x.r.EndpointSnapshot("chat")
		if s.Canary.State != StatePaused {
			t.Fatalf("replica %d: canary %s, want paused", i, s.Canary.State)
		}
		if s.SwitchAt != nil {
			routesAt(t, "at the pause's instant", moved, *s.SwitchAt, 1, x)
		}
	}
}
