package limiter

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
)

// A key read a moment after its last requests (redis store, default prefetch): the
// units this replica holds count on top of what Redis has left only up to the bucket,
// as in the headers. A bucket as large as its amount (6000/minute) never reads above
// its limit; one whose burst is below its amount (600000/minute, burst 1000) never
// above its burst.
func TestPeekHeldUnitsNeverAboveBucket(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		limit Limit
		// wait refills the bucket whole in Redis: it is owed at most the requests and
		// the units held ahead (prefetch's 100 ms of the rate).
		wait  time.Duration
		burst int64
	}{
		{"bucket of the amount", Limit{Per: "api_key", Requests: 6000, Window: "minute"}, 1300 * time.Millisecond, 6000},
		{"burst below the amount", Limit{Per: "api_key", Requests: 600000, Window: "minute", Burst: 1000}, 300 * time.Millisecond, 1000},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			srv := redistest.Start(t)
			// The limiter's clock stands still, so the units held stay held (as they
			// do for a key used now and then); Redis's clock refills the bucket
			// meanwhile.
			clk := newTestClock()
			l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}}, func(o *options) { o.now = clk.now })
			pol := mustPolicy(t, "key:team-a", c.limit)
			var tk Ticket
			for range 3 {
				if err := l.Take(bg, pol, alice, 0, &tk); err != nil {
					t.Fatal(err)
				}
				l.Settle(&tk, 0)
				barrier(t, l)
			}
			if l.Stats().LocalChecks == 0 {
				t.Fatalf("nothing was prefetched: %+v", l.Stats())
			}
			time.Sleep(c.wait)
			r := l.Peek(bg, probesOf(pol, alice))[0]
			if err := l.Take(bg, pol, alice, 0, &tk); err != nil {
				t.Fatal(err)
			}
			if r.Source != FromRedis || r.Quota.Remaining > c.burst || r.Quota.Remaining > r.Quota.Limit {
				t.Errorf("got Peek remaining %d (limit %d, source %v), the next request's header %d; want at most the bucket, %d",
					r.Quota.Remaining, r.Quota.Limit, r.Source, tk.Requests.Remaining, c.burst)
			}
		})
	}
}
