package router

import (
	"strings"
	"testing"
)

// A promote gives the canary all the traffic, which no operator weights for the other
// routes can stand beside: it ends the override, as a resume does, and the override's
// note, which says what ends it, names the promote with the resume.
func TestPromoteEndsOverride(t *testing.T) {
	r := New(Options{Now: newFakeClock().Now})
	r.Apply([]*Endpoint{mustEndpoint(t, "chat", canaryConfig(gatedCanary()))})
	s, err := r.SetWeights(bg, "chat", map[string]int{"stable": 70, "canary": 30})
	if err != nil {
		t.Fatal(err)
	}
	for _, verb := range []string{"DELETE", "resume", "promote"} {
		if !strings.Contains(s.Note, verb) {
			t.Errorf("override note %q does not name %s, which ends the override", s.Note, verb)
		}
	}
	s, err = r.Promote(bg, "chat")
	if err != nil {
		t.Fatal(err)
	}
	if s.Override || s.Note != "" || s.Canary.State != StatePromoted || s.Canary.Weight != 100 || s.Routes[0].Weight != 0 {
		t.Fatalf("after promote: override %v (note %q), canary %s at %v%%, stable at %v%%; want no override, promoted at 100%%",
			s.Override, s.Note, s.Canary.State, s.Canary.Weight, s.Routes[0].Weight)
	}
}
