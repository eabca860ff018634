package limiter

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
)

// TestRedisReadOnlyReplicaNamed points the limiter at a Redis that became a replica
// (a failover that demoted it, or a URL naming a replica): every script call is
// refused with READONLY at once. The limiter answers from its share and its log names
// READONLY, the refusal an operator can act on, rather than a timeout that the client
// library's retries of the refusal ran into; once the Redis is a primary again, limits
// are global again without a restart.
func TestRedisReadOnlyReplicaNamed(t *testing.T) {
	// Not parallel: its checks must reach Redis within a 50ms timeout, and its log, which
	// gets every limiter's Redis client messages, must not say "deadline exceeded".
	primary := redistest.Start(t)
	srv := redistest.Start(t)
	var lb logBuffer
	log := slog.New(slog.NewTextHandler(&lb, nil))
	l := newRedisLimiterLog(t, Config{Redis: RedisConfig{URL: srv.URL()}, Timeout: 50 * time.Millisecond, Prefetch: durationPtr(0)}, log)
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 1000, Window: "day"})
	var tk Ticket
	if err := l.Take(bg, pol, alice, 0, &tk); err != nil || tk.src != srcRedis {
		t.Fatalf("Take = %v from %d, want admitted by Redis", err, tk.src)
	}
	l.Settle(&tk, 0)

	host, port, _ := strings.Cut(primary.Addr(), ":")
	if _, err := redistest.Command(srv.Addr(), "REPLICAOF", host, port); err != nil {
		t.Fatal(err)
	}
	// The warning follows the flag (setDegraded), so the log is waited for too.
	waitFor(t, 10*time.Second, "degraded", l.Degraded)
	waitFor(t, 10*time.Second, "the degraded warning", func() bool { return strings.Contains(lb.String(), "redis unavailable") })
	if err := l.Take(bg, pol, alice, 0, &tk); err != nil || tk.src != srcFallback {
		t.Fatalf("Take = %v from %d, want answered by the fallback share", err, tk.src)
	}
	l.Settle(&tk, 0)
	if out := lb.String(); !strings.Contains(out, "READONLY") || strings.Contains(out, "deadline exceeded") {
		t.Errorf("log does not name READONLY:\n%s", out)
	}

	if _, err := redistest.Command(srv.Addr(), "REPLICAOF", "NO", "ONE"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "recovery", func() bool { return !l.Degraded() })
	if err := l.Take(bg, pol, alice, 0, &tk); err != nil || tk.src != srcRedis {
		t.Fatalf("Take = %v from %d after recovery, want admitted by Redis", err, tk.src)
	}
	l.Settle(&tk, 0)
}
