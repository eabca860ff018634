package router

import (
	"testing"
	"time"
)

// An operator drains route b with a weights override (until DELETE or a resume,
// README) while a three-route endpoint carries a canary. When a gate then rolls the
// canary back, the drained route stays drained: the rollback takes the canary's share
// away (spread over the other routes by their override weights), it does not undo the
// operator's override of the other routes; an override that gave the canary
// everything gives way to the configured weights.
func TestGateRollbackKeepsOverride(t *testing.T) {
	clock, r, e := threeRouteCanary(t)
	snap, err := r.SetWeights(bg, "chat", map[string]int{"a": 80, "b": 0, "c": 20})
	if err != nil {
		t.Fatal(err)
	}
	if !snap.Override || snap.Routes[1].Weight != 0 {
		t.Fatalf("override not applied: %+v", snap)
	}
	// The canary fails; the gate still judges it while the override pauses it.
	feed(e, 2, 200, 50, 10*time.Millisecond, 0)
	clock.Advance(5 * time.Second)
	r.tick(bg)
	snap, err = r.EndpointSnapshot("chat")
	if err != nil {
		t.Fatal(err)
	}
	if snap.Canary.State != StateRolledBack || snap.Routes[2].Weight != 0 {
		t.Fatalf("canary not rolled back: %+v", snap.Canary)
	}
	if snap.Routes[1].Weight != 0 {
		t.Errorf("the gate's rollback undid the operator's override: drained route b is back at %v %% (a %v %%), override=%v",
			snap.Routes[1].Weight, snap.Routes[0].Weight, snap.Override)
	}
	for _, route := range assignments(e, userKeys(5000)) {
		if route == 1 {
			t.Errorf("users are sent to route b, which the operator drained to 0 %% with an override")
			break
		}
	}
}

// An override that gave the canary everything leaves no weights to keep once a gate
// rolls it back: the configured weights apply, with the canary at 0.
func TestGateRollbackOfAllCanaryOverride(t *testing.T) {
	clock, r, e := threeRouteCanary(t)
	if _, err := r.SetWeights(bg, "chat", map[string]int{"c": 100}); err != nil {
		t.Fatal(err)
	}
	feed(e, 2, 200, 50, 10*time.Millisecond, 0)
	clock.Advance(5 * time.Second)
	r.tick(bg)
	snap, err := r.EndpointSnapshot("chat")
	if err != nil {
		t.Fatal(err)
	}
	if snap.Canary.State != StateRolledBack || snap.Override {
		t.Fatalf("state %v, override %v: want rolled back with the override gone", snap.Canary.State, snap.Override)
	}
	if a, b, c := snap.Routes[0].Weight, snap.Routes[1].Weight, snap.Routes[2].Weight; c != 0 || a < 60 || b < 35 || a+b < 99.99 {
		t.Errorf("weights %v/%v/%v, want the configured 60/35 spread over all of it and the canary at 0", a, b, c)
	}
}

// An operator's rollback during a weights override keeps the override as a gate's
// does: the canary's share goes to the other routes by their override weights (a
// drained route stays drained), and the end of the override leaves the canary
// rolled back, under the configured weights.
func TestOperatorRollbackKeepsOverride(t *testing.T) {
	tests := []struct {
		name     string
		override map[string]int
		want     []float64 // a, b, c during the override
		keeps    bool      // the override holds after the rollback
	}{
		{"drained route stays drained", map[string]int{"a": 0, "b": 90, "c": 10}, []float64{0, 100, 0}, true},
		{"share spread by override weights", map[string]int{"a": 60, "b": 20, "c": 20}, []float64{75, 25, 0}, true},
		{"all-canary override gives way to the config", map[string]int{"c": 100}, []float64{6000.0 / 95, 3500.0 / 95, 0}, false},
	}
	for _, tt := range tests {
		for _, how := range overrideEnds {
			t.Run(tt.name+", "+how.name, func(t *testing.T) {
				clock, r, live := threeRouteCanary(t)
				if _, err := r.SetWeights(bg, "chat", tt.override); err != nil {
					t.Fatal(err)
				}
				snap, err := r.Rollback(bg, "chat")
				if err != nil {
					t.Fatal(err)
				}
				if snap.Canary.State != StateRolledBack || snap.Override != tt.keeps {
					t.Fatalf("after the rollback: %s, override %v; want rolled_back, override %v", snap.Canary.State, snap.Override, tt.keeps)
				}
				for i, w := range tt.want {
					if got := snap.Routes[i].Weight; got < w-0.01 || got > w+0.01 {
						t.Errorf("route %s at %v %%, want %v %%", snap.Routes[i].Backend, got, w)
					}
				}
				clock.Advance(time.Hour)
				r.tick(bg)
				how.end(t, r, live, *live.Config())
				snap, _ = r.EndpointSnapshot("chat")
				if snap.Override || snap.Canary.State != StateRolledBack || snap.Routes[2].Weight != 0 {
					t.Errorf("after the override ended: override %v, canary %s at %v %%, want rolled_back at 0 %% under the config",
						snap.Override, snap.Canary.State, snap.Routes[2].Weight)
				}
			})
		}
	}
}

// Rolling back a canary already rolled back changes nothing: the first rollback's
// reason (the gate that fired) and window start stay, and no event is recorded.
func TestRollbackOfRolledBackIsNoOp(t *testing.T) {
	tests := []struct {
		name  string
		first func(clock *fakeClock, r *Router, e *Endpoint)
	}{
		{"by a gate", func(clock *fakeClock, r *Router, e *Endpoint) {
			feed(e, 2, 200, 50, 10*time.Millisecond, 0)
			clock.Advance(5 * time.Second)
			r.tick(bg)
		}},
		{"by a gate during an override", func(clock *fakeClock, r *Router, e *Endpoint) {
			if _, err := r.SetWeights(bg, "chat", map[string]int{"a": 0, "b": 90, "c": 10}); err != nil {
				t.Fatal(err)
			}
			feed(e, 2, 200, 50, 10*time.Millisecond, 0)
			clock.Advance(5 * time.Second)
			r.tick(bg)
		}},
		{"by an operator", func(_ *fakeClock, r *Router, _ *Endpoint) {
			if _, err := r.Rollback(bg, "chat"); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock, r, e := threeRouteCanary(t)
			tt.first(clock, r, e)
			before, _ := r.EndpointSnapshot("chat")
			if before.Canary.State != StateRolledBack {
				t.Fatalf("canary %s, want rolled_back", before.Canary.State)
			}
			clock.Advance(time.Minute)
			after, err := r.Rollback(bg, "chat")
			if err != nil {
				t.Fatal(err)
			}
			if after.Canary.State != StateRolledBack || after.Canary.Reason != before.Canary.Reason ||
				!after.Canary.WindowStart.Equal(before.Canary.WindowStart) || after.Override != before.Override {
				t.Errorf("second rollback changed the state: reason %q -> %q, window %v -> %v, override %v -> %v",
					before.Canary.Reason, after.Canary.Reason, before.Canary.WindowStart, after.Canary.WindowStart,
					before.Override, after.Override)
			}
			for i := range before.Routes {
				if before.Routes[i].Weight != after.Routes[i].Weight {
					t.Errorf("route %s moved from %v %% to %v %%", before.Routes[i].Backend, before.Routes[i].Weight, after.Routes[i].Weight)
				}
			}
		})
	}
}

// threeRouteCanary is a router, on a fake clock, with one endpoint of three routes a
// 60, b 35 and canary c 5.
func threeRouteCanary(t *testing.T) (*fakeClock, *Router, *Endpoint) {
	t.Helper()
	clock := newFakeClock()
	r := New(Options{Now: clock.Now})
	e := threeRouteEndpoint(t)
	r.Apply([]*Endpoint{e})
	return clock, r, e
}

// threeRouteEndpoint is the endpoint threeRouteCanary routes, built afresh as a reload
// builds it.
func threeRouteEndpoint(t *testing.T) *Endpoint {
	t.Helper()
	return mustEndpoint(t, "chat", Config{
		Routes: []Route{{Backend: "a", Weight: 60}, {Backend: "b", Weight: 35}, {Backend: "c", Weight: 5}},
		Sticky: &Sticky{From: StickyUser},
		Canary: &Canary{Backend: "c", Interval: time.Minute, MinRequests: 100, MaxErrorRate: rate(0.01)},
	})
}
