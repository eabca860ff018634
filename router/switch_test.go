package router

import (
	"strconv"
	"testing"
	"time"
)

// movedUsers returns the sticky keys that route differs for between two weights the
// replica x has in force at the instants before and after.
func movedUsers(t *testing.T, x *replica, before, after time.Time) [][]byte {
	t.Helper()
	var moved [][]byte
	var p, q Plan
	for _, k := range userKeys(20_000) {
		x.e.Plan(k, before, &p)
		x.e.Plan(k, after, &q)
		if p.Route != q.Route {
			moved = append(moved, k)
		}
	}
	return moved
}

// routesAt checks that every replica routes every key in keys to route want at now.
func routesAt(t *testing.T, what string, keys [][]byte, now time.Time, want int, rs ...*replica) {
	t.Helper()
	var p Plan
	for i, x := range rs {
		for _, k := range keys {
			if x.e.Plan(k, now, &p); p.Route != want {
				t.Fatalf("%s: replica %d routes %s to route %d, want %d", what, i, k, p.Route, want)
			}
		}
	}
}

// switchAt is the instant the pending change of replica x takes effect; it fails
// when none is pending.
func switchAt(t *testing.T, x *replica) time.Time {
	t.Helper()
	s, err := x.r.EndpointSnapshot("chat")
	if err != nil {
		t.Fatal(err)
	}
	if s.SwitchAt == nil {
		t.Fatalf("no change pending: %+v", s)
	}
	return *s.SwitchAt
}

// A leader's step and an operator's call on a follower move the users they move on
// every replica at one instant, switchDelay after the change was written: each
// replica, the writer included, routes them as before until just before it, and by
// the new weights from it on, whether it read the change before the instant or after.
// It runs alone: its replicas' leader lease lasts 300 ms of real time, and a tick
// delayed past that by parallel CPU-bound tests would hand the lead to another replica.
func TestSwitchAtOneInstantOnEveryReplica(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, c *cluster, a, b *replica)
		from   int // the route the moved users leave
	}{
		{"leader step", func(t *testing.T, c *cluster, a, b *replica) {
			feed(a.e, 1, 200, 0, 100*time.Millisecond, 0)
			c.clock.Advance(time.Minute)
			a.r.tick(bg)
		}, 0},
		{"operator rollback on a follower", func(t *testing.T, c *cluster, a, b *replica) {
			if _, err := b.r.Rollback(bg, "chat"); err != nil {
				t.Fatal(err)
			}
		}, 1},
		{"operator weights on a follower", func(t *testing.T, c *cluster, a, b *replica) {
			if _, err := b.r.SetWeights(bg, "chat", map[string]int{"stable": 70, "canary": 30}); err != nil {
				t.Fatal(err)
			}
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t)
			a, b, d := c.replica("a", sharedCanary()), c.replica("b", sharedCanary()), c.replica("d", sharedCanary())
			a.r.tick(bg) // a leads
			round(a, b, d)
			tc.change(t, c, a, b)
			written := c.clock.Now()
			writer := b
			if tc.name == "leader step" {
				writer = a
			}
			at := switchAt(t, writer)
			if want := written.Add(switchDelay); !at.Equal(want) {
				t.Fatalf("the change takes effect at %v, want the writer's clock plus %v, %v", at, switchDelay, want)
			}
			a.r.tick(bg)
			b.r.tick(bg)
			// d does not tick until after the instant: a slow poll.
			just := time.Millisecond
			moved := movedUsers(t, a, at.Add(-just), at)
			if len(moved) < 100 {
				t.Fatalf("%d users moved, want a few hundred at least", len(moved))
			}
			routesAt(t, "just before the instant", moved, at.Add(-just), tc.from, a, b)
			routesAt(t, "at the instant", moved, at, 1-tc.from, a, b)
			routesAt(t, "just after the instant", moved, at.Add(just), 1-tc.from, a, b)
			routesAt(t, "before a slow replica reads the change", moved, at.Add(just), tc.from, d)

			c.clock.Advance(at.Sub(c.clock.Now()) + 100*time.Millisecond)
			d.r.tick(bg)
			routesAt(t, "a replica that read the change after its instant", moved, c.clock.Now(), 1-tc.from, d)
			for i, x := range []*replica{a, b, d} {
				if s, _ := x.r.EndpointSnapshot("chat"); s.SwitchAt != nil || s.PendingWeights != nil {
					t.Fatalf("replica %d still shows a pending change after its instant: %v %v", i, s.SwitchAt, s.PendingWeights)
				}
			}
		})
	}
}

// The admin view shows a pending change, the weights in force meanwhile, and the
// metrics follow the weights in force.
func TestSwitchPendingInViewAndMetrics(t *testing.T) {
	c := newCluster(t)
	a, b := c.replica("a", sharedCanary()), c.replica("b", sharedCanary())
	a.r.tick(bg)
	round(a, b)
	if _, err := b.r.Rollback(bg, "chat"); err != nil {
		t.Fatal(err)
	}
	round(a, b)
	for i, x := range []*replica{a, b} {
		changes := x.r.Changes()
		s, _ := x.r.EndpointSnapshot("chat")
		want := c.clock.Now().Add(switchDelay)
		if s.SwitchAt == nil || !s.SwitchAt.Equal(want) || s.PendingWeights["canary"] != 0 || s.PendingWeights["stable"] != 100 ||
			s.Canary.Weight != 5 || s.Routes[0].Weight != 95 || s.Canary.State != StateRolledBack {
			t.Fatalf("replica %d while the rollback waits: switch_at %v (want %v), pending %v, canary %s at %v %%",
				i, s.SwitchAt, want, s.PendingWeights, s.Canary.State, s.Canary.Weight)
		}
		if w := x.r.Weights(); w[1].Weight != 5 {
			t.Fatalf("replica %d: tollgate_route_weight of the canary %v while the rollback waits, want 5", i, w[1].Weight)
		}
		if cs := x.r.CanaryStates(); cs[0].State != StateStepping {
			t.Fatalf("replica %d: tollgate_canary_state %s while the rollback waits, want stepping", i, cs[0].State)
		}
		c.clock.Advance(switchDelay)
		if x.r.Changes() == changes {
			t.Fatalf("replica %d: the change taking effect did not count as one for the metrics", i)
		}
		if w, cs := x.r.Weights(), x.r.CanaryStates(); w[1].Weight != 0 || cs[0].State != StateRolledBack {
			t.Fatalf("replica %d after the instant: canary weight %v, state %s; want 0, rolled_back", i, w[1].Weight, cs[0].State)
		}
		c.clock.Advance(-switchDelay)
	}
}

// An operator's change made while another waits for its instant is written at that
// instant, from the weights it put in force: each change takes effect in turn, at
// its own instant, on every replica, one that starts meanwhile included.
func TestSwitchLaterChangeWaitsForPending(t *testing.T) {
	c := newCluster(t)
	a, b := c.replica("a", sharedCanary()), c.replica("b", sharedCanary())
	a.r.tick(bg)
	round(a, b)
	if _, err := a.r.SetWeights(bg, "chat", map[string]int{"stable": 50, "canary": 50}); err != nil {
		t.Fatal(err)
	}
	first := switchAt(t, a)
	round(a, b)
	c.clock.Advance(switchDelay / 2)
	for i, x := range []*replica{a, b} {
		if got, next := canaryPct(x, first.Add(-time.Millisecond)), canaryPct(x, first); got != 5 || next != 50 {
			t.Fatalf("replica %d: canary at %v %% just before the first change's instant and %v %% at it, want 5 and 50",
				i, got, next)
		}
	}
	if _, err := b.r.SetWeights(bg, "chat", map[string]int{"stable": 80, "canary": 20}); err != nil {
		t.Fatal(err)
	}
	if now := c.clock.Now(); now.Before(first) {
		t.Fatalf("the second change was written at %v, before the first's instant %v", now, first)
	}
	second := switchAt(t, b)
	if want := first.Add(switchDelay); !second.Equal(want) {
		t.Fatalf("second change at %v, want the first's instant %v plus %v", second, first, switchDelay)
	}
	round(a, b)
	fresh := c.replica("fresh", sharedCanary())
	if err := fresh.r.Sync(bg); err != nil {
		t.Fatal(err)
	}
	for i, x := range []*replica{a, b, fresh} {
		for _, probe := range []struct {
			at   time.Time
			want float64
		}{
			{first, 50},
			{first.Add(time.Millisecond), 50},
			{second.Add(-time.Millisecond), 50},
			{second, 20},
		} {
			if got := canaryPct(x, probe.at); got != probe.want {
				t.Fatalf("replica %d at %v (first change at %v, second at %v): canary at %v %%, want %v",
					i, probe.at, first, second, got, probe.want)
			}
		}
		if at := switchAt(t, x); !at.Equal(second) {
			t.Fatalf("replica %d switches at %v, want %v", i, at, second)
		}
	}
}

// canaryPct is the canary's weight in the table Plan routes by at now, in percent.
func canaryPct(x *replica, now time.Time) float64 {
	return x.e.st.Load().tabs.Load().in(now).pct[1]
}

// A state hash written by an older build, without an instant, takes effect at once.
func TestSwitchOldFormatHashTakesEffectAtOnce(t *testing.T) {
	c := newCluster(t)
	a, b := c.replica("a", sharedCanary()), c.replica("b", sharedCanary())
	a.r.tick(bg)
	round(a, b)
	key := a.r.shared.stateKey("chat")
	f, err := a.rdb.HGetAll(bg, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.rdb.HDel(bg, key, "at", "fst", "fcw", "fovr").Err(); err != nil {
		t.Fatal(err)
	}
	ver, _ := strconv.ParseInt(f["ver"], 10, 64)
	if err := a.rdb.HSet(bg, key, "ver", ver+1, "st", "rolled_back", "cw", "0", "why", "rolled back by an older build").Err(); err != nil {
		t.Fatal(err)
	}
	round(a, b)
	for i, x := range []*replica{a, b} {
		s, _ := x.r.EndpointSnapshot("chat")
		if s.Canary.State != StateRolledBack || s.Canary.Weight != 0 || s.SwitchAt != nil || canaryPct(x, c.clock.Now()) != 0 {
			t.Fatalf("replica %d after an old-format rollback: %s at %v %%, switch_at %v; want rolled back at once",
				i, s.Canary.State, s.Canary.Weight, s.SwitchAt)
		}
	}
}

// A rollback a replica makes alone while Redis is unreachable takes effect at once
// there: there is no other replica to agree an instant with.
func TestSwitchLocalOnlyRollbackIsImmediate(t *testing.T) {
	for _, how := range []string{"operator", "gate"} {
		t.Run(how, func(t *testing.T) {
			c := newCluster(t)
			a, b := c.replica("a", sharedCanary()), c.replica("b", sharedCanary())
			a.r.tick(bg)
			round(a, b)
			heal := cutOff(t, b)
			defer heal()
			if how == "operator" {
				if _, err := b.r.Rollback(bg, "chat"); err != nil {
					t.Fatal(err)
				}
			} else {
				feed(b.e, 1, 200, 100, 100*time.Millisecond, 0)
				b.r.tick(bg)
			}
			s, _ := b.r.EndpointSnapshot("chat")
			if !s.Canary.LocalOnly || s.Canary.Weight != 0 || s.SwitchAt != nil || canaryPct(b, c.clock.Now()) != 0 {
				t.Fatalf("local-only rollback by the %s: local_only %v, canary at %v %%, switch_at %v; want 0 at once",
					how, s.Canary.LocalOnly, s.Canary.Weight, s.SwitchAt)
			}
			// Once Redis answers, the others switch at the instant it is written
			// with; b keeps the rollback in force meanwhile.
			heal()
			b.r.tick(bg)
			a.r.tick(bg)
			at := switchAt(t, a)
			if got := canaryPct(a, at.Add(-time.Millisecond)); got != 5 {
				t.Fatalf("a before the shared rollback's instant: canary at %v %%, want 5", got)
			}
			for i, x := range []*replica{a, b} {
				if got := canaryPct(x, at); got != 0 {
					t.Fatalf("replica %d at the shared rollback's instant: canary at %v %%, want 0", i, got)
				}
			}
			if got := canaryPct(b, c.clock.Now()); got != 0 {
				t.Fatalf("b after writing its rollback: canary at %v %%, want 0", got)
			}
		})
	}
}
