package limiter

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/redistest"
)

// TestPeekRefusedAtConnection rotates Redis's password under a running limiter and
// drops its connections: every new connection's AUTH fails with WRONGPASS, and go-redis
// stamps no error on the pipeline's commands. Each reading is unavailable with Redis's
// refusal as its error, not an empty reply's type mismatch; with Redis down the error
// names the connection's failure.
func TestPeekRefusedAtConnection(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	if _, err := redistest.Command(srv.Addr(), "CONFIG", "SET", "requirepass", "old-pw"); err != nil {
		t.Fatal(err)
	}
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr(), Password: "old-pw", DisableIdentity: true, Protocol: 2})
	t.Cleanup(func() { _ = admin.Close() })
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: "redis://:old-pw@" + srv.Addr() + "/0"}, Timeout: 500 * time.Millisecond})
	pol := mustPolicy(t, "key:team-a", peekLimits...)
	if rs := l.Peek(bg, probesOf(pol, alice)); rs[0].Source != FromRedis || rs[0].Err != nil {
		t.Fatalf("Redis up: %+v", rs)
	}

	if err := admin.ConfigSet(bg, "requirepass", "new-pw").Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.ClientKillByFilter(bg, "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
		t.Fatal(err)
	}
	for i, r := range l.Peek(bg, probesOf(pol, alice)) {
		if r.Source != Unavailable || r.Err == nil || !strings.Contains(r.Err.Error(), "WRONGPASS") {
			t.Errorf("limit %d with AUTH refused: %+v, want unavailable for WRONGPASS", i, r)
		}
		if r.Err != nil && strings.Contains(r.Err.Error(), "old-pw") {
			t.Errorf("limit %d: the error shows the password: %v", i, r.Err)
		}
	}

	srv.Kill()
	for i, r := range l.Peek(bg, probesOf(pol, alice)) {
		if r.Source != Unavailable || r.Err == nil || strings.Contains(r.Err.Error(), "unexpected type") {
			t.Errorf("limit %d with Redis down: %+v, want unavailable for the connection's error", i, r)
		}
	}
}
