package limiter

import (
	"errors"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
)

// storesPrefetching are the memory store and the redis store prefetching prefetch of
// each rate (the cases use 10s, the largest allowed, so that Redis's refill during a
// case stays small against what a replica holds).
func storesPrefetching(prefetch time.Duration) []store {
	return []store{
		{"memory", func(t *testing.T) *Limiter { return newMemLimiter(t, newTestClock()) }},
		{"redis", func(t *testing.T) *Limiter {
			return newRedisLimiter(t, Config{Redis: RedisConfig{URL: redistest.Start(t).URL()}, Prefetch: durationPtr(prefetch)})
		}},
	}
}

// heldLimit is 100 tokens a second with a burst of 8000: ten seconds of prefetch is
// 1000 units, an eighth of the burst.
var heldLimit = Limit{Per: "api_key", Tokens: 360_000, Window: "hour", Burst: 8000}

// One replica, one client: after two small requests the client is told 7,800 tokens
// remain (x-ratelimit-remaining-tokens), and a request of 7,700 fits, on either store.
// The redis store holds 1,000 units taken ahead out of the Redis bucket; the big
// request is more than they cover and than Redis has left without them, so they go
// back ahead of its check rather than being counted as spent by Redis.
func TestPrefetchAdmitsWhatRemainingSaid(t *testing.T) {
	for _, st := range storesPrefetching(10 * time.Second) {
		t.Run(st.name, func(t *testing.T) {
			l := st.open(t)
			pol := mustPolicy(t, "chat", heldLimit)
			var tk Ticket
			for i := range 2 {
				if err := l.Take(bg, pol, alice, 100, &tk); err != nil {
					t.Fatalf("take %d: %v", i, err)
				}
			}
			told := tk.Tokens.Remaining
			if told < 7700 {
				t.Fatalf("after two requests of 100 tokens: remaining %d, want about 7800", told)
			}
			var ref *Refused
			if err := l.Take(bg, pol, alice, 7700, &tk); err != nil {
				if errors.As(err, &ref) {
					t.Errorf("a 7700-token request refused (retry %v, remaining %d) right after the headers said %d tokens remain",
						ref.RetryAfter, tk.Tokens.Remaining, told)
				} else {
					t.Errorf("Take = %v", err)
				}
			}
			if st.name == "redis" {
				if s := l.Stats(); s.ReturnedUnits != 1000 || s.LocalChecks != 0 {
					t.Errorf("stats %+v: want the 1000 held units given back ahead of the big check", s)
				}
			}
		})
	}
}

// A request that goes to Redis but fits in what Redis has left keeps the units held:
// a subject new to the replica (bob's user bucket) sharing a held bucket (the
// endpoint's) does not send its units back, and alice's next request is still
// answered from them.
func TestPrefetchKeepsUnitsWhenRedisHasRoom(t *testing.T) {
	srv := redistest.Start(t)
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}, Prefetch: durationPtr(10 * time.Second)})
	pol := mustPolicy(t, "chat",
		Limit{Per: "endpoint", Tokens: 360_000, Window: "hour", Burst: 8000},
		Limit{Per: "user", Requests: 36_000, Window: "hour"})
	if got := admitN(t, l, pol, alice, 100, 3); got != 3 {
		t.Fatalf("admitted %d of 3", got)
	}
	if s := l.Stats(); s.LocalChecks != 1 {
		t.Fatalf("stats %+v: want alice's third request answered from held units", s)
	}
	if got := admitN(t, l, pol, bob, 100, 1); got != 1 {
		t.Fatal("bob's request not admitted")
	}
	if got := admitN(t, l, pol, alice, 100, 1); got != 1 {
		t.Fatal("alice's request not admitted")
	}
	if s := l.Stats(); s.ReturnedUnits != 0 || s.LocalChecks != 2 {
		t.Errorf("stats %+v: want nothing given back and alice's request after bob's answered locally", s)
	}
}

// A request answered with units held ahead says the same reset as the memory store:
// what the bucket owes, (burst - remaining) units of 10 ms, the held units, which the
// remaining counts as free, not owed.
func TestPrefetchResetOwesNoHeldUnits(t *testing.T) {
	for _, st := range storesPrefetching(10 * time.Second) {
		t.Run(st.name, func(t *testing.T) {
			l := st.open(t)
			pol := mustPolicy(t, "chat", heldLimit)
			var tk Ticket
			for i := range 3 {
				if err := l.Take(bg, pol, alice, 100, &tk); err != nil {
					t.Fatalf("take %d: %v", i, err)
				}
				// Within one unit of flooring.
				owed := time.Duration(8000-tk.Tokens.Remaining) * 10 * time.Millisecond
				if tk.Tokens.Reset > owed+20*time.Millisecond || tk.Tokens.Reset < owed-20*time.Millisecond {
					t.Errorf("take %d: remaining %d of a burst of 8000 (owes %v) but reset %v",
						i, tk.Tokens.Remaining, owed, tk.Tokens.Reset)
				}
			}
		})
	}
}
