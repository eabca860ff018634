package router

import (
	"testing"
	"time"
)

// A weights override holds across reloads that keep the endpoint's routes: a renewed
// TLS certificate, an edit to another endpoint or to the canary's gates reloads the
// whole config, and must not send traffic back to a backend an operator drained. Only
// ClearWeights or a resume ends it.
func TestOverrideHoldsAcrossReloads(t *testing.T) {
	tests := []struct {
		name string
		cfg  func() Config
	}{
		{"with a canary", func() Config { return canaryConfig(gatedCanary()) }},
		{"without a canary", func() Config {
			c := canaryConfig(gatedCanary())
			c.Canary = nil
			return c
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			r := New(Options{Now: clock.Now})
			r.Apply([]*Endpoint{mustEndpoint(t, "chat", tt.cfg())})
			if _, err := r.SetWeights(bg, "chat", map[string]int{"llama": 100, "llama-v2": 0}); err != nil {
				t.Fatal(err)
			}
			before := r.Changes()
			other := mustEndpoint(t, "embed", Config{Routes: []Route{{Backend: "gpt", Weight: 100}}})
			live := mustEndpoint(t, "chat", tt.cfg())
			r.Apply([]*Endpoint{live, other})
			retuned := tt.cfg()
			if retuned.Canary != nil {
				retuned.Canary.MaxP99 += time.Second
			}
			retuned.Fallbacks = nil
			live = mustEndpoint(t, "chat", retuned)
			r.Apply([]*Endpoint{live, other})
			s, _ := r.EndpointSnapshot("chat")
			if !s.Override || s.Routes[0].Weight != 100 || s.Routes[1].Weight != 0 {
				t.Fatalf("after reloads keeping the routes: override %v, weights %v / %v; want the override's 100 / 0",
					s.Override, s.Routes[0].Weight, s.Routes[1].Weight)
			}
			var p Plan
			for _, k := range userKeys(200) {
				live.Plan(k, time.Now(), &p)
				if p.Targets[0].Name != "llama" {
					t.Fatalf("a user planned to %s, the backend the override drained", p.Targets[0].Name)
				}
			}
			if r.Changes() == before {
				t.Fatal("the new endpoint did not count as a change")
			}

			if _, err := r.ClearWeights(bg, "chat"); err != nil {
				t.Fatal(err)
			}
			s, _ = r.EndpointSnapshot("chat")
			if s.Override || s.Routes[0].Weight != 95 || s.Routes[1].Weight != 5 {
				t.Fatalf("after ClearWeights: override %v, weights %v / %v; want the config's 95 / 5",
					s.Override, s.Routes[0].Weight, s.Routes[1].Weight)
			}
			if s.Canary != nil && (s.Canary.State != StateStepping || s.Canary.Reason != "override ended by operator") {
				t.Fatalf("after ClearWeights: canary %+v, want stepping, ended by the operator", s.Canary)
			}
		})
	}
}

// ClearWeights on an endpoint without an override changes nothing: the canary keeps
// the reason and window of its last change, and no change is counted.
func TestClearWeightsWithoutOverrideIsNoOp(t *testing.T) {
	clock := newFakeClock()
	r := New(Options{Now: clock.Now})
	r.Apply([]*Endpoint{mustEndpoint(t, "chat", canaryConfig(gatedCanary()))})
	if _, err := r.Pause(bg, "chat"); err != nil {
		t.Fatal(err)
	}
	before, _ := r.EndpointSnapshot("chat")
	changes := r.Changes()
	clock.Advance(time.Minute)
	s, err := r.ClearWeights(bg, "chat")
	if err != nil {
		t.Fatal(err)
	}
	if s.Override || s.Canary.State != StatePaused || s.Canary.Reason != before.Canary.Reason || !s.Canary.WindowStart.Equal(before.Canary.WindowStart) {
		t.Fatalf("ClearWeights without an override: %+v, want %+v unchanged", s.Canary, before.Canary)
	}
	if r.Changes() != changes {
		t.Fatal("ClearWeights without an override counted a change")
	}
	if _, err := r.ClearWeights(bg, "nope"); err == nil {
		t.Fatal("ClearWeights on an unknown endpoint succeeded")
	}
}
