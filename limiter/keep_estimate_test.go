package limiter

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
)

// An answer without a usage count (KeepEstimate) keeps its whole estimate charged, as
// a usage count does: an estimate above the bucket's burst, or above this replica's
// share of it while Redis is down, is charged only what fits at Take, and the
// settlement charges the rest (README, Rate limits). Without it a client could draw
// a max_tokens of any size per full bucket from an upstream that reports no usage. An
// estimate within the bucket, charged whole at Take, is not charged again.
func TestKeepEstimateChargesWholeEstimate(t *testing.T) {
	// Not parallel: the late store's checks must reach Redis within a 100ms timeout,
	// which other tests' load can exceed.
	// 1000 tokens a day: one token per 86.4 s.
	lim := Limit{Per: "user", Tokens: 1000, Window: "day"}
	const iv = 86400 * time.Second / 1000
	stores := []struct {
		name string
		open func(t *testing.T) *Limiter
		// share is the replicas the fallback divides the bucket by, 1 when the
		// bucket read is the whole one.
		share float64
		// late answers the request without Redis while its check waits, and settles
		// the check in Redis once it runs (Limiter.compensate, handOver).
		late bool
	}{
		{name: "memory", share: 1, open: func(t *testing.T) *Limiter { return newMemLimiter(t, newTestClock()) }},
		{name: "redis", share: 1, open: func(t *testing.T) *Limiter {
			return newRedisLimiter(t, Config{Redis: RedisConfig{URL: redistest.Start(t).URL()}})
		}},
		{name: "redis down, a quarter share", share: 4, open: func(t *testing.T) *Limiter {
			srv := redistest.Start(t)
			addr := srv.Addr()
			srv.Kill()
			clk := newTestClock()
			l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: "redis://" + addr}, Replicas: 4, Timeout: 50 * time.Millisecond},
				func(o *options) { o.now = clk.now })
			if !l.Degraded() {
				t.Fatal("a limiter whose Redis is down should start degraded")
			}
			return l
		}},
		{name: "redis, check answered late", share: 1, late: true, open: func(t *testing.T) *Limiter {
			return newRedisLimiter(t, Config{Redis: RedisConfig{URL: redistest.Start(t).URL()}, Timeout: 100 * time.Millisecond,
				Prefetch: durationPtr(0), Replicas: 1})
		}},
	}
	cases := []struct {
		name   string
		est    int64
		actual int64
		// owed is what the bucket holds charged after the settlement.
		owed float64
	}{
		{name: "usage counted past the burst", est: 5000, actual: 5000, owed: 5000},
		{name: "usage unknown keeps the estimate past the burst", est: 5000, actual: KeepEstimate, owed: 5000},
		{name: "usage unknown keeps an estimate within the burst once", est: 200, actual: KeepEstimate, owed: 200},
	}
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			l := st.open(t)
			pol := mustPolicy(t, "chat", lim)
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					subj := &Subject{User: []byte(tc.name)}
					var tk Ticket
					if st.late {
						takeLate(t, l, pol, subj, tc.est, &tk)
					} else if err := l.Take(bg, pol, subj, tc.est, &tk); err != nil {
						t.Fatalf("Take of %d tokens on a full bucket: %v", tc.est, err)
					}
					l.Settle(&tk, tc.actual)
					barrier(t, l) // the settlement
					if got := owedTokens(t, l, pol, subj, 1000/st.share, iv*time.Duration(st.share)); math.Abs(got-tc.owed) > 1 {
						t.Errorf("estimate %d settled with %d: the bucket holds %.1f tokens charged, want %.0f",
							tc.est, tc.actual, got, tc.owed)
					}
				})
			}
		})
	}
}

// takeLate takes est tokens from pol while l's rounds are held, so that the request is
// answered from this replica's share and its check, still queued, is settled in Redis
// once it runs; it returns once Redis has answered the check.
func takeLate(t *testing.T, l *Limiter, pol *Policy, subj *Subject, est int64, tk *Ticket) {
	t.Helper()
	resume := holdRounds(t, l)
	if err := l.Take(bg, pol, subj, est, tk); err != nil || tk.src != srcFallback || tk.late == nil {
		resume()
		t.Fatalf("Take while Redis is held = %v from %d (late check %t), want admitted from the share", err, tk.src, tk.late != nil)
	}
	resume()
	waitFor(t, 5*time.Second, "recovery", func() bool { return !l.Degraded() })
	barrier(t, l) // the late check's round
}

// owedTokens is what subj's bucket of pol (burst tokens, one per iv) holds charged,
// read by a check of one token: what it has used of its burst, or past a spent one,
// the burst and what its retry-after waits for.
func owedTokens(t *testing.T, l *Limiter, pol *Policy, subj *Subject, burst float64, iv time.Duration) float64 {
	t.Helper()
	// A probe of one token: one of nothing fits any bucket, even one in debt.
	var tk Ticket
	err := l.Take(bg, pol, subj, 1, &tk)
	var ref *Refused
	switch {
	case err == nil:
		l.Settle(&tk, 0)
		return burst - float64(tk.Tokens.Remaining) - 1
	case errors.As(err, &ref):
		return burst + float64(ref.RetryAfter)/float64(iv) - 1
	}
	t.Fatalf("probe: %v", err)
	return 0
}
