package limiter

import (
	"context"
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
	resetRedisLogWindows(t, 10*time.Second)
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

// resetRedisLogWindows forgets the message kinds earlier tests logged and sets the
// interval for this test, restoring it after.
func resetRedisLogWindows(t *testing.T, every time.Duration) {
	t.Helper()
	prev := redisLogEvery.Load()
	reset := func() {
		redisLogKindsMu.Lock()
		clear(redisLogByKind)
		redisLogKindsMu.Unlock()
	}
	reset()
	redisLogEvery.Store(int64(every))
	t.Cleanup(func() {
		redisLogEvery.Store(prev)
		reset()
	})
}

type redisLogRecord struct {
	Level, Msg string
	Repeated   int    `json:"omitted"`
	Over       string `json:"interval"`
}

func redisLogRecords(t *testing.T, logs *logBuffer) []redisLogRecord {
	t.Helper()
	var recs []redisLogRecord
	for _, line := range strings.Split(logs.String(), "\n") {
		if !strings.Contains(line, "limiter: redis client: ") {
			continue
		}
		var rec redisLogRecord
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		recs = append(recs, rec)
	}
	return recs
}

// A Redis that stays down makes the client report every failed dial, several a
// second per replica. One line per kind of message and interval reaches the log: the
// first at once, then, while they go on, one per interval naming how many it stands
// for, so none is lost from the count and a message of another kind still gets
// through at once.
func TestRedisClientMessagesThrottled(t *testing.T) {
	var logs logBuffer
	logRedisTo(slog.New(slog.NewJSONHandler(&logs, nil)))
	resetRedisLogWindows(t, 300*time.Millisecond)
	// A format of its own: limiters of earlier tests may still report failed dials.
	const dial = "redis: connection pool: test dial fault after %d attempts: %v"
	sent := 0
	start := time.Now()
	for time.Since(start) < time.Second {
		sent++
		redisLogger{}.Printf(context.Background(), dial, 5, "dial tcp 10.0.0.9:6379: connect: connection refused")
		if sent == 3 {
			redisLogger{}.Printf(context.Background(), "redis: sentinel: new master=%q addr=%q", "mymaster", "10.0.0.8:6379")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The last window closes on its timer, 300 ms after it opened, and its line names
	// the messages held back in it. A loaded machine may run the timer late: wait for
	// every message sent to be counted in the log (or for the cap), then check it.
	const dialPrefix = "limiter: redis client: connection pool: test dial fault after 5 attempts"
	var recs []redisLogRecord
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		recs = redisLogRecords(t, &logs)
		n := 0
		for _, r := range recs {
			if strings.HasPrefix(r.Msg, dialPrefix) {
				n += 1 + r.Repeated
			}
		}
		if n >= sent || time.Since(start) > 10*time.Second {
			break
		}
	}
	counted, dialLines, sentinel := 0, 0, 0
	for _, r := range recs {
		if r.Level != "WARN" {
			t.Errorf("record %+v: want level WARN", r)
		}
		switch {
		case strings.HasPrefix(r.Msg, dialPrefix):
			dialLines++
			counted += 1 + r.Repeated
			if r.Repeated > 0 && r.Over != "300ms" {
				t.Errorf("record %+v: want interval=300ms with a repeat count", r)
			}
		case strings.HasPrefix(r.Msg, "limiter: redis client: sentinel: new master="):
			sentinel++
		}
	}
	if counted != sent {
		t.Errorf("dial failures counted in the log %d, sent %d (%d lines)", counted, sent, dialLines)
	}
	// ~1 s of messages at 300 ms per line: the first, three or four window ends.
	if dialLines < 2 || dialLines > 6 {
		t.Errorf("%d lines for %d dial failures in 1s at one per 300ms: want 2..6\n%s", dialLines, sent, logs.String())
	}
	if sentinel != 1 {
		t.Errorf("sentinel message logged %d times, want 1 (another kind is not held back)", sentinel)
	}

	// Quiet for a whole interval (the last line went out before the records read
	// above, and opened the window): the next message is logged at once again.
	time.Sleep(400 * time.Millisecond)
	redisLogger{}.Printf(context.Background(), dial, 5, "refused at last")
	recs = redisLogRecords(t, &logs)
	if r := recs[len(recs)-1]; !strings.HasSuffix(r.Msg, "refused at last") || r.Repeated != 0 {
		t.Errorf("after a quiet interval the last record is %+v, want the message at once without a repeat count", r)
	}
}

// A real Redis killed under load: the replica's log gets a few lines, not one per
// failed dial.
func TestRedisDownLogsAFewLines(t *testing.T) {
	srv := redistest.Start(t)
	resetRedisLogWindows(t, time.Second)
	var logs logBuffer
	off := time.Duration(0)
	l := newRedisLimiterLog(t, Config{Redis: RedisConfig{URL: srv.URL()}, Timeout: 50 * time.Millisecond, Prefetch: &off},
		slog.New(slog.NewJSONHandler(&logs, nil)))
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 1_000_000, Window: "second"})
	srv.Kill()
	start := time.Now()
	for time.Since(start) < 2500*time.Millisecond {
		var tk Ticket
		_ = l.Take(bg, pol, alice, 0, &tk)
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(1200 * time.Millisecond)
	recs := redisLogRecords(t, &logs)
	kinds := map[string]int{}
	repeated := 0
	for _, r := range recs {
		k := r.Msg
		if i := strings.IndexAny(k, "0123456789"); i > 0 {
			k = k[:i]
		}
		kinds[k]++
		repeated += r.Repeated
	}
	if len(recs) == 0 {
		t.Fatalf("no Redis client line in 3.7s with Redis down:\n%s", logs.String())
	}
	for k, n := range kinds {
		// 2.5 s of failures at one line a second: the first, then up to four window ends.
		if n > 5 {
			t.Errorf("%d lines of %q in 3.7s at one a second", n, k)
		}
	}
	t.Logf("%d lines standing for %d messages: %v", len(recs), len(recs)+repeated, kinds)
}

// A replica stopped (or a limiter reloaded away) while Redis is failing: Close writes
// the count of the Redis client's messages held back in the current window, which
// would otherwise wait for the window's timer, after Close, or be lost at exit.
func TestRedisClientCountWrittenByClose(t *testing.T) {
	srv := redistest.Start(t)
	resetRedisLogWindows(t, 10*time.Second)
	var logs logBuffer
	off := time.Duration(0)
	l := newRedisLimiterLog(t, Config{Redis: RedisConfig{URL: srv.URL()}, Timeout: 50 * time.Millisecond, Prefetch: &off},
		slog.New(slog.NewJSONHandler(&logs, nil)))
	// A format of its own, as a failed dial's: no other test's client reports it.
	const dial = "redis: connection pool: close fault after %d attempts: %v"
	const sent = 3
	for range sent {
		redisLogger{}.Printf(context.Background(), dial, 5, "dial tcp 10.0.0.9:6379: connect: connection refused")
	}
	redisLogKindsMu.Lock()
	st := redisLogByKind[dial]
	redisLogKindsMu.Unlock()
	t.Cleanup(func() {
		// The window's timer still holds st: leave it nothing to write into a
		// later test's log.
		redisLogKindsMu.Lock()
		st.suppressed, st.last, st.lastCtx = 0, "", nil
		redisLogKindsMu.Unlock()
	})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	counted, lines := 0, 0
	for _, r := range redisLogRecords(t, &logs) {
		if !strings.HasPrefix(r.Msg, "limiter: redis client: connection pool: close fault") {
			continue
		}
		lines++
		counted += 1 + r.Repeated
	}
	if counted != sent {
		t.Errorf("observed %d line(s) standing for %d of the %d client messages once Close returned "+
			"(the rest wait for a timer up to 10 s later, or are lost at exit); expected Close to write the "+
			"pending count, lines standing for all %d\n%s", lines, counted, sent, sent, logs.String())
	}
}
