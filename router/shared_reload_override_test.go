package router

import "testing"

// An operation sent to a replica whose reload (new canary settings) ended an override, before its next tick
// has written that end to Redis, applies to the shared state with the override ended:
// the reload's end is not undone on that replica, and reaches every replica with the
// operation.
func TestSharedOperationAfterReloadEndingOverride(t *testing.T) {
	for _, tt := range []struct {
		name  string
		op    func(*Router) (EndpointSnapshot, error)
		state CanaryState
	}{
		{"rollback", func(r *Router) (EndpointSnapshot, error) { return r.Rollback(bg, "chat") }, StateRolledBack},
		{"pause", func(r *Router) (EndpointSnapshot, error) { return r.Pause(bg, "chat") }, StatePaused},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t)
			a, b := c.replica("a", sharedCanary()), c.replica("b", sharedCanary())
			a.r.tick(bg)
			round(a, b)
			if _, err := b.r.SetWeights(bg, "chat", map[string]int{"stable": 80, "canary": 20}); err != nil {
				t.Fatal(err)
			}
			round(a, b)
			a.r.Apply([]*Endpoint{mustEndpoint(t, "chat", retunedCanary())})

			snap, err := tt.op(a.r)
			if err != nil {
				t.Fatal(err)
			}
			if snap.Override || snap.Canary.State != tt.state {
				t.Fatalf("%s on the reloaded replica answered override %v, %s; want %s, no override",
					tt.name, snap.Override, snap.Canary.State, tt.state)
			}
			round(a, b)
			for i, x := range []*replica{a, b} {
				s, err := x.r.EndpointSnapshot("chat")
				if err != nil {
					t.Fatal(err)
				}
				if s.Override || s.Canary.State != tt.state || s.Canary.Weight != snap.Canary.Weight {
					t.Fatalf("replica %d: override %v, %s at %v %%; want %s at %v %%, no override",
						i, s.Override, s.Canary.State, s.Canary.Weight, tt.state, snap.Canary.Weight)
				}
			}
		})
	}
}
