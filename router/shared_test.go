package router

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/tollgate/tollgate/internal/redistest"
)

// replica is one gateway process as far as the router is concerned.
type replica struct {
	r   *Router
	e   *Endpoint
	rdb *redis.Client
}

type cluster struct {
	t      *testing.T
	srv    *redistest.Server
	clock  *fakeClock
	prefix string
	logs   *syncBuffer
}

func newCluster(t *testing.T) *cluster {
	return &cluster{
		t:      t,
		srv:    redistest.Start(t),
		clock:  newFakeClock(),
		prefix: "test:" + strings.ReplaceAll(t.Name(), "/", ":") + ":",
		logs:   &syncBuffer{},
	}
}

func (c *cluster) replica(id string, cfg Config) *replica {
	c.t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: c.srv.Addr(), MaxRetries: -1,
		DialTimeout: 200 * time.Millisecond, DialerRetries: 1, DialerRetryTimeout: time.Millisecond})
	c.t.Cleanup(func() { _ = rdb.Close() })
	r := New(Options{
		Redis:     rdb,
		KeyPrefix: c.prefix,
		ID:        id,
		Now:       c.clock.Now,
		TickEvery: 50 * time.Millisecond,
		LeaseTTL:  300 * time.Millisecond,
		Logger:    testLogger(c.logs).With("replica", id),
	})
	// An operation that waits for a pending change's instant moves the clock there.
	r.wait = func(_ context.Context, d time.Duration) error { c.clock.Advance(d); return nil }
	e := mustEndpoint(c.t, "chat", cfg)
	r.Apply([]*Endpoint{e})
	return &replica{r: r, e: e, rdb: rdb}
}

// round ticks the followers, then the leader, then the followers again: a
// follower's counts reach Redis before the leader decides, and every
// follower reads the decision, as a few real ticks would.
func round(rs ...*replica) {
	for _, x := range rs {
		if !x.r.Leader() {
			x.r.tick(bg)
		}
	}
	for _, x := range rs {
		if x.r.Leader() {
			x.r.tick(bg)
		}
	}
	for _, x := range rs {
		if !x.r.Leader() {
			x.r.tick(bg)
		}
	}
}

func sharedCanary() Config {
	return canaryConfig(Canary{Interval: time.Minute, MinRequests: 100, MaxErrorRate: rate(0.02), MaxP99: time.Second})
}

// retunedCanary is sharedCanary with another p99 gate: a reload to it keeps the routes
// and their live state, a weights override included.
func retunedCanary() Config {
	c := sharedCanary()
	c.Canary.MaxP99 = 2 * time.Second
	return c
}

// pastSwitch moves the clock past the instant of a change the replicas wait for and
// ticks them: the window the change opened begins there, and attempts observed
// before it count toward no window.
func pastSwitch(c *cluster, rs ...*replica) {
	c.clock.Advance(switchDelay)
	round(rs...)
}

// weightsAgree checks that every replica has the canary at want as last decided:
// in force, or waiting for its instant, which must then be the same on each
// (switch_test.go checks the weights in force on either side of it).
func weightsAgree(t *testing.T, step string, want float64, rs ...*replica) {
	t.Helper()
	var at *time.Time
	for i, x := range rs {
		s, err := x.r.EndpointSnapshot("chat")
		if err != nil {
			t.Fatal(err)
		}
		if w := decidedWeight(s); w != want {
			t.Fatalf("%s: replica %d has the canary at %v %% (%s), want %v", step, i, w, s.Canary.State, want)
		}
		// A replica may have its own rollback, made while Redis was unavailable,
		// in force already.
		if s.SwitchAt != nil {
			if at != nil && !at.Equal(*s.SwitchAt) {
				t.Fatalf("%s: replica %d switches at %v, another at %v", step, i, *s.SwitchAt, *at)
			}
			at = s.SwitchAt
		}
	}
}

// decidedWeight is the canary's weight as last decided: the pending one while a
// change waits for its instant, else the one in force.
func decidedWeight(s EndpointSnapshot) float64 {
	if w, ok := s.PendingWeights[s.Canary.Variant]; ok {
		return w
	}
	return s.Canary.Weight
}

// TestSharedReplicasAgreeAtEveryStep runs alone: its replicas' leader lease lasts
// 300 ms of real time, and a tick delayed past that by parallel CPU-bound tests
// would hand the lead to another replica.
func TestSharedReplicasAgreeAtEveryStep(t *testing.T) {
	c := newCluster(t)
	a, b := c.replica("a", sharedCanary()), c.replica("b", sharedCanary())
	a.r.tick(bg) // a takes the lease first
	round(a, b)
	if !a.r.Leader() || b.r.Leader() {
		t.Fatalf("leaders: a %v, b %v", a.r.Leader(), b.r.Leader())
	}
	weightsAgree(t, "start", 5, a, b)
	keys := userKeys(20_000)
	for _, want := range []float64{10, 25, 50, 75, 100} {
		// 60 requests on each replica: neither alone meets min_requests,
		// so a step proves the leader merged both.
		feed(a.e, 1, 60, 0, 100*time.Millisecond, 0)
		feed(b.e, 1, 60, 1, 100*time.Millisecond, 0)
		round(a, b)
		cl := canaryOf(t, a.r, "chat").Cluster
		if cl == nil || cl.Requests != 120 || cl.Errors != 1 {
			t.Fatalf("leader's merged window: %+v, want 120 requests, 1 error", cl)
		}
		c.clock.Advance(time.Minute)
		round(a, b)
		weightsAgree(t, "step", want, a, b)
		pastSwitch(c, a, b)
		pa, pb := assignments(a.e, keys), assignments(b.e, keys)
		for i := range keys {
			if pa[i] != pb[i] {
				t.Fatalf("canary %v %%: user %s on route %d on a, %d on b", want, keys[i], pa[i], pb[i])
			}
		}
	}
	if s := canaryOf(t, b.r, "chat"); s.State != StatePromoted {
		t.Fatalf("follower state %s, want promoted", s.State)
	}
}

func TestSharedTooFewRequestsAcrossReplicas(t *testing.T) {
	c := newCluster(t)
	a, b := c.replica("a", sharedCanary()), c.replica("b", sharedCanary())
	a.r.tick(bg)
	round(a, b)
	feed(a.e, 1, 40, 0, 100*time.Millisecond, 0)
	feed(b.e, 1, 40, 0, 100*time.Millisecond, 0)
	c.clock.Advance(2 * time.Minute)
	round(a, b)
	weightsAgree(t, "80 of 100 requests", 5, a, b)
	feed(b.e, 1, 20, 0, 100*time.Millisecond, 0)
	round(a, b)
	weightsAgree(t, "100 of 100 requests", 10, a, b)
}

func TestSharedBreachOnAFollowerRollsBackEverywhere(t *testing.T) {
	c := newCluster(t)
	a, b := c.replica("a", sharedCanary()), c.replica("b", sharedCanary())
	a.r.tick(bg)
	round(a, b)
	feed(a.e, 1, 100, 0, 100*time.Millisecond, 0)
	feed(b.e, 1, 100, 10, 100*time.Millisecond, 0) // 10 of 200: 5 %
	c.clock.Advance(10 * time.Second)
	round(a, b)
	weightsAgree(t, "breach", 0, a, b)
	for _, x := range []*replica{a, b} {
		if s := canaryOf(t, x.r, "chat"); s.State != StateRolledBack || !strings.Contains(s.Reason, "error rate") {
			t.Fatalf("state %s (%s), want rolled_back on the error rate", s.State, s.Reason)
		}
	}
	// It stays at 0 through healthy intervals.
	for range 3 {
		c.clock.Advance(time.Minute)
		round(a, b)
	}
	weightsAgree(t, "held", 0, a, b)
}

func TestSharedLateBreachInTheRecentSpan(t *testing.T) {
	c := newCluster(t)
	a, b := c.replica("a", sharedCanary()), c.replica("b", sharedCanary())
	a.r.tick(bg)
	round(a, b)
	// Interval 1m, so 12s slots. Healthy for 24s on both replicas, then
	// a quiet slot...
	for _, n := range []int{300, 300, 0} {
		feed(a.e, 1, n, 0, 100*time.Millisecond, 0)
		feed(b.e, 1, n, 0, 100*time.Millisecond, 0)
		c.clock.Advance(12 * time.Second)
		round(a, b)
	}
	weightsAgree(t, "healthy", 5, a, b)
	// ...then failing on b: 6 of 120 (5 %) over the last two slots, but
	// 6 of 1320 over the window.
	feed(a.e, 1, 60, 0, 100*time.Millisecond, 0)
	feed(b.e, 1, 60, 6, 100*time.Millisecond, 0)
	c.clock.Advance(12 * time.Second)
	round(a, b)
	weightsAgree(t, "late breach", 0, a, b)
	if s := canaryOf(t, b.r, "chat"); !strings.Contains(s.Reason, "over the last") {
		t.Fatalf("reason %q does not name the recent span", s.Reason)
	}
}

func TestSharedOperatorOnFollower(t *testing.T) {
	c := newCluster(t)
	a, b := c.replica("a", sharedCanary()), c.replica("b", sharedCanary())
	a.r.tick(bg)
	round(a, b)

	if _, err := b.r.Pause(bg, "chat"); err != nil {
		t.Fatal(err)
	}
	feed(a.e, 1, 200, 0, 100*time.Millisecond, 0)
	c.clock.Advance(time.Minute)
	round(a, b)
	weightsAgree(t, "paused", 5, a, b)
	if s := canaryOf(t, a.r, "chat"); s.State != StatePaused {
		t.Fatalf("leader state %s after a pause on the follower", s.State)
	}

	snap, err := b.r.SetWeights(bg, "chat", map[string]int{"llama": 80, "llama-v2": 20})
	if err != nil || !snap.Override {
		t.Fatalf("SetWeights: %v %+v", err, snap)
	}
	round(a, b)
	weightsAgree(t, "override", 20, a, b)

	// Reloads that keep the routes (a renewed certificate, another endpoint
	// edited, new canary settings) keep the override on every replica.
	a.r.Apply([]*Endpoint{mustEndpoint(t, "chat", sharedCanary())})
	b.r.Apply([]*Endpoint{mustEndpoint(t, "chat", retunedCanary())})
	round(a, b)
	round(a, b)
	for _, x := range []*replica{a, b} {
		s, _ := x.r.EndpointSnapshot("chat")
		if !s.Override || s.Canary.State != StatePaused || decidedWeight(s) != 20 {
			t.Fatalf("after reloads keeping the routes: override %v, canary %+v", s.Override, s.Canary)
		}
	}

	// The operator's end of the override on one replica ends it on all of them,
	// and the canary is paused where the operator paused it before the override.
	clearWeights(t, a.r, "chat")
	round(a, b)
	round(a, b)
	for _, x := range []*replica{a, b} {
		s, _ := x.r.EndpointSnapshot("chat")
		if s.Override || s.Canary.State != StatePaused || decidedWeight(s) != 5 {
			t.Fatalf("after the override ended: override %v, canary %+v", s.Override, s.Canary)
		}
	}

	if _, err := a.r.Promote(bg, "chat"); err != nil {
		t.Fatal(err)
	}
	round(a, b)
	weightsAgree(t, "promoted", 100, a, b)
	if _, err := b.r.Pause(bg, "chat"); !errors.Is(err, ErrCanaryState) {
		t.Fatalf("pausing a promoted canary: %v", err)
	}
}

func TestSharedOverrideEndAtZeroWeightStepsFromStart(t *testing.T) {
	for _, how := range overrideEnds {
		t.Run(how.name, func(t *testing.T) {
			c := newCluster(t)
			a, b := c.replica("a", sharedCanary()), c.replica("b", sharedCanary())
			a.r.tick(bg)
			round(a, b)
			if _, err := b.r.SetWeights(bg, "chat", map[string]int{"llama": 100, "llama-v2": 0}); err != nil {
				t.Fatal(err)
			}
			round(a, b)
			weightsAgree(t, "override", 0, a, b)

			// The end of the override on a ends it everywhere; the canary the
			// override held at 0 % steps on from its first step.
			a.e = how.end(t, a.r, a.e, sharedCanary())
			round(a, b)
			round(a, b)
			for _, x := range []*replica{a, b} {
				s, _ := x.r.EndpointSnapshot("chat")
				if s.Override || s.Canary.State != StateStepping || decidedWeight(s) != 5 {
					t.Fatalf("after the override ended: override %v, canary %v %% %s, want stepping at 5 %%",
						s.Override, decidedWeight(s), s.Canary.State)
				}
			}
			pastSwitch(c, a, b)
			feed(a.e, 1, 100, 0, 100*time.Millisecond, 0)
			c.clock.Advance(time.Minute)
			round(a, b)
			weightsAgree(t, "first step after the override", 10, a, b)
		})
	}
}

func TestSharedSyncFollowsTheClusterBeforeServing(t *testing.T) {
	c := newCluster(t)
	a, b := c.replica("a", sharedCanary()), c.replica("b", sharedCanary())
	a.r.tick(bg)
	round(a, b)
	if _, err := a.r.Rollback(bg, "chat"); err != nil {
		t.Fatal(err)
	}
	round(a, b)
	weightsAgree(t, "rolled back", 0, a, b)

	// A replica starting now (scale-up, restart) has the config's 5 %
	// until it reads the shared state; the gateway syncs before it serves.
	d := c.replica("d", sharedCanary())
	if err := d.r.Sync(bg); err != nil {
		t.Fatal(err)
	}
	if s := canaryOf(t, d.r, "chat"); s.State != StateRolledBack {
		t.Fatalf("synced replica: canary %s at %v %%, want rolled_back", s.State, s.Weight)
	}
	for i, route := range assignments(d.e, userKeys(10_000)) {
		if route == 1 {
			t.Fatalf("user %d goes to the rolled-back canary on a freshly synced replica", i)
		}
	}
	if d.r.Leader() {
		t.Fatal("Sync took the leader lease")
	}
}

func TestSharedSyncWithRedisDown(t *testing.T) {
	c := newCluster(t)
	c.srv.Kill()
	d := c.replica("d", sharedCanary())
	if err := d.r.Sync(bg); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Sync with Redis down: %v, want ErrUnavailable", err)
	}
	weightsAgree(t, "config weights kept", 5, d)
}

func TestSharedRunReadsTheSharedStateAtStart(t *testing.T) {
	c := newCluster(t)
	a := c.replica("a", sharedCanary())
	a.r.tick(bg)
	if _, err := a.r.Rollback(bg, "chat"); err != nil {
		t.Fatal(err)
	}

	// d's ticker never fires: all it reads comes from Run's first tick,
	// which precedes the ticker.
	d := c.replica("d", sharedCanary())
	started := make(chan struct{})
	d.r.newTicker = func(time.Duration) (<-chan time.Time, func()) {
		close(started)
		return nil, func() {}
	}
	ctx, cancel := context.WithCancel(bg)
	done := make(chan error, 1)
	go func() { done <- d.r.Run(ctx) }()
	<-started
	weightsAgree(t, "after Run's first tick", 0, d)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestSharedFreshReplicaCountsGoToTheClusterWindow(t *testing.T) {
	tests := []struct {
		name string
		sync bool
	}{
		{"synced before serving", true},
		{"serving before its first tick", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t)
			a := c.replica("a", sharedCanary())
			a.r.tick(bg)
			feed(a.e, 1, 100, 0, 100*time.Millisecond, 0)
			c.clock.Advance(time.Minute)
			a.r.tick(bg)
			weightsAgree(t, "first step", 10, a)
			// d starts later, so a window of its own would start later
			// than the cluster's.
			c.clock.Advance(10 * time.Second)
			d := c.replica("d", sharedCanary())
			if tt.sync {
				if err := d.r.Sync(bg); err != nil {
					t.Fatal(err)
				}
			}
			feed(d.e, 1, 50, 2, 100*time.Millisecond, 0)
			round(a, d)
			round(a, d)
			cl := canaryOf(t, a.r, "chat").Cluster
			if cl == nil || cl.Requests != 50 || cl.Errors != 2 {
				t.Fatalf("leader's merged window: %+v, want d's 50 requests and 2 errors", cl)
			}
		})
	}
}

// TestSharedRepeatedOperationAnswersSharedState sends one operation to a replica
// right after another replica made it, before a tick: the second finds nothing to do,
// and its answer must show the state it found in Redis, not its own stale one.
func TestSharedRepeatedOperationAnswersSharedState(t *testing.T) {
	c := newCluster(t)
	a, b := c.replica("a", sharedCanary()), c.replica("b", sharedCanary())
	round(a, b)
	if _, err := a.r.Rollback(bg, "chat"); err != nil {
		t.Fatal(err)
	}
	round(a, b)
	for _, op := range []struct {
		name string
		do   func(*Router) (EndpointSnapshot, error)
		want CanaryState
	}{
		{"resume", func(r *Router) (EndpointSnapshot, error) { return r.Resume(bg, "chat") }, StateStepping},
		{"pause", func(r *Router) (EndpointSnapshot, error) { return r.Pause(bg, "chat") }, StatePaused},
	} {
		if _, err := op.do(a.r); err != nil {
			t.Fatal(err)
		}
		snap, err := op.do(b.r)
		if err != nil {
			t.Fatalf("%s on b after a: %v", op.name, err)
		}
		if snap.Canary == nil || snap.Canary.State != op.want {
			t.Fatalf("%s on b right after a: answered %+v, want %s", op.name, snap.Canary, op.want)
		}
		if got := canaryOf(t, b.r, "chat"); got.State != op.want {
			t.Fatalf("%s on b right after a: b routes as %s, want %s", op.name, got.State, op.want)
		}
	}
}

// TestSharedRefusedOperationFollowsSharedState sends a replica an operation that
// another replica's change, not yet polled, makes inapplicable: the refusal is judged
// on the shared state, and the replica must follow that state, so that the admin
// API's 409 names it ("is promoted"), not the replica's stale one ("is stepping:
// resume does not apply", where README says resuming a stepping canary answers 200).
func TestSharedRefusedOperationFollowsSharedState(t *testing.T) {
	for _, tc := range []struct {
		name   string
		first  func(*Router) (EndpointSnapshot, error)
		then   func(*Router) (EndpointSnapshot, error)
		want   CanaryState
		weight float64
	}{
		{"resume of a promoted canary",
			func(r *Router) (EndpointSnapshot, error) { return r.Promote(bg, "chat") },
			func(r *Router) (EndpointSnapshot, error) { return r.Resume(bg, "chat") }, StatePromoted, 100},
		{"pause of a rolled-back canary",
			func(r *Router) (EndpointSnapshot, error) { return r.Rollback(bg, "chat") },
			func(r *Router) (EndpointSnapshot, error) { return r.Pause(bg, "chat") }, StateRolledBack, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t)
			a, b := c.replica("a", sharedCanary()), c.replica("b", sharedCanary())
			a.r.tick(bg)
			round(a, b)
			if _, err := tc.first(a.r); err != nil {
				t.Fatal(err)
			}
			// b has not ticked since: its operator meets the state a made.
			if _, err := tc.then(b.r); !errors.Is(err, ErrCanaryState) {
				t.Fatalf("%s on another replica: %v, want ErrCanaryState", tc.name, err)
			}
			snap, _ := b.r.EndpointSnapshot("chat")
			if snap.Canary.State != tc.want || decidedWeight(snap) != tc.weight {
				t.Fatalf("after the refused %s, replica b shows %s at %v %%, want %s at %v",
					tc.name, snap.Canary.State, decidedWeight(snap), tc.want, tc.weight)
			}
		})
	}
}

// TestStopReleasesLeaseAfterCutTick stops a leader whose last tick the same
// cancellation cut short: the tick's renewal fails, so the replica no longer counts
// itself leader, yet its lease is still in Redis. Stopping must release it all the
// same, or the others wait out the lease's TTL before one of them drives the canary.
func TestStopReleasesLeaseAfterCutTick(t *testing.T) {
	c := newCluster(t)
	a, b := c.replica("a", sharedCanary()), c.replica("b", sharedCanary())
	round(a, b)
	if !a.r.Leader() || b.r.Leader() {
		t.Fatalf("leaders: a %v, b %v", a.r.Leader(), b.r.Leader())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Run ticks once under the cancelled context (the cut tick), then stops.
	if err := a.r.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if a.r.Leader() {
		t.Fatal("a still leads after it stopped")
	}
	b.r.tick(bg)
	if !b.r.Leader() {
		t.Fatal("b did not take over after a stopped: a's lease was left to expire")
	}
}

// TestSharedLeaderHandover runs alone: goleak.VerifyNone would count the goroutines
// of tests running beside it.
func TestSharedLeaderHandover(t *testing.T) {
	// The redis-server started below is waited on by a redistest goroutine until the
	// test's cleanup stops it, after this check.
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("github.com/tollgate/tollgate/internal/redistest.(*Server).startLocked.func1"))
	c := newCluster(t)
	a, b := c.replica("a", sharedCanary()), c.replica("b", sharedCanary())

	// a runs its loop on a ticker the test drives.
	ticks := make(chan time.Time)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a.r.newTicker = func(time.Duration) (<-chan time.Time, func()) { return ticks, func() {} }
	done := make(chan error, 1)
	go func() { done <- a.r.Run(ctx) }()
	ticks <- c.clock.Now()
	ticks <- c.clock.Now() // returns once the first tick is done
	round(b)
	if !a.r.Leader() || b.r.Leader() {
		t.Fatalf("leaders: a %v, b %v", a.r.Leader(), b.r.Leader())
	}
	feed(a.e, 1, 100, 0, 100*time.Millisecond, 0)
	c.clock.Advance(time.Minute)
	ticks <- c.clock.Now()
	ticks <- c.clock.Now()
	round(b)
	weightsAgree(t, "first step", 10, a, b)

	// Stopping a hands the lease over at b's next tick.
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	b.r.tick(bg)
	if !b.r.Leader() {
		t.Fatal("b did not take over after a stopped")
	}
	pastSwitch(c, b)
	feed(b.e, 1, 100, 0, 100*time.Millisecond, 0)
	c.clock.Advance(time.Minute)
	round(b)
	weightsAgree(t, "step under the new leader", 25, b)

	// A leader that dies without a word loses the lease when it expires.
	d := c.replica("d", sharedCanary())
	round(b, d)
	weightsAgree(t, "a fresh replica adopts the shared weight", 25, d)
	// b stops ticking, as if killed.
	deadline := time.Now().Add(5 * time.Second)
	for !d.r.Leader() {
		if time.Now().After(deadline) {
			t.Fatal("d never took over from a dead leader")
		}
		d.r.tick(bg)
		time.Sleep(25 * time.Millisecond)
	}
	pastSwitch(c, d)
	feed(d.e, 1, 100, 0, 100*time.Millisecond, 0)
	c.clock.Advance(time.Minute)
	round(d)
	weightsAgree(t, "step under the third leader", 50, d)
}

func TestSharedRedisDown(t *testing.T) {
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
	if _, err := b.r.Pause(bg, "chat"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Pause with Redis down: %v", err)
	}
	feed(a.e, 1, 200, 0, 100*time.Millisecond, 0)
	c.clock.Advance(time.Minute)
	round(a, b)
	weightsAgree(t, "held while Redis is down", 10, a, b)
	if a.r.Leader() {
		t.Fatal("a still leads without Redis")
	}
	if !strings.Contains(c.logs.String(), "router shared state unavailable") {
		t.Fatalf("no warning logged:\n%s", c.logs.String())
	}

	// An empty Redis comes back: the replicas publish what they hold, the
	// counts held back during the outage reach the window, and the healthy
	// interval they show earns its step.
	c.srv.Restart()
	round(a, b)
	round(a, b)
	weightsAgree(t, "after restart", 25, a, b)
	pastSwitch(c, a, b)
	feed(a.e, 1, 200, 0, 100*time.Millisecond, 0)
	c.clock.Advance(time.Minute)
	round(a, b)
	weightsAgree(t, "stepping again", 50, a, b)
}

func TestSharedNewRoutesResetState(t *testing.T) {
	c := newCluster(t)
	a, b := c.replica("a", sharedCanary()), c.replica("b", sharedCanary())
	a.r.tick(bg)
	round(a, b)
	feed(a.e, 1, 200, 0, 100*time.Millisecond, 0)
	c.clock.Advance(time.Minute)
	round(a, b)
	weightsAgree(t, "before", 10, a, b)

	// The leader reloads with new routes: it resets the shared state; b,
	// still on the old routes, keeps what it had until it reloads too.
	cfg := sharedCanary()
	cfg.Routes[0].Weight, cfg.Routes[1].Weight = 98, 2
	a.r.Apply([]*Endpoint{mustEndpoint(t, "chat", cfg)})
	round(a, b)
	weightsAgree(t, "leader reloaded", 2, a)
	weightsAgree(t, "follower on the old config", 10, b)
	b.r.Apply([]*Endpoint{mustEndpoint(t, "chat", cfg)})
	round(a, b)
	weightsAgree(t, "both reloaded", 2, a, b)
}

// A replica out of step with Redis (Sync failed, Redis or the network was
// down for it) holds its canary counts until it is in step. Counts it saw
// during a window the cluster has since left must not land in the window
// the cluster is judging now: here d's 100 failed attempts happened while
// the cluster was at 10 %, before it stepped to 25 %, yet once d catches up
// they are flushed into the 25 % window and roll a healthy canary back.
func TestSharedHeldCountsDoNotLandInALaterWindow(t *testing.T) {
	c := newCluster(t)
	a := c.replica("a", sharedCanary())
	a.r.tick(bg)
	feed(a.e, 1, 100, 0, 100*time.Millisecond, 0)
	c.clock.Advance(time.Minute)
	a.r.tick(bg)
	weightsAgree(t, "first step", 10, a)
	pastSwitch(c, a)

	// d starts and serves without reaching Redis (no Sync, no tick): its
	// canary attempts fail during the 10 % window.
	d := c.replica("d", sharedCanary())
	feed(d.e, 1, 100, 100, 100*time.Millisecond, 0)

	// The cluster moves on: a healthy 10 % window earns the next step.
	feed(a.e, 1, 100, 0, 100*time.Millisecond, 0)
	c.clock.Advance(time.Minute)
	a.r.tick(bg)
	weightsAgree(t, "second step", 25, a)

	// d reaches Redis again; the 25 % window so far saw only a's traffic.
	feed(a.e, 1, 100, 0, 100*time.Millisecond, 0)
	round(a, d)
	round(a, d)
	s := canaryOf(t, a.r, "chat")
	if s.State == StateRolledBack {
		t.Fatalf("canary rolled back (%s) by attempts d saw before the 25 %% window began", s.Reason)
	}
	if cl := s.Cluster; cl != nil && cl.Errors != 0 {
		t.Fatalf("the 25 %% window holds %d errors, all from before it began: %+v", cl.Errors, cl)
	}
}

// Two gateways with different endpoints on one Redis: each endpoint has its own
// lease, so the second gateway's failing canary is rolled back although the first
// gateway leads its own endpoint.
func TestSharedLeasePerEndpoint(t *testing.T) {
	c := newCluster(t)
	a := c.replica("gw1-a", sharedCanary()) // endpoint "chat"
	a.r.tick(bg)
	if !a.r.Leader() {
		t.Fatal("a does not lead")
	}
	rdb := redis.NewClient(&redis.Options{Addr: c.srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	b := New(Options{Redis: rdb, KeyPrefix: c.prefix, ID: "gw2-a", Now: c.clock.Now,
		TickEvery: 50 * time.Millisecond, LeaseTTL: 300 * time.Millisecond})
	be := mustEndpoint(t, "search", sharedCanary())
	b.Apply([]*Endpoint{be})
	for range 3 {
		a.r.tick(bg)
		b.tick(bg)
	}
	feed(be, 1, 200, 200, 100*time.Millisecond, 0) // every canary attempt fails
	for range 5 {
		c.clock.Advance(15 * time.Second)
		a.r.tick(bg)
		b.tick(bg)
	}
	if s := canaryOf(t, b, "search"); s.State != StateRolledBack {
		t.Fatalf("gateway 2's canary with 100 %% errors: %s at %v %%, want rolled_back (leader is %v / %v)", s.State, s.Weight, a.r.Leader(), b.Leader())
	}
}

// Redis comes back from an older snapshot (a restart from an RDB file, or a
// failover to a replica that lagged): the state hash goes back to a version from
// before the rollback. The replicas write their newer state back instead of
// following the older one, and the canary stays rolled back.
func TestSharedStateRegressionWrittenBack(t *testing.T) {
	c := newCluster(t)
	a, b := c.replica("a", sharedCanary()), c.replica("b", sharedCanary())
	a.r.tick(bg)
	round(a, b)
	feed(a.e, 1, 200, 0, 100*time.Millisecond, 0)
	c.clock.Advance(time.Minute)
	round(a, b)
	weightsAgree(t, "stepped", 10, a, b)
	key := a.r.shared.stateKey("chat")
	before, err := a.rdb.HGetAll(bg, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.r.Rollback(bg, "chat"); err != nil {
		t.Fatal(err)
	}
	round(a, b)
	weightsAgree(t, "rolled back", 0, a, b)

	// Redis restarts from the snapshot it took before the rollback.
	if err := a.rdb.Del(bg, key).Err(); err != nil {
		t.Fatal(err)
	}
	args := []any{}
	for k, v := range before {
		args = append(args, k, v)
	}
	if err := a.rdb.HSet(bg, key, args...).Err(); err != nil {
		t.Fatal(err)
	}
	round(a, b)
	for i, x := range []*replica{a, b} {
		if s, _ := x.r.EndpointSnapshot("chat"); s.Canary.State != StateRolledBack || decidedWeight(s) != 0 {
			t.Fatalf("replica %d after Redis lost the rollback: canary %s at %v %%, want rolled_back at 0 %%", i, s.Canary.State, decidedWeight(s))
		}
	}
}

// The whole window's counts outlive a day without canary traffic, so a quiet canary
// still reaches min_requests; its slots, which only the recent span reads, expire soon.
func TestSharedWindowOutlivesQuietSpells(t *testing.T) {
	c := newCluster(t)
	a := c.replica("a", sharedCanary())
	round(a)
	feed(a.e, 1, 10, 0, 100*time.Millisecond, 0)
	round(a)
	keys, err := a.rdb.Keys(bg, c.prefix+"ep:{chat}:w:*").Result()
	if err != nil || len(keys) != 2 {
		t.Fatalf("window keys %v (%v), want the window and one slot", keys, err)
	}
	for _, k := range keys {
		ttl, err := a.rdb.PTTL(bg, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		slot := strings.Count(k[strings.Index(k, ":w:"):], ":") > 3 // :w:SIG:SINCE, then :L:K for a slot
		switch {
		case slot && (ttl < 2*time.Minute || ttl > 3*time.Minute+time.Second):
			t.Errorf("slot %s expires in %v, want 2 intervals and a minute", k, ttl)
		case !slot && ttl < 24*time.Hour:
			t.Errorf("window %s expires in %v, want over a day", k, ttl)
		}
	}
}

// A window read just before an operator's resume (or a step another replica
// published) does not judge the canary after it: the resume began a new window, and
// the leader's decision on the old one's counts is dropped for this tick.
func TestSharedDecisionSkipsAWindowReplacedMeanwhile(t *testing.T) {
	c := newCluster(t)
	a := c.replica("a", sharedCanary())
	a.r.tick(bg)
	if _, err := a.r.Pause(bg, "chat"); err != nil {
		t.Fatal(err)
	}
	feed(a.e, 1, 100, 50, 100*time.Millisecond, 0) // a breach, counted while paused
	c.clock.Advance(10 * time.Second)
	resumed := false
	windowsRead = func() {
		if !resumed {
			resumed = true
			if _, err := a.r.Resume(bg, "chat"); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(func() { windowsRead = func() {} })
	a.r.tick(bg)
	if !resumed {
		t.Fatal("the tick read no window")
	}
	if s := canaryOf(t, a.r, "chat"); s.State != StateStepping {
		t.Fatalf("state %s (%s) after a resume that came while the old window was judged, want stepping", s.State, s.Reason)
	}
}
