package router

import (
	"errors"
	"strconv"
	"testing"
	"time"
)

// An operation that finds the canary already where it would put it changes nothing, as
// a rollback of a rolled-back canary does: promoting a promoted canary, pausing a
// paused one and resuming a stepping one keep the reason and window of the change
// that got it there, log nothing and count no change, and answer the state as it
// stands.
func TestRepeatedOperationChangesNothing(t *testing.T) {
	tests := []struct {
		name  string
		first func(t *testing.T, clock *fakeClock, r *Router, e *Endpoint)
		again func(r *Router) (EndpointSnapshot, error)
		state CanaryState
	}{
		{"promote of a canary the controller promoted", func(t *testing.T, clock *fakeClock, r *Router, e *Endpoint) {
			setCanary(t, r, e, 75*Buckets/100)
			slice{n: 200}.play(e, 1)
			clock.Advance(time.Minute)
			r.tick(bg)
		}, func(r *Router) (EndpointSnapshot, error) { return r.Promote(bg, "chat") }, StatePromoted},
		{"promote of a canary an operator promoted", func(t *testing.T, _ *fakeClock, r *Router, _ *Endpoint) {
			if _, err := r.Promote(bg, "chat"); err != nil {
				t.Fatal(err)
			}
		}, func(r *Router) (EndpointSnapshot, error) { return r.Promote(bg, "chat") }, StatePromoted},
		{"pause of a paused canary", func(t *testing.T, _ *fakeClock, r *Router, _ *Endpoint) {
			if _, err := r.Pause(bg, "chat"); err != nil {
				t.Fatal(err)
			}
		}, func(r *Router) (EndpointSnapshot, error) { return r.Pause(bg, "chat") }, StatePaused},
		{"pause of a canary an override paused", func(t *testing.T, _ *fakeClock, r *Router, _ *Endpoint) {
			if _, err := r.SetWeights(bg, "chat", map[string]int{"stable": 80, "canary": 20}); err != nil {
				t.Fatal(err)
			}
		}, func(r *Router) (EndpointSnapshot, error) { return r.Pause(bg, "chat") }, StatePaused},
		{"resume of a stepping canary", func(t *testing.T, clock *fakeClock, r *Router, e *Endpoint) {
			slice{n: 200}.play(e, 1)
			clock.Advance(time.Minute)
			r.tick(bg)
		}, func(r *Router) (EndpointSnapshot, error) { return r.Resume(bg, "chat") }, StateStepping},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs syncBuffer
			clock := newFakeClock()
			r := New(Options{Now: clock.Now, Logger: testLogger(&logs)})
			e := mustEndpoint(t, "chat", canaryConfig(gatedCanary()))
			r.Apply([]*Endpoint{e})
			tt.first(t, clock, r, e)
			before, _ := r.EndpointSnapshot("chat")
			if before.Canary.State != tt.state {
				t.Fatalf("canary %s before the repeat, want %s", before.Canary.State, tt.state)
			}
			changes, logged := r.Changes(), logs.String()
			clock.Advance(time.Minute)
			after, err := tt.again(r)
			if err != nil {
				t.Fatal(err)
			}
			sameRouting(t, before, after)
			if got := r.Changes(); got != changes {
				t.Errorf("Changes moved by %d", got-changes)
			}
			if got := logs.String(); got != logged {
				t.Errorf("the repeat logged:\n%s", got[len(logged):])
			}
		})
	}
}

// Promote, pause and resume of an endpoint without a canary, and pause of a
// rolled-back canary, are refused with the errors the admin API maps to its 409 codes;
// the routing stays as it was.
func TestOperationsTheStateRefuses(t *testing.T) {
	r := New(Options{})
	plain := mustEndpoint(t, "plain", Config{Routes: []Route{{Backend: "a", Weight: 60}, {Backend: "b", Weight: 40}}})
	chat := mustEndpoint(t, "chat", canaryConfig(gatedCanary()))
	r.Apply([]*Endpoint{plain, chat})
	if _, err := r.Rollback(bg, "chat"); err != nil {
		t.Fatal(err)
	}
	ops := map[string]func(string) (EndpointSnapshot, error){
		"pause":    func(n string) (EndpointSnapshot, error) { return r.Pause(bg, n) },
		"resume":   func(n string) (EndpointSnapshot, error) { return r.Resume(bg, n) },
		"promote":  func(n string) (EndpointSnapshot, error) { return r.Promote(bg, n) },
		"rollback": func(n string) (EndpointSnapshot, error) { return r.Rollback(bg, n) },
	}
	tests := []struct {
		op, endpoint string
		want         error
	}{
		{"pause", "plain", ErrNoCanary},
		{"resume", "plain", ErrNoCanary},
		{"promote", "plain", ErrNoCanary},
		{"rollback", "plain", ErrNoCanary},
		{"pause", "chat", ErrCanaryState},
	}
	for _, tt := range tests {
		t.Run(tt.op+" "+tt.endpoint, func(t *testing.T) {
			before, _ := r.EndpointSnapshot(tt.endpoint)
			if _, err := ops[tt.op](tt.endpoint); !errors.Is(err, tt.want) {
				t.Fatalf("%s of %s: error %v, want %v", tt.op, tt.endpoint, err, tt.want)
			}
			after, _ := r.EndpointSnapshot(tt.endpoint)
			sameRouting(t, before, after)
		})
	}
}

// sameRouting fails t when after differs from before in weights, override or canary
// state, reason or window.
func sameRouting(t *testing.T, before, after EndpointSnapshot) {
	t.Helper()
	if before.Override != after.Override {
		t.Errorf("override %v -> %v", before.Override, after.Override)
	}
	for i := range before.Routes {
		if before.Routes[i].Weight != after.Routes[i].Weight {
			t.Errorf("route %s moved from %v %% to %v %%", before.Routes[i].Backend, before.Routes[i].Weight, after.Routes[i].Weight)
		}
	}
	if (before.Canary == nil) != (after.Canary == nil) {
		t.Fatalf("canary %+v -> %+v", before.Canary, after.Canary)
	}
	if b, a := before.Canary, after.Canary; b != nil &&
		(b.State != a.State || b.Reason != a.Reason || !b.WindowStart.Equal(a.WindowStart) || b.Weight != a.Weight) {
		t.Errorf("canary changed: %s %q window %v at %v %% -> %s %q window %v at %v %%",
			b.State, b.Reason, b.WindowStart, b.Weight, a.State, a.Reason, a.WindowStart, a.Weight)
	}
}

// A repeated operation, on the replica that made the first or on another, writes
// nothing to Redis and logs nothing: the state hash keeps its version, and the answer
// is the state the first operation wrote, reason and window included.
func TestSharedRepeatedOperationWritesNothing(t *testing.T) {
	tests := []struct {
		name string
		do   func(r *Router) (EndpointSnapshot, error)
		want CanaryState
	}{
		{"promote", func(r *Router) (EndpointSnapshot, error) { return r.Promote(bg, "chat") }, StatePromoted},
		{"pause", func(r *Router) (EndpointSnapshot, error) { return r.Pause(bg, "chat") }, StatePaused},
		{"rollback", func(r *Router) (EndpointSnapshot, error) { return r.Rollback(bg, "chat") }, StateRolledBack},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t)
			a, b := c.replica("a", sharedCanary()), c.replica("b", sharedCanary())
			a.r.tick(bg)
			round(a, b)
			first, err := tt.do(a.r)
			if err != nil {
				t.Fatal(err)
			}
			round(a, b)
			ver := stateVersion(t, c, a)
			logged := c.logs.String()
			c.clock.Advance(time.Minute)
			for _, x := range []*replica{b, a} {
				again, err := tt.do(x.r)
				if err != nil {
					t.Fatal(err)
				}
				if again.Canary.State != tt.want || again.Canary.Reason != first.Canary.Reason ||
					!again.Canary.WindowStart.Equal(first.Canary.WindowStart) {
					t.Errorf("repeat answered %s %q window %v, want %s %q window %v", again.Canary.State, again.Canary.Reason,
						again.Canary.WindowStart, tt.want, first.Canary.Reason, first.Canary.WindowStart)
				}
				if got := stateVersion(t, c, a); got != ver {
					t.Errorf("the repeat wrote the shared state: version %d -> %d", ver, got)
				}
			}
			if got := c.logs.String(); got != logged {
				t.Errorf("the repeat logged:\n%s", got[len(logged):])
			}
		})
	}
}

// An endpoint without a canary has nothing in Redis to operate on: its canary verbs
// answer ErrNoCanary (409 no_canary) also while Redis is down, not ErrUnavailable. On
// an endpoint with a canary they answer ErrUnavailable then, but a rollback, which
// applies on the replica alone.
func TestSharedNoCanaryNeedsNoRedis(t *testing.T) {
	c := newCluster(t)
	a := c.replica("a", sharedCanary())
	plain := mustEndpoint(t, "plain", Config{Routes: []Route{{Backend: "a", Weight: 60}, {Backend: "b", Weight: 40}}})
	a.r.Apply([]*Endpoint{a.e, plain})
	a.r.tick(bg)
	c.srv.Kill()
	for _, op := range []struct {
		name    string
		do      func(string) (EndpointSnapshot, error)
		applies bool // with a canary, Redis down
	}{
		{"pause", func(n string) (EndpointSnapshot, error) { return a.r.Pause(bg, n) }, false},
		{"resume", func(n string) (EndpointSnapshot, error) { return a.r.Resume(bg, n) }, false},
		{"promote", func(n string) (EndpointSnapshot, error) { return a.r.Promote(bg, n) }, false},
		{"rollback", func(n string) (EndpointSnapshot, error) { return a.r.Rollback(bg, n) }, true},
	} {
		if _, err := op.do("plain"); !errors.Is(err, ErrNoCanary) {
			t.Errorf("%s without a canary, Redis down: %v, want ErrNoCanary", op.name, err)
		}
		_, err := op.do("chat")
		switch {
		case op.applies && err != nil:
			t.Errorf("%s of a canary, Redis down: %v, want it applied on this replica", op.name, err)
		case !op.applies && !errors.Is(err, ErrUnavailable):
			t.Errorf("%s of a canary, Redis down: %v, want ErrUnavailable", op.name, err)
		}
	}
}

// stateVersion is the ver field of the shared state hash of endpoint chat.
func stateVersion(t *testing.T, c *cluster, x *replica) int64 {
	t.Helper()
	v, err := x.rdb.HGet(bg, c.prefix+"ep:{chat}", "ver").Result()
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
