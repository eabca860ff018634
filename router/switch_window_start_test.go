package router

import (
	"testing"
	"time"
)

// A step's window begins at the instant its weights take effect, not when the
// leader decided it: the attempts the replicas observe in between were served at
// the weights before the step, and judge neither the new step nor its window
// (README, A/B variants and canaries). Here they fail half the time: counted in the
// new window, they would roll the canary back on traffic served at the old share.
func TestSwitchWindowStartsAtInstant(t *testing.T) {
	for _, tc := range []struct {
		name string
		// flushEarly has the replicas tick between the decision and the instant,
		// so the attempts reach Redis before it; otherwise the first tick after
		// the instant flushes them.
		flushEarly bool
	}{
		{"flushed before the instant", true},
		{"flushed by the first tick after the instant", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t)
			a, b := c.replica("a", sharedCanary()), c.replica("b", sharedCanary())
			a.r.tick(bg) // a leads
			round(a, b)
			feed(a.e, 1, 200, 0, 100*time.Millisecond, 0)
			c.clock.Advance(time.Minute)
			round(a, b)
			weightsAgree(t, "after the step", 10, a, b)
			at := switchAt(t, a)

			for _, x := range []*replica{a, b} {
				observeArrived(x.e, 1, 100, 50, c.clock.Now())
			}
			if tc.flushEarly {
				round(a, b)
			}
			c.clock.Advance(at.Sub(c.clock.Now()) + 100*time.Millisecond)
			round(a, b)
			round(a, b)

			for i, x := range []*replica{a, b} {
				s := canaryOf(t, x.r, "chat")
				if s.State != StateStepping || s.Weight != 10 {
					t.Fatalf("replica %d: canary %s at %v %% (%s), want stepping at 10 %%: judged on the attempts served before the step took effect",
						i, s.State, s.Weight, s.Reason)
				}
				if !s.WindowStart.Equal(at) {
					t.Errorf("replica %d: window starts at %v, want the step's instant %v", i, s.WindowStart, at)
				}
				if s.Window.Requests != 0 {
					t.Errorf("replica %d: its window counts %d attempts observed before the step took effect, want 0",
						i, s.Window.Requests)
				}
			}
			if s := canaryOf(t, a.r, "chat"); s.Cluster == nil || s.Cluster.Requests != 0 {
				t.Errorf("the leader's merged window %+v, want none of the attempts observed before the instant", s.Cluster)
			}

			// The new step is judged on what it serves from its instant on.
			for _, x := range []*replica{a, b} {
				feed(x.e, 1, 60, 0, 100*time.Millisecond, 0)
			}
			round(a, b)
			if s := canaryOf(t, a.r, "chat"); s.Cluster == nil || s.Cluster.Requests != 120 {
				t.Errorf("the leader's merged window %+v, want the 120 attempts served after the instant", s.Cluster)
			}
			c.clock.Advance(time.Minute)
			round(a, b)
			weightsAgree(t, "after the next interval", 25, a, b)
		})
	}
}
