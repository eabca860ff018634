package providers

import (
	"context"
	"testing"
	"time"
)

// A reload replaces a backend while requests of the old config may still be in flight
// on it (the gateway closes it when they end, a stream may take minutes). Once its
// successor is activated, its active checks stop deciding the target's shared state:
// a reload that fixes health.path brings the target back on the new checks alone.
func TestReplacedBackendStopsChecking(t *testing.T) {
	u := startReplica(t)
	ps := NewPools()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	old := newPoolBackend(t, Config{BaseURL: u.url(), Health: HealthConfig{Path: "/nope", Interval: 20 * time.Millisecond, Timeout: time.Second}}, ps)
	old.Start(ctx)
	old.Activate()
	waitUntil(t, "the wrong path takes the target down", func() bool { return !old.Health()[0].Up })

	reloaded := newPoolBackend(t, Config{BaseURL: u.url(), Health: HealthConfig{Path: "/health", HealthyThreshold: 2}}, ps)
	reloaded.Activate()
	old.pool.wg.Wait() // its checks ended, without a Close
	reloaded.check(0)
	old.check(0) // one under way when the reload came
	reloaded.check(0)
	if !reloaded.Health()[0].Up {
		t.Error("two passing checks of the fixed health.path (healthy_threshold 2) left the target down: the replaced backend's checks still count")
	}
}

// The same for balance vllm_queue's load reads: after a reload that fixes
// metrics_path, the replaced backend's reads of the old path no longer mark the
// target's load unread.
func TestReplacedBackendStopsReadingLoad(t *testing.T) {
	u := startReplica(t)
	ps := NewPools()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	old := newPoolBackend(t, Config{BaseURL: u.url(), Balance: "vllm_queue", MetricsPath: "/nope", MetricsInterval: 20 * time.Millisecond}, ps)
	old.Start(ctx)
	old.Activate()
	reloaded := newPoolBackend(t, Config{BaseURL: u.url(), Balance: "vllm_queue"}, ps)
	reloaded.Activate()
	old.pool.wg.Wait()
	st := reloaded.pool.states[0]
	reloaded.readLoad(0, nil)
	old.readLoad(0, nil) // one under way when the reload came
	if !st.load.ok.Load() {
		t.Error("after a reload fixed metrics_path, a read of the replaced backend's old path marked the target's load unread")
	}
}

// A retired backend no longer counts as running checks on its targets: a reload that
// turns active checks off brings a target they took down back at once, not when the
// old config's last request ends.
func TestRetiredBackendGivesUpItsChecks(t *testing.T) {
	u := startReplica(t)
	ps := NewPools()
	old := newPoolBackend(t, Config{BaseURL: u.url(), Health: HealthConfig{Path: "/health", UnhealthyThreshold: 1}}, ps)
	old.Activate()
	u.health.Store(503)
	old.check(0)
	if old.Health()[0].Up {
		t.Fatal("a failed check did not take the target down")
	}
	reloaded := newPoolBackend(t, Config{BaseURL: u.url()}, ps)
	reloaded.Activate()
	if !reloaded.Health()[0].Up {
		t.Error("after a reload turned active checks off, the target they took down is still down while the replaced backend is open")
	}
	old.Retire() // again, as the gateway's retire does: nothing more
	_ = old.Close()
	if !reloaded.Health()[0].Up {
		t.Error("closing the retired backend took the target down")
	}
}
