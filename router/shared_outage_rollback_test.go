package router

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// cutOff makes x's router talk to an address where no Redis listens, as a network
// partition between that replica and Redis would, while Redis keeps its state and the
// other replicas reach it; the returned func reconnects x.
func cutOff(t *testing.T, x *replica) func() {
	t.Helper()
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1,
		DialTimeout: 200 * time.Millisecond, DialerRetries: 1, DialerRetryTimeout: time.Millisecond})
	t.Cleanup(func() { _ = dead.Close() })
	x.r.shared.rdb = dead
	return func() { x.r.shared.rdb = x.rdb }
}

// sharedStateField is field f of endpoint chat's shared state hash.
func sharedStateField(t *testing.T, c *cluster, x *replica, f string) string {
	t.Helper()
	v, err := x.rdb.HGet(bg, c.prefix+"ep:{chat}", f).Result()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// README: "The first breach sends it to 0 %"; DESIGN: Tollgate "rolls back a bad canary
// by itself". With Redis down no leader can judge the merged windows, so each replica
// judges its own traffic and rolls a breaching canary back by itself.
func TestSharedBreachRollsBackWhileRedisDown(t *testing.T) {
	c := newCluster(t)
	a := c.replica("a", sharedCanary())
	a.r.tick(bg)
	round(a)
	feed(a.e, 1, 200, 0, 100*time.Millisecond, 0)
	c.clock.Advance(time.Minute)
	round(a)
	weightsAgree(t, "before", 10, a)
	pastSwitch(c, a)

	c.srv.Kill()
	// Half the canary's attempts fail: max_error_rate is 0.02, min_requests 100.
	feed(a.e, 1, 200, 100, 100*time.Millisecond, 0)
	c.clock.Advance(time.Second)
	round(a)
	cs := canaryOf(t, a.r, "chat")
	if cs.State != StateRolledBack || cs.Weight != 0 {
		t.Fatalf("with Redis down, a canary failing 100 of 200 attempts (max_error_rate 0.02) is %s at %v %%; "+
			"want rolled_back at 0 %%", cs.State, cs.Weight)
	}
	if !cs.LocalOnly || !strings.Contains(cs.Reason, "error rate") || !strings.Contains(cs.Reason, unsharedNote) {
		t.Fatalf("rollback while Redis is down: local_only %v, reason %q; want local_only and the gate and outage named",
			cs.LocalOnly, cs.Reason)
	}
}

// A rollback one replica made alone during an outage reaches Redis, and so every
// replica, once Redis is back, whichever replica reaches it first; the replicas that
// saw no breach held the canary where it was meanwhile.
func TestSharedOutageRollbackReachesEveryReplica(t *testing.T) {
	for _, tt := range []struct {
		name  string
		first string
	}{
		{"the replica that rolled back reaches Redis first", "a"},
		{"a replica that held the canary reaches Redis first", "b"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t)
			a, b := c.replica("a", sharedCanary()), c.replica("b", sharedCanary())
			a.r.tick(bg)
			round(a, b)
			feed(a.e, 1, 200, 0, 100*time.Millisecond, 0)
			c.clock.Advance(time.Minute)
			round(a, b)
			weightsAgree(t, "before", 10, a, b)
			pastSwitch(c, a, b)

			c.srv.Kill()
			feed(a.e, 1, 200, 100, 100*time.Millisecond, 0)
			feed(b.e, 1, 200, 0, 100*time.Millisecond, 0)
			c.clock.Advance(time.Minute)
			round(a, b)
			weightsAgree(t, "a saw the breach", 0, a)
			weightsAgree(t, "b saw none and holds", 10, b)

			c.srv.Restart() // empty
			order := []*replica{a, b}
			if tt.first == "b" {
				order = []*replica{b, a}
			}
			for range 2 {
				for _, x := range order {
					x.r.tick(bg)
				}
			}
			weightsAgree(t, "after Redis is back", 0, a, b)
			for i, x := range []*replica{a, b} {
				cs := canaryOf(t, x.r, "chat")
				if cs.State != StateRolledBack || cs.LocalOnly || !strings.Contains(cs.Reason, "error rate") {
					t.Fatalf("replica %d after Redis is back: %s, local_only %v, reason %q; want rolled_back on the error rate, shared",
						i, cs.State, cs.LocalOnly, cs.Reason)
				}
			}
			if st := sharedStateField(t, c, a, "st"); st != "rolled_back" {
				t.Fatalf("Redis has the canary %s, want rolled_back", st)
			}
		})
	}
}

// One replica cut off from Redis rolls its canary back on a breach, while the others
// still reach Redis and change the canary meanwhile. When it reaches Redis again, its
// rollback is applied to what the shared state has become, unless that has the canary
// rolled back already.
func TestSharedOutageRollbackMeetsNewerSharedState(t *testing.T) {
	for _, tt := range []struct {
		name       string
		meanwhile  func(*Router) (EndpointSnapshot, error)
		wantReason string
	}{
		{"paused meanwhile", func(r *Router) (EndpointSnapshot, error) { return r.Pause(bg, "chat") }, "error rate"},
		{"promoted meanwhile", func(r *Router) (EndpointSnapshot, error) { return r.Promote(bg, "chat") }, "error rate"},
		{"rolled back meanwhile", func(r *Router) (EndpointSnapshot, error) { return r.Rollback(bg, "chat") }, "rolled back by operator"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t)
			a, b := c.replica("a", sharedCanary()), c.replica("b", sharedCanary())
			a.r.tick(bg)
			round(a, b)
			reconnect := cutOff(t, a)
			feed(a.e, 1, 200, 100, 100*time.Millisecond, 0)
			c.clock.Advance(time.Second)
			a.r.tick(bg)
			if cs := canaryOf(t, a.r, "chat"); cs.State != StateRolledBack || !cs.LocalOnly {
				t.Fatalf("cut-off replica after a breach: %s, local_only %v; want rolled_back, local only", cs.State, cs.LocalOnly)
			}
			if _, err := tt.meanwhile(b.r); err != nil {
				t.Fatal(err)
			}
			reconnect()
			round(a, b)
			round(a, b)
			weightsAgree(t, "after a reached Redis again", 0, a, b)
			for i, x := range []*replica{a, b} {
				cs := canaryOf(t, x.r, "chat")
				if cs.State != StateRolledBack || cs.LocalOnly || !strings.Contains(cs.Reason, tt.wantReason) {
					t.Fatalf("replica %d: %s, local_only %v, reason %q; want rolled_back (%s), shared",
						i, cs.State, cs.LocalOnly, cs.Reason, tt.wantReason)
				}
			}
		})
	}
}

// An operator pulling a canary while Redis is down gets it rolled back on the replica
// called (the answer says local_only), not a refusal; the other operations, which a
// replica must not take alone, are still refused. The rollback reaches every replica
// once Redis is back.
func TestSharedOperatorRollbackWhileRedisDown(t *testing.T) {
	c := newCluster(t)
	a, b := c.replica("a", sharedCanary()), c.replica("b", sharedCanary())
	a.r.tick(bg)
	round(a, b)
	c.srv.Kill()
	snap, err := b.r.Rollback(bg, "chat")
	if err != nil {
		t.Fatalf("Rollback with Redis down: %v", err)
	}
	if cs := snap.Canary; cs == nil || cs.State != StateRolledBack || cs.Weight != 0 || !cs.LocalOnly {
		t.Fatalf("Rollback with Redis down answered %+v; want rolled_back at 0 %%, local only", snap.Canary)
	}
	for _, op := range []func(*Router) (EndpointSnapshot, error){
		func(r *Router) (EndpointSnapshot, error) { return r.Resume(bg, "chat") },
		func(r *Router) (EndpointSnapshot, error) { return r.Promote(bg, "chat") },
	} {
		if _, err := op(b.r); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("an operation other than rollback with Redis down: %v, want ErrUnavailable", err)
		}
	}
	round(a, b)
	weightsAgree(t, "the replica not called holds", 5, a)
	weightsAgree(t, "the replica called", 0, b)

	c.srv.Restart()
	round(a, b)
	round(a, b)
	weightsAgree(t, "after Redis is back", 0, a, b)
	for i, x := range []*replica{a, b} {
		if cs := canaryOf(t, x.r, "chat"); cs.State != StateRolledBack || cs.LocalOnly ||
			!strings.Contains(cs.Reason, "rolled back by operator") {
			t.Fatalf("replica %d after Redis is back: %s, local_only %v, reason %q", i, cs.State, cs.LocalOnly, cs.Reason)
		}
	}
}

// An operation sent to a replica that holds an unshared rollback, once it reaches
// Redis again but before its next tick, applies to the shared state with that rollback
// in it: resuming starts the canary over from its first step everywhere.
func TestSharedOperationAfterOutageIncludesTheUnsharedRollback(t *testing.T) {
	c := newCluster(t)
	a, b := c.replica("a", sharedCanary()), c.replica("b", sharedCanary())
	a.r.tick(bg)
	round(a, b)
	feed(a.e, 1, 200, 0, 100*time.Millisecond, 0)
	c.clock.Advance(time.Minute)
	round(a, b)
	weightsAgree(t, "before", 10, a, b)

	reconnect := cutOff(t, b)
	if _, err := b.r.Rollback(bg, "chat"); err != nil {
		t.Fatal(err)
	}
	reconnect()
	snap, err := b.r.Resume(bg, "chat")
	if err != nil {
		t.Fatalf("Resume after the rollback: %v", err)
	}
	if cs := snap.Canary; cs.State != StateStepping || decidedWeight(snap) != 5 || cs.LocalOnly {
		t.Fatalf("Resume after an unshared rollback answered %s at %v %%, local_only %v; want stepping at 5 %%, shared",
			cs.State, decidedWeight(snap), cs.LocalOnly)
	}
	round(a, b)
	weightsAgree(t, "resumed", 5, a, b)
}

// README, Admin API: "A gate or an operator that rolls the canary back during an
// override keeps the override"; and an outage rollback "is written there and every
// replica follows it". A replica cut off from Redis that both rolls the canary back
// and is reloaded (new canary settings, same routes) writes the rollback once Redis
// answers again, whichever came first, and the override holds everywhere with the
// canary's share given to the other route.
func TestSharedOutageRollbackSurvivesReload(t *testing.T) {
	reload := func(t *testing.T, x *replica) {
		x.r.Apply([]*Endpoint{mustEndpoint(t, "chat", retunedCanary())})
	}
	for _, tt := range []struct {
		name       string
		cutOff     func(t *testing.T, c *cluster, a *replica)
		wantReason string
	}{
		{"an operator rolled back, then a reload", func(t *testing.T, _ *cluster, a *replica) {
			if _, err := a.r.Rollback(bg, "chat"); err != nil {
				t.Fatalf("rollback while cut off: %v", err)
			}
			reload(t, a)
		}, "rolled back by operator"},
		{"a reload, then a gate rolled back", func(t *testing.T, c *cluster, a *replica) {
			reload(t, a)
			feed(a.e, 1, 200, 100, 100*time.Millisecond, 0)
			c.clock.Advance(time.Second)
			a.r.tick(bg)
		}, "error rate"},
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
			weightsAgree(t, "override", 20, a, b)

			reconnect := cutOff(t, a)
			tt.cutOff(t, c, a)
			if cs := canaryOf(t, a.r, "chat"); cs.State != StateRolledBack || cs.Weight != 0 || !cs.LocalOnly {
				t.Fatalf("cut off a: %s at %v %%, local_only %v; want rolled_back at 0 %%, local only", cs.State, cs.Weight, cs.LocalOnly)
			}

			reconnect()
			a.r.tick(bg)
			if cs := canaryOf(t, a.r, "chat"); cs.State != StateRolledBack || cs.Weight != 0 || cs.LocalOnly {
				t.Fatalf("a's first tick with Redis again: %s at %v %% (%q), local_only %v; want rolled_back at 0 %%, shared",
					cs.State, cs.Weight, cs.Reason, cs.LocalOnly)
			}
			if st, ovr := sharedStateField(t, c, a, "st"), sharedStateField(t, c, a, "ovr"); st != "rolled_back" || ovr != "10000,0" {
				t.Fatalf("Redis after a's first tick: %s, override %q; want rolled_back, the override with the canary's share on stable", st, ovr)
			}
			round(a, b)
			weightsAgree(t, "after Redis is back", 0, a, b)
			for i, x := range []*replica{a, b} {
				snap, err := x.r.EndpointSnapshot("chat")
				if err != nil {
					t.Fatal(err)
				}
				if cs := snap.Canary; !snap.Override || cs.State != StateRolledBack || !strings.Contains(cs.Reason, tt.wantReason) {
					t.Fatalf("replica %d: override %v, %s (%q); want rolled_back (%s) under the override",
						i, snap.Override, cs.State, cs.Reason, tt.wantReason)
				}
			}
		})
	}
}
