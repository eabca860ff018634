//go:build !race

package limiter

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
)

func TestAllocs(t *testing.T) {
	l := newMemLimiter(t, newTestClock())
	full := mustPolicy(t, "chat",
		Limit{Per: "api_key", Requests: 1000, Window: "second"},
		Limit{Per: "user", Tokens: 1_000_000, Window: "second"},
		Limit{Per: "ip", Concurrency: 1000})
	refusing := mustPolicy(t, "tiny", Limit{Per: "api_key", Requests: 1, Window: "day"})
	var tk Ticket
	_ = l.Take(bg, refusing, alice, 0, &tk)
	buf := make([]byte, 0, 32)
	tests := []struct {
		name string
		fn   func()
	}{
		{"nil policy", func() { _ = l.Take(bg, nil, alice, 10, &tk); l.Settle(&tk, 10) }},
		{"memory take and settle", func() {
			if err := l.Take(bg, full, alice, 100, &tk); err != nil {
				t.Fatal(err)
			}
			l.Settle(&tk, 80)
		}},
		{"memory refusal", func() {
			if err := l.Take(bg, refusing, alice, 0, &tk); err == nil {
				t.Fatal("admitted")
			}
		}},
		{"headers", func() {
			buf = AppendReset(buf[:0], 1500*time.Millisecond)
			buf = AppendRetryAfter(buf, time.Second)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn() // first use creates the buckets
			if n := testing.AllocsPerRun(200, tc.fn); n != 0 {
				t.Errorf("%v allocations per call, want 0", n)
			}
		})
	}
}

// TestRedisTakeAllocs pins what a lone Redis check allocates in all, the round trip
// included (go-redis's command and pipeline, the reply, the deadline's context): the
// request's own path allocates nothing, and under load the round's allocations are
// shared by every check in it.
func TestRedisTakeAllocs(t *testing.T) {
	srv := redistest.Start(t)
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}})
	pol := mustPolicy(t, "chat",
		Limit{Per: "api_key", Requests: 1000, Window: "day", Burst: maxAmount},
		Limit{Per: "api_key", Tokens: 1000, Window: "day", Burst: maxAmount})
	var tk Ticket
	take := func() {
		if err := l.Take(bg, pol, alice, 100, &tk); err != nil {
			t.Fatal(err)
		}
	}
	take()
	const budget = 20
	if n := testing.AllocsPerRun(200, take); n > budget {
		t.Errorf("%v allocations per lone check, budget %d", n, budget)
	}
}
