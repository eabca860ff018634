package router

import (
	"strings"
	"testing"
	"time"
)

// The admin view's note on an override says how long it lasts: until the operator
// ends it, across reloads that keep the endpoint's routes.
func TestOverrideNoteNamesItsEnd(t *testing.T) {
	r := New(Options{Now: newFakeClock().Now})
	r.Apply([]*Endpoint{mustEndpoint(t, "chat", canaryConfig(gatedCanary()))})
	if _, err := r.SetWeights(bg, "chat", map[string]int{"stable": 100, "canary": 0}); err != nil {
		t.Fatal(err)
	}
	r.Apply([]*Endpoint{mustEndpoint(t, "chat", canaryConfig(gatedCanary()))})
	s, err := r.EndpointSnapshot("chat")
	if err != nil {
		t.Fatal(err)
	}
	if !s.Override || !strings.Contains(s.Note, "DELETE") || !strings.Contains(s.Note, "resume") || strings.Contains(s.Note, "next config reload") {
		t.Fatalf("override %v with note %q; want it live after the reload, the note naming DELETE and resume", s.Override, s.Note)
	}
}

// A gate rolls the canary back while an operator's override holds the endpoint; the
// operator then ends the override. The canary stays rolled back, and its reason and
// window stay the gate's: ending the override did not change its state.
func TestClearWeightsKeepsGateRollbackReason(t *testing.T) {
	clock := newFakeClock()
	r := New(Options{Now: clock.Now})
	e := mustEndpoint(t, "chat", canaryConfig(gatedCanary()))
	r.Apply([]*Endpoint{e})
	if _, err := r.SetWeights(bg, "chat", map[string]int{"stable": 80, "canary": 20}); err != nil {
		t.Fatal(err)
	}
	feed(e, 1, 200, 50, 10*time.Millisecond, 0) // 25 % errors: above the 1 % gate
	clock.Advance(5 * time.Second)
	r.tick(bg)
	before := canaryOf(t, r, "chat")
	if before.State != StateRolledBack || !strings.Contains(before.Reason, "error rate") {
		t.Fatalf("canary %s (%q), want rolled back by the error-rate gate", before.State, before.Reason)
	}
	clock.Advance(time.Minute)
	s, err := r.ClearWeights(bg, "chat")
	if err != nil {
		t.Fatal(err)
	}
	if s.Override || s.Canary.State != StateRolledBack {
		t.Fatalf("after the end of the override: override %v, canary %s; want no override, still rolled back", s.Override, s.Canary.State)
	}
	if s.Canary.Reason != before.Reason || !s.Canary.WindowStart.Equal(before.WindowStart) {
		t.Fatalf("after the end of the override the canary's reason is %q from %v; want the gate's, %q from %v",
			s.Canary.Reason, s.Canary.WindowStart, before.Reason, before.WindowStart)
	}
}

// overriddenPair is two replicas sharing one Redis, with an operator's override
// (stable 80, canary 20) set on b and followed by both.
func overriddenPair(t *testing.T) (*cluster, *replica, *replica) {
	t.Helper()
	c := newCluster(t)
	a, b := c.replica("a", sharedCanary()), c.replica("b", sharedCanary())
	a.r.tick(bg)
	round(a, b)
	if _, err := b.r.SetWeights(bg, "chat", map[string]int{"stable": 80, "canary": 20}); err != nil {
		t.Fatal(err)
	}
	round(a, b)
	overrideAgrees(t, "override set", 20, a, b)
	return c, a, b
}

func overrideAgrees(t *testing.T, step string, canary float64, rs ...*replica) {
	t.Helper()
	for i, x := range rs {
		s, err := x.r.EndpointSnapshot("chat")
		if err != nil {
			t.Fatal(err)
		}
		if !s.Override || decidedWeight(s) != canary {
			t.Fatalf("%s: replica %d has override %v, canary %s at %v %% (%q); want the operator's override, canary at %v %%",
				step, i, s.Override, s.Canary.State, decidedWeight(s), s.Canary.Reason, canary)
		}
	}
}

// A change of canary settings rolled out one replica at a time (a ConfigMap reaches
// each pod up to a minute apart), one of them cut off from Redis meanwhile, keeps the
// override on every replica; one the operator sets during the rollout holds too, and
// the operator's end of it on any replica ends it on all.
func TestOverrideHoldsAcrossRollingReload(t *testing.T) {
	_, a, b := overriddenPair(t)

	heal := cutOff(t, a)
	a.e = mustEndpoint(t, "chat", retunedCanary())
	a.r.Apply([]*Endpoint{a.e})
	round(a, b)
	overrideAgrees(t, "a reloaded, cut off", 20, a, b)
	if _, err := b.r.SetWeights(bg, "chat", map[string]int{"stable": 70, "canary": 30}); err != nil {
		t.Fatal(err)
	}
	b.e = mustEndpoint(t, "chat", retunedCanary())
	b.r.Apply([]*Endpoint{b.e})
	round(a, b)
	overrideAgrees(t, "second override set, b reloaded", 30, b)
	if !a.r.shared.failing.Load() {
		t.Fatal("a reached Redis while cut off")
	}
	heal()
	round(a, b)
	round(a, b)
	overrideAgrees(t, "a reaches Redis again", 30, a, b)

	clearWeights(t, a.r, "chat")
	round(a, b)
	round(a, b)
	for i, x := range []*replica{a, b} {
		if s, _ := x.r.EndpointSnapshot("chat"); s.Override || s.Canary.State != StateStepping || decidedWeight(s) != 30 {
			t.Fatalf("replica %d after the end of the override: override %v, canary %s at %v %%; want stepping on from 30 %%",
				i, s.Override, s.Canary.State, decidedWeight(s))
		}
	}
}

// Replicas replaced by ones started with new canary settings (a Kubernetes rollout;
// each new replica syncs from Redis before it serves) route by the override as the
// old ones did: as with a reload, only the operator ends it.
func TestOverrideHoldsAcrossRestartRollout(t *testing.T) {
	c, a, b := overriddenPair(t)

	a.r.shared.release(bg, a.r.live())
	b.r.shared.release(bg, b.r.live())
	a2, b2 := c.replica("a2", retunedCanary()), c.replica("b2", retunedCanary())
	for _, x := range []*replica{a2, b2} {
		if err := x.r.Sync(bg); err != nil {
			t.Fatal(err)
		}
	}
	overrideAgrees(t, "new replicas synced", 20, a2, b2)
	round(a2, b2)
	round(a2, b2)
	overrideAgrees(t, "new replicas running", 20, a2, b2)
}
