package router

import (
	"testing"
)

// A change that moves no weight (a pause, an override ended at the weights it held)
// routes nobody differently: it is in force at once on every replica as it reads it,
// the view shows nothing pending, and an operator's call right after it is written
// at once, not held for an instant no view shows.
func TestSwitchChangeOfNoWeightTakesNoInstant(t *testing.T) {
	c := newCluster(t)
	a, b := c.replica("a", sharedCanary()), c.replica("b", sharedCanary())
	a.r.tick(bg) // a leads
	round(a, b)
	s, err := b.r.Pause(bg, "chat")
	if err != nil {
		t.Fatal(err)
	}
	if s.SwitchAt != nil || s.PendingWeights != nil {
		t.Fatalf("a pause shows a change pending: switch_at %v, pending_weights %v", s.SwitchAt, s.PendingWeights)
	}
	round(a, b)
	for i, x := range []*replica{a, b} {
		s, _ := x.r.EndpointSnapshot("chat")
		if s.Canary.State != StatePaused || s.SwitchAt != nil {
			t.Fatalf("replica %d after reading the pause: canary %s, switch_at %v; want paused, none", i, s.Canary.State, s.SwitchAt)
		}
	}
	before := c.clock.Now()
	if _, err := a.r.Rollback(bg, "chat"); err != nil {
		t.Fatal(err)
	}
	if waited := c.clock.Now().Sub(before); waited != 0 {
		t.Fatalf("the rollback after a pause waited %v for the pause's instant", waited)
	}
	if at := switchAt(t, a); !at.Equal(before.Add(switchDelay)) {
		t.Fatalf("rollback switches at %v, want %v", at, before.Add(switchDelay))
	}
}
