package providers

import (
	"context"
	"testing"
	"time"
)

// The first active check of a target decides at once whether it is up, whatever the
// thresholds: a gateway that starts with every target of a backend down must not
// count them healthy (and be ready, behind its load balancer) for the
// unhealthy_threshold checks it takes to find them down. From the second check on the
// thresholds apply, as before.
func TestFirstActiveCheckDecides(t *testing.T) {
	cases := []struct {
		name  string
		first int
		// then are the statuses of the checks after the first, with the health
		// after each.
		then   []int
		wantUp []bool
	}{
		{"failing first check takes it down", 503, []int{200, 200}, []bool{false, true}},
		{"passing first check keeps it up", 200, []int{503, 503, 503}, []bool{true, true, false}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := startReplica(t)
			b := newPoolBackend(t, Config{BaseURL: u.url(), Health: HealthConfig{Path: "/health", HealthyThreshold: 2, UnhealthyThreshold: 3}}, nil)
			u.health.Store(int64(tc.first))
			b.check(0)
			if up := b.Healthy(); up != (tc.first == 200) {
				t.Fatalf("after the first check (%d): up %v", tc.first, up)
			}
			for i, st := range tc.then {
				u.health.Store(int64(st))
				b.check(0)
				if up := b.Healthy(); up != tc.wantUp[i] {
					t.Fatalf("after check %d (%d): up %v, want %v (thresholds 2 and 3 apply after the first)", i+2, st, up, tc.wantUp[i])
				}
			}
		})
	}
}

// A reload that keeps active checks keeps what they found, the first check done
// included: the new backend's first check is not a first check of the target, so one
// failure does not take a target in service down.
func TestFirstCheckSurvivesReload(t *testing.T) {
	u := startReplica(t)
	ps := NewPools()
	checks := HealthConfig{Path: "/health", HealthyThreshold: 2, UnhealthyThreshold: 3}
	old := newPoolBackend(t, Config{BaseURL: u.url(), Health: checks}, ps)
	old.check(0)
	reloaded := newPoolBackend(t, Config{BaseURL: u.url(), Health: checks}, ps)
	_ = old.Close()
	if !reloaded.AwaitChecks(context.Background()) {
		t.Fatal("the reloaded backend waits for a first check its target already had")
	}
	u.health.Store(503)
	reloaded.check(0)
	if !reloaded.Healthy() {
		t.Fatal("one failed check after a reload took the target down: the reload forgot its first check")
	}
}

// AwaitChecks returns once every target has had its first active check, at once for a
// backend without active checks, and gives up when its context ends.
func TestAwaitChecks(t *testing.T) {
	us := startReplicas(t, 2)
	t.Run("without active checks", func(t *testing.T) {
		b := newPoolBackend(t, Config{Targets: replicaURLs(us)}, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if !b.AwaitChecks(ctx) {
			t.Fatal("a backend without active checks has something to wait for")
		}
	})
	t.Run("with active checks", func(t *testing.T) {
		b := newPoolBackend(t, Config{Targets: replicaURLs(us), Health: HealthConfig{Path: "/health"}}, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if b.AwaitChecks(ctx) {
			t.Fatal("no check has run, yet AwaitChecks reports them done")
		}
		b.check(0)
		if b.AwaitChecks(ctx) {
			t.Fatal("one of two targets checked, yet AwaitChecks reports them done")
		}
		b.check(1)
		if !b.AwaitChecks(ctx) {
			t.Fatal("both targets checked, yet AwaitChecks waits")
		}
	})
	t.Run("started", func(t *testing.T) {
		us[0].health.Store(503)
		b := newPoolBackend(t, Config{Targets: replicaURLs(us), Health: HealthConfig{Path: "/health", Interval: time.Hour}}, nil)
		b.Start(context.Background())
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if !b.AwaitChecks(ctx) {
			t.Fatal("Start ran no first check within 30s")
		}
		if h := b.Health(); h[0].Up || !h[1].Up {
			t.Fatalf("health %+v after the first checks, want the failing target down", h)
		}
	})
}
