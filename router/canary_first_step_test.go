package router

import (
	"testing"
	"time"
)

// homeAboveFirstStep is stable 80 / canary 20 with the default steps (5, 10, 25, 50, 75,
// 100): the canary's configured weight is not its first step.
func homeAboveFirstStep() Config {
	c := canaryConfig(gatedCanary())
	c.Routes[0].Weight, c.Routes[1].Weight = 80, 20
	c.Fallbacks = nil
	return c
}

// A canary drained to 0 % (a weights override, a rollback) that steps again starts
// over at its first step, 5 %, not at its configured 20 %: the operator who drained it
// is told (README, the admin API's answers) that it comes back at the least traffic
// its steps give.
func TestCanaryDrainedRestartsAtFirstStep(t *testing.T) {
	tests := []struct {
		name  string
		drain func(t *testing.T, r *Router, e *Endpoint, clock *fakeClock)
		again func(t *testing.T, r *Router)
	}{
		{"resume after a 0 % override", drainByOverride, resume},
		{"end of a 0 % override", drainByOverride, func(t *testing.T, r *Router) {
			clearWeights(t, r, "chat")
		}},
		{"resume after a gate's rollback", func(t *testing.T, r *Router, e *Endpoint, clock *fakeClock) {
			feed(e, 1, 200, 20, 100*time.Millisecond, 0)
			clock.Advance(time.Second)
			r.tick(bg)
			if c := canaryOf(t, r, "chat"); c.State != StateRolledBack {
				t.Fatalf("canary %s at %v %%, want rolled_back", c.State, c.Weight)
			}
		}, resume},
		{"resume after an operator's rollback", func(t *testing.T, r *Router, _ *Endpoint, _ *fakeClock) {
			if _, err := r.Rollback(bg, "chat"); err != nil {
				t.Fatal(err)
			}
		}, resume},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			r := New(Options{Now: clock.Now})
			e := mustEndpoint(t, "chat", homeAboveFirstStep())
			r.Apply([]*Endpoint{e})
			if c := canaryOf(t, r, "chat"); c.Weight != 20 {
				t.Fatalf("fresh canary at %v %%, want its configured 20 %%", c.Weight)
			}
			tt.drain(t, r, e, clock)
			tt.again(t, r)
			if c := canaryOf(t, r, "chat"); c.State != StateStepping || c.Weight != 5 {
				t.Errorf("%s at %v %% (step %d of %v), want stepping at its first step, 5 %%", c.State, c.Weight, c.Step, c.Steps)
			}
		})
	}
}

func drainByOverride(t *testing.T, r *Router, _ *Endpoint, _ *fakeClock) {
	if _, err := r.SetWeights(bg, "chat", map[string]int{"stable": 100, "canary": 0}); err != nil {
		t.Fatal(err)
	}
}

func resume(t *testing.T, r *Router) {
	if _, err := r.Resume(bg, "chat"); err != nil {
		t.Fatal(err)
	}
}
