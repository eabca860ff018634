package limiter

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/redistest"
)

// TestRedisRotatedPasswordRefusesCalls rotates Redis's password under a running
// limiter and drops its connections: every new connection's AUTH fails with
// WRONGPASS, so no call reaches Redis. A token refund queued then is kept and sent
// once the password is back (Redis surely did not run it), not dropped as if the call
// might have run, and the check that fails names Redis's refusal in the log rather
// than an empty reply.
func TestRedisRotatedPasswordRefusesCalls(t *testing.T) {
	srv := redistest.Start(t)
	if _, err := redistest.Command(srv.Addr(), "CONFIG", "SET", "requirepass", "old-pw"); err != nil {
		t.Fatal(err)
	}
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr(), Password: "old-pw", DisableIdentity: true, Protocol: 2})
	t.Cleanup(func() { _ = admin.Close() })
	var lb logBuffer
	log := slog.New(slog.NewTextHandler(&lb, nil))
	url := "redis://:old-pw@" + srv.Addr() + "/0"
	l := newRedisLimiterLog(t, Config{Redis: RedisConfig{URL: url}, Timeout: 500 * time.Millisecond, Prefetch: durationPtr(0)}, log)
	// 1000 tokens a day: no refill within the test.
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Tokens: 1000, Window: "day"})
	var tk Ticket
	if err := l.Take(bg, pol, alice, 600, &tk); err != nil || tk.src != srcRedis {
		t.Fatalf("Take = %v from %d, want admitted by Redis", err, tk.src)
	}

	if err := admin.ConfigSet(bg, "requirepass", "new-pw").Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.ClientKillByFilter(bg, "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
		t.Fatal(err)
	}
	before := l.Stats().DroppedSettles
	l.Settle(&tk, 300) // a refund of 300
	waitFor(t, 10*time.Second, "the refund fails", func() bool {
		return l.rs.kept() == 1 || l.Stats().DroppedSettles != before
	})
	if d := l.Stats().DroppedSettles - before; d != 0 || l.rs.kept() != 1 {
		t.Fatalf("refund refused by WRONGPASS: %d dropped, %d kept; want 0 and 1", d, l.rs.kept())
	}
	// A check while Redis refuses every connection is answered without it.
	var tk2 Ticket
	if err := l.Take(bg, pol, alice, 0, &tk2); err != nil || tk2.src != srcFallback {
		t.Fatalf("Take = %v from %d, want answered by the fallback share", err, tk2.src)
	}
	l.Settle(&tk2, 0)
	waitFor(t, 5*time.Second, "degraded", l.Degraded)
	if out := lb.String(); !strings.Contains(out, "WRONGPASS") || strings.Contains(out, "unexpected type") {
		t.Errorf("log does not name Redis's refusal:\n%s", out)
	}

	if err := admin.ConfigSet(bg, "requirepass", "old-pw").Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "recovery", func() bool { return !l.Degraded() })
	barrier(t, l)
	if err := l.Take(bg, pol, alice, 0, &tk); err != nil || tk.src != srcRedis {
		t.Fatalf("Take = %v from %d, want admitted by Redis", err, tk.src)
	}
	if got := tk.Tokens.Remaining; got != 700 {
		t.Errorf("Tokens.Remaining %d after recovery, want 700 (the refund of 300 applied once)", got)
	}
	l.Settle(&tk, 0)
	if d := l.Stats().DroppedSettles - before; d != 0 || l.rs.kept() != 0 {
		t.Errorf("%d settlements dropped, %d still kept; want 0 and 0", d, l.rs.kept())
	}
}
