package providers

import (
	"context"
	"testing"
)

// A reload that keeps a backend as it was builds its successor, which retires it
// (Activate): the retired backend's checks stop with their connections, and the
// successor's, of the same name and target, go on and decide the target's health,
// while a check the retired one starts after Retire records nothing.
func TestRetireKeepsSuccessorChecks(t *testing.T) {
	u := startReplica(t)
	ps := NewPools()
	cfg := Config{BaseURL: u.url(), Health: HealthConfig{Path: "/health", HealthyThreshold: 1, UnhealthyThreshold: 1}}
	old := newPoolBackend(t, cfg, ps)
	old.Activate()
	old.check(0)
	kept := newPoolBackend(t, cfg, ps)
	kept.Start(context.Background())
	kept.Activate()
	old.Retire()
	if _, err := old.pool.probes.dial(nil)("x", 0); err != errProbesStopped {
		t.Fatalf("the retired backend's checks dial on: %v", err)
	}
	u.health.Store(503)
	// A check of the retired backend that starts after Retire (its ticker fired as
	// it was cancelled) fails to dial and records nothing.
	old.check(0)
	if !kept.Healthy() {
		t.Fatal("a check of the retired backend was recorded")
	}
	kept.check(0)
	if kept.Healthy() {
		t.Fatal("the successor's check of a failing target was not recorded")
	}
	u.health.Store(200)
	kept.check(0)
	if !kept.Healthy() {
		t.Fatal("the successor's check of a recovered target was not recorded")
	}
}
