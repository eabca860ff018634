package router

import (
	"strings"
	"testing"
	"time"
)

// A first token whose stream has no verdict (its client went away) counts toward the
// TTFT gate, and as no attempt: such streams alone never earn the canary a step, and
// slow first tokens among them still roll it back.
func TestObserveTTFTFeedsOnlyTheTTFTGate(t *testing.T) {
	tests := []struct {
		name     string
		attempts int
		ttfts    int
		ttft     time.Duration
		state    CanaryState
		weight   float64
		reason   string
	}{
		{"first tokens alone earn no step", 0, 200, 100 * time.Millisecond, StateStepping, 5, "configured"},
		{"first tokens with enough attempts step", 100, 200, 100 * time.Millisecond, StateStepping, 10, "healthy interval"},
		{"slow first tokens roll back", 100, 200, 2 * time.Second, StateRolledBack, 0, "ttft p99"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			r := New(Options{Now: clock.Now})
			e := mustEndpoint(t, "chat", canaryConfig(gatedCanary()))
			r.Apply([]*Endpoint{e})
			feed(e, 1, tt.attempts, 0, 100*time.Millisecond, 100*time.Millisecond)
			for range tt.ttfts {
				e.ObserveTTFT(1, clock.Now(), tt.ttft)
			}
			w := canaryOf(t, r, "chat").Window
			if w.Requests != uint64(tt.attempts) || w.Errors != 0 {
				t.Fatalf("window %d attempts, %d errors; want %d, 0", w.Requests, w.Errors, tt.attempts)
			}
			if w.TTFTP99 < tt.ttft*9/10 {
				t.Fatalf("window ttft p99 %v, want about %v", w.TTFTP99, tt.ttft)
			}
			clock.Advance(time.Minute)
			r.tick(bg)
			c := canaryOf(t, r, "chat")
			if c.State != tt.state || c.Weight != tt.weight || !strings.Contains(c.Reason, tt.reason) {
				t.Errorf("canary %s at %v %% (%s), want %s at %v %% (%s)", c.State, c.Weight, c.Reason, tt.state, tt.weight, tt.reason)
			}
		})
	}
}
