package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// lines returns the msg of each line written so far, with the line.
func (b *lineBuffer) lines(t *testing.T) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// A pod resized in place (Kubernetes changes resources.limits.memory of a running
// container) has its cgroup's limit changed under the gateway: the runtime's limit
// follows it, each change logged once; a limit lifted lifts the runtime's; a cgroup
// that cannot be read any more leaves the limit as it was, with one warning.
func TestMemoryLimitFollowsCgroup(t *testing.T) {
	const gib = 1 << 30
	unsetEnv(t, "GOMEMLIMIT")
	unsetEnv(t, "AUTOMEMLIMIT")
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })

	var limit atomic.Uint64
	var failing atomic.Bool
	limit.Store(4 * gib)
	cgroup := func() (uint64, error) {
		if failing.Load() {
			return 0, errors.New("failed to open /proc/self/mountinfo: permission denied")
		}
		if n := limit.Load(); n != 0 {
			return n, nil
		}
		return 0, memlimit.ErrNoLimit
	}
	m := applyMemoryLimit(cgroup)
	if m.bytes != 4*gib*9/10 {
		t.Fatalf("initial limit %d, want %d", m.bytes, 4*gib*9/10)
	}
	logs := &lineBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.follow(ctx, cgroup, slog.New(slog.NewJSONHandler(logs, nil)), time.Millisecond); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	waitLimit := func(want int64) {
		t.Helper()
		waitUntil(t, func() bool { return debug.SetMemoryLimit(-1) == want })
	}
	limit.Store(2 * gib)
	waitLimit(2 * gib * 9 / 10)
	limit.Store(0)
	waitLimit(math.MaxInt64)
	limit.Store(8 * gib)
	waitLimit(8 * gib * 9 / 10)
	failing.Store(true)
	waitUntil(t, func() bool { return len(logs.lines(t)) == 4 })
	// Many reads fail alike: still one warning, and the limit stays.
	time.Sleep(20 * time.Millisecond)
	if got := debug.SetMemoryLimit(-1); got != 8*gib*9/10 {
		t.Fatalf("limit %d after the cgroup became unreadable, want %d kept", got, 8*gib*9/10)
	}

	lines := logs.lines(t)
	want := []struct {
		msg       string
		limit     float64
		prevLimit float64
	}{
		{"memory limit changed", 2 * gib * 9 / 10, 4 * gib * 9 / 10},
		{"memory limit lifted", 0, 2 * gib * 9 / 10},
		{"memory limit changed", 8 * gib * 9 / 10, 0},
		{"memory limit not refreshed", 8 * gib * 9 / 10, 0},
	}
	if len(lines) != len(want) {
		t.Fatalf("logged %d lines, want %d: %v", len(lines), len(want), lines)
	}
	for i, w := range want {
		l := lines[i]
		if l["msg"] != w.msg {
			t.Fatalf("line %d: %v, want msg %q", i, l, w.msg)
		}
		switch w.msg {
		case "memory limit changed":
			if l["limit_bytes"] != w.limit || l["previous_limit_bytes"] != w.prevLimit || l["source"] != "cgroup" {
				t.Errorf("line %d: %v, want limit_bytes %v, previous_limit_bytes %v, source cgroup", i, l, w.limit, w.prevLimit)
			}
		case "memory limit lifted":
			if l["previous_limit_bytes"] != w.prevLimit {
				t.Errorf("line %d: %v, want previous_limit_bytes %v", i, l, w.prevLimit)
			}
		case "memory limit not refreshed":
			if l["level"] != "WARN" || l["error"] == nil || l["limit_bytes"] != w.limit {
				t.Errorf("line %d: %v, want a warning with the error and limit_bytes %v", i, l, w.limit)
			}
		}
	}
}

// With GOMEMLIMIT set, or AUTOMEMLIMIT off, the cgroup is not followed: the limit is
// the operator's.
func TestMemoryLimitNotFollowedWhenOperatorSetsIt(t *testing.T) {
	for _, env := range [][2]string{{"GOMEMLIMIT", "512MiB"}, {"AUTOMEMLIMIT", "off"}} {
		t.Run(env[0], func(t *testing.T) {
			unsetEnv(t, "GOMEMLIMIT")
			unsetEnv(t, "AUTOMEMLIMIT")
			t.Setenv(env[0], env[1])
			done := make(chan struct{})
			go func() {
				memLimit{}.follow(context.Background(), func() (uint64, error) {
					t.Error("the cgroup was read")
					return 1 << 30, nil
				}, slog.New(slog.NewJSONHandler(&lineBuffer{}, nil)), time.Millisecond)
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("follow still runs; expected it to return at once")
			}
		})
	}
}
