package limiter

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
)

// The Redis client's own messages (here: a pool that cannot dial a Redis that died)
// reach the gateway's logger, in its format and at warn level, not stderr as text.
func TestRedisClientMessagesGoToTheLogger(t *testing.T) {
	srv := redistest.Start(t)
	var logs logBuffer
	off := time.Duration(0)
	l := newRedisLimiterLog(t, Config{Redis: RedisConfig{URL: srv.URL()}, Timeout: 50 * time.Millisecond, Prefetch: &off},
		slog.New(slog.NewJSONHandler(&logs, nil)))
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 1_000_000, Window: "second"})
	srv.Kill()
	deadline := time.Now().Add(5 * time.Second)
	for logs.count("limiter: redis client: ") == 0 && time.Now().Before(deadline) {
		var tk Ticket
		_ = l.Take(bg, pol, alice, 0, &tk)
		time.Sleep(20 * time.Millisecond)
	}
	found := false
	for _, line := range strings.Split(logs.String(), "\n") {
		if !strings.Contains(line, "limiter: redis client: ") {
			continue
		}
		found = true
		var rec struct{ Level, Msg string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Level != "WARN" {
			t.Errorf("redis client line %q: level %q (%v), want a WARN record in the logger's format", line, rec.Level, err)
		}
	}
	if !found {
		t.Fatalf("no message of the Redis client reached the logger in 5s:\n%s", logs.String())
	}
}
