package router

import (
	"strings"
	"testing"
	"time"
)

// An attempt the route's backend could not send upstream (every replica out of
// service) is a failed attempt for the error-rate gate and min_requests, and takes no
// part in the latency gates: the p99 stays the upstream's.
func TestObserveUnservedCountsAsFailedAttempt(t *testing.T) {
	tests := []struct {
		name     string
		attempts int
		unserved int
		state    CanaryState
		reason   string
	}{
		{"refusals alone reach min_requests", 0, 100, StateRolledBack, "error rate"},
		{"refusals among answers breach the error rate", 100, 5, StateRolledBack, "error rate"},
		{"answers alone step", 100, 0, StateStepping, "healthy interval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			r := New(Options{Now: clock.Now})
			e := mustEndpoint(t, "chat", canaryConfig(gatedCanary()))
			r.Apply([]*Endpoint{e})
			feed(e, 1, tt.attempts, 0, 100*time.Millisecond, 0)
			for range tt.unserved {
				e.ObserveUnserved(1, clock.Now())
			}
			// Fallbacks and out-of-range routes are not the canary's.
			e.ObserveUnserved(-1, clock.Now())
			e.ObserveUnserved(7, clock.Now())
			w := canaryOf(t, r, "chat").Window
			if w.Requests != uint64(tt.attempts+tt.unserved) || w.Errors != uint64(tt.unserved) {
				t.Fatalf("window %d attempts, %d errors; want %d, %d", w.Requests, w.Errors, tt.attempts+tt.unserved, tt.unserved)
			}
			if tt.attempts > 0 && (w.P99 < 90*time.Millisecond || w.P99 > 110*time.Millisecond) {
				t.Fatalf("window p99 %v, want about the answers' 100ms", w.P99)
			}
			s, err := r.EndpointSnapshot("chat")
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Routes[1]; got.Requests != uint64(tt.attempts+tt.unserved) || got.Errors != uint64(tt.unserved) {
				t.Fatalf("route snapshot %d requests, %d errors; want %d, %d", got.Requests, got.Errors, tt.attempts+tt.unserved, tt.unserved)
			}
			clock.Advance(time.Minute)
			r.tick(bg)
			c := canaryOf(t, r, "chat")
			if c.State != tt.state || !strings.Contains(c.Reason, tt.reason) {
				t.Errorf("canary %s (%s), want %s (%s)", c.State, c.Reason, tt.state, tt.reason)
			}
		})
	}
}
