package router

import "testing"

// A canary brought back by an operator at 100 % (a resume, or the end of an
// override, after an override that gave it all the traffic) is promoted, as the
// controller's own last step makes it: README says "at 100 % it is promoted", and a
// canary left stepping there would have one gate breach take every user off it.
func TestCanaryBackAtFullWeightIsPromoted(t *testing.T) {
	for _, tc := range []struct {
		name string
		do   func(*Router) (EndpointSnapshot, error)
	}{
		{"resume", func(r *Router) (EndpointSnapshot, error) { return r.Resume(bg, "chat") }},
		{"override ended", func(r *Router) (EndpointSnapshot, error) { return r.ClearWeights(bg, "chat") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			r := New(Options{Now: clk.Now})
			r.Apply([]*Endpoint{mustEndpoint(t, "chat", canaryConfig(gatedCanary()))})
			if _, err := r.SetWeights(bg, "chat", map[string]int{"stable": 0, "canary": 100}); err != nil {
				t.Fatal(err)
			}
			snap, err := tc.do(r)
			if err != nil {
				t.Fatal(err)
			}
			if snap.Canary.Weight != 100 || snap.Canary.State != StatePromoted {
				t.Fatalf("%s at 100 %%: state %s weight %v, want promoted at 100", tc.name, snap.Canary.State, snap.Canary.Weight)
			}
		})
	}
}
