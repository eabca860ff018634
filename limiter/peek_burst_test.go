package limiter

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
)

// A bucket whose burst is below its amount (requests: 600000/minute, burst: 1000;
// redis store, default prefetch), read a moment after its last requests: the units
// held ahead count only up to the burst, as in the next request's headers.
func TestPeekHeldUnitsNeverAboveBurst(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	// The limiter's clock stands still, so the units held stay held (as for a key used
	// now and then); Redis's clock refills the bucket meanwhile.
	clk := newTestClock()
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}}, func(o *options) { o.now = clk.now })
	pol := mustPolicy(t, "key:team-a", Limit{Per: "api_key", Requests: 600000, Window: "minute", Burst: 1000})
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
	// Redis is owed at most ~130 units at 100 µs each: 300 ms refills the bucket whole.
	time.Sleep(300 * time.Millisecond)
	r := l.Peek(bg, probesOf(pol, alice))[0]
	if err := l.Take(bg, pol, alice, 0, &tk); err != nil {
		t.Fatal(err)
	}
	if r.Source != FromRedis || r.Quota.Remaining > 1000 {
		t.Errorf("got Peek remaining %d (limit %d, source %v) for a bucket of burst 1000, the next request's header %d; "+
			"want at most the burst, 1000, as the headers give it", r.Quota.Remaining, r.Quota.Limit, r.Source, tk.Requests.Remaining)
	}
}
