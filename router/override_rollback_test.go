package router

import (
	"testing"
	"time"
)

// An operator drains route b with a weights override ("until the next reload",
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
			t.Errorf("users are sent to route b, which the operator drained to 0 %% until the next reload")
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

// threeRouteCanary is a router, on a fake clock, with one endpoint of three routes a
// 60, b 35 and canary c 5.
func threeRouteCanary(t *testing.T) (*fakeClock, *Router, *Endpoint) {
	t.Helper()
	clock := newFakeClock()
	r := New(Options{Now: clock.Now})
	e := mustEndpoint(t, "chat", Config{
		Routes: []Route{{Backend: "a", Weight: 60}, {Backend: "b", Weight: 35}, {Backend: "c", Weight: 5}},
		Sticky: &Sticky{From: StickyUser},
		Canary: &Canary{Backend: "c", Interval: time.Minute, MinRequests: 100, MaxErrorRate: rate(0.01)},
	})
	r.Apply([]*Endpoint{e})
	return clock, r, e
}
