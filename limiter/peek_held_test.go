package limiter

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
)

// A key well under its 6000/minute limit, read a moment after its last request (redis
// store, default prefetch): the units this replica holds count on top of what Redis
// has left only up to the bucket, as in the headers: remaining never exceeds limit.
func TestPeekHeldUnitsNeverAboveLimit(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	// The limiter's clock stands still, so the units held stay held (as they do for a
	// key used now and then); Redis's clock refills the bucket meanwhile.
	clk := newTestClock()
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}}, func(o *options) { o.now = clk.now })
	// A request every 10 ms: prefetch (100 ms) takes 10 units ahead.
	pol := mustPolicy(t, "key:team-a", Limit{Per: "api_key", Requests: 6000, Window: "minute"})
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
	// Redis is owed at most 13 units (130 ms) for the requests and the units held:
	// 1.3 s refills the bucket whole.
	time.Sleep(1300 * time.Millisecond)
	r := l.Peek(bg, probesOf(pol, alice))[0]
	if r.Source != FromRedis || r.Quota.Remaining > r.Quota.Limit {
		t.Errorf("got remaining %d of a limit of %d (source %v), want at most the limit, %d",
			r.Quota.Remaining, r.Quota.Limit, r.Source, r.Quota.Limit)
	}
}
