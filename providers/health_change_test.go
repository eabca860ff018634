package providers

import (
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"
)

// healthChanges gathers what a backend's OnHealth is told.
type healthChanges struct {
	mu  sync.Mutex
	got []HealthChange
}

func (h *healthChanges) note(c HealthChange) {
	h.mu.Lock()
	h.got = append(h.got, c)
	h.mu.Unlock()
}

// take returns the changes told since the last take.
func (h *healthChanges) take() []HealthChange {
	h.mu.Lock()
	defer h.mu.Unlock()
	got := h.got
	h.got = nil
	return got
}

// A target ejected by failed requests is told once, when it leaves service, with the
// failures that ejected it and the ejection's length; the requests that fail on it
// before the ejection counted and the trials that fail while it stays out tell
// nothing more; the trial that brings it back tells how long it was out.
func TestHealthChangesOfPassiveEjection(t *testing.T) {
	clk := newFakeClock()
	us := startReplicas(t, 2)
	var hc healthChanges
	b := newPoolBackend(t, Config{Targets: replicaURLs(us), Health: HealthConfig{EjectAfter: 2, EjectFor: 10 * time.Second},
		OnHealth: hc.note}, poolsWithClock(clk))
	dead := us[1].url()
	us[1].kill()
	for i := range 10 {
		sendOnce(b, promptCall("q"+strconv.Itoa(i), false))
	}
	got := hc.take()
	if len(got) != 1 {
		t.Fatalf("told %+v, want one change: the ejection", got)
	}
	want := HealthChange{Backend: "pool", Target: 1, URL: dead, Cause: CauseEjected, Failures: 2, For: 10 * time.Second}
	if got[0] != want {
		t.Fatalf("told %+v, want %+v", got[0], want)
	}

	// Its trial fails: out again, for longer, but it never came back, so no change.
	clk.Advance(10 * time.Second)
	if url, err := sendOnce(b, promptCall("probe", false)); url != dead || !errors.Is(err, ErrConnect) {
		t.Fatalf("trial went to %s (%v), want the ejected target", url, err)
	}
	if got := hc.take(); len(got) != 0 {
		t.Fatalf("a failed trial of a target out of service told %+v", got)
	}

	us[1].restart()
	clk.Advance(20 * time.Second)
	if url, err := sendOnce(b, promptCall("probe", false)); url != dead || err != nil {
		t.Fatalf("trial went to %s (%v), want the recovered target", url, err)
	}
	got = hc.take()
	want = HealthChange{Backend: "pool", Target: 1, URL: dead, Up: true, Cause: CauseTrialPassed, Out: 30 * time.Second}
	if len(got) != 1 || got[0] != want {
		t.Fatalf("told %+v, want one change %+v", got, want)
	}
	for i := range 6 {
		if _, err := sendOnce(b, promptCall("s"+strconv.Itoa(i), false)); err != nil {
			t.Fatal(err)
		}
	}
	if got := hc.take(); len(got) != 0 {
		t.Fatalf("requests served told %+v", got)
	}
}

// Active checks tell a target found down, with the failing check's status or its
// error's class, once however many checks fail after, and the check that brings it
// back.
func TestHealthChangesOfActiveChecks(t *testing.T) {
	clk := newFakeClock()
	u := startReplica(t)
	var hc healthChanges
	b := newPoolBackend(t, Config{BaseURL: u.url(), Health: HealthConfig{Path: "/health", HealthyThreshold: 2, UnhealthyThreshold: 2},
		OnHealth: hc.note}, poolsWithClock(clk))
	b.check(0)
	if got := hc.take(); len(got) != 0 {
		t.Fatalf("a passing first check told %+v", got)
	}
	u.health.Store(503)
	b.check(0)
	clk.Advance(5 * time.Second)
	b.check(0)
	got := hc.take()
	want := HealthChange{Backend: "pool", Target: 0, URL: u.url(), Cause: CauseCheckFailed, Status: 503}
	if len(got) != 1 || got[0] != want {
		t.Fatalf("told %+v, want one change %+v", got, want)
	}
	b.check(0)
	b.check(0)
	if got := hc.take(); len(got) != 0 {
		t.Fatalf("checks failing on a target already down told %+v", got)
	}
	u.health.Store(200)
	b.check(0)
	if got := hc.take(); len(got) != 0 {
		t.Fatalf("one passing check of two told %+v", got)
	}
	clk.Advance(5 * time.Second)
	b.check(0)
	got = hc.take()
	want = HealthChange{Backend: "pool", Target: 0, URL: u.url(), Up: true, Cause: CauseCheckPassed, Out: 5 * time.Second}
	if len(got) != 1 || got[0] != want {
		t.Fatalf("told %+v, want one change %+v", got, want)
	}

	// A target that stops answering: the error's class, no status.
	u.kill()
	b.check(0)
	b.check(0)
	got = hc.take()
	if len(got) != 1 || got[0].Up || got[0].Cause != CauseCheckFailed || got[0].Status != 0 || !errors.Is(got[0].Err, ErrConnect) {
		t.Fatalf("told %+v, want the target out, its check unreachable", got)
	}
}

// A target that active checks took down comes back when a reload turns the checks
// off: told by the backend retired, whose checks found it down.
func TestHealthChangeWhenChecksTurnOff(t *testing.T) {
	u := startReplica(t)
	ps := NewPools()
	var hc healthChanges
	old := newPoolBackend(t, Config{BaseURL: u.url(), Health: HealthConfig{Path: "/health"}, OnHealth: hc.note}, ps)
	old.Activate()
	u.health.Store(503)
	old.check(0)
	if got := hc.take(); len(got) != 1 || got[0].Up {
		t.Fatalf("told %+v, want the target out", got)
	}
	reloaded := newPoolBackend(t, Config{BaseURL: u.url(), OnHealth: hc.note}, ps)
	reloaded.Activate()
	got := hc.take()
	if len(got) != 1 || !got[0].Up || got[0].Cause != CauseChecksOff {
		t.Fatalf("told %+v, want the target back: no checks left", got)
	}
}

// A backend without OnHealth (tests and tools that build pools directly) moves its
// targets as before.
func TestHealthChangesWithoutListener(t *testing.T) {
	us := startReplicas(t, 2)
	b := newPoolBackend(t, Config{Targets: replicaURLs(us), Health: HealthConfig{EjectAfter: 1}}, nil)
	us[0].kill()
	for i := range 4 {
		sendOnce(b, promptCall("q"+strconv.Itoa(i), false))
	}
	if h := b.Health(); h[0].Up || !h[1].Up {
		t.Fatalf("health %+v, want the killed target ejected", h)
	}
}
