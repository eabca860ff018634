package limiter

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
)

// A check that began before the limiter's last recovery and fails after it (its
// client's retries or its timeout outlasted a brief outage) says nothing of Redis now:
// it does not mark Redis down again. One that began after the recovery does.
func TestCheckFailureFromBeforeRecoveryIgnored(t *testing.T) {
	srv := redistest.Start(t)
	var logs logBuffer
	// No heartbeat or probe during the test: the transitions are the test's own.
	quiet := func(o *options) { o.heartbeatEvery, o.probeEvery = time.Hour, time.Hour }
	l := newRedisLimiterLog(t, Config{Redis: RedisConfig{URL: srv.URL()}, OnRedisError: "deny"},
		slog.New(slog.NewTextHandler(&logs, nil)), quiet)
	if l.Degraded() {
		t.Fatal("setup: degraded with Redis up")
	}
	lost := errors.New("connection reset")
	began := l.recoveries.Load()
	l.setDegraded(true, lost) // the outage
	l.setDegraded(false, nil) // the recovery
	l.checkFailed(began, errCheckTimeout)
	if l.Degraded() {
		t.Fatalf("a check sent during the outage, timing out after the recovery, marked Redis down again:\n%s", logs.String())
	}
	l.checkFailed(l.recoveries.Load(), lost)
	if !l.Degraded() {
		t.Fatal("a check sent after the recovery failed, yet Redis is not marked down")
	}
	if down, up := logs.count("redis unavailable"), logs.count("redis answers again"); down != 2 || up != 1 {
		t.Errorf("logged %d outages and %d recoveries, want 2 and 1:\n%s", down, up, logs.String())
	}
}
