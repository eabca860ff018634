package limiter

import (
	"testing"

	"github.com/tollgate/tollgate/internal/redistest"
)

// store names a store and opens a limiter on it.
type store struct {
	name string
	open func(t *testing.T) *Limiter
}

// bothStores are the memory and redis stores, for the cases both must pass alike.
func bothStores() []store {
	return []store{
		{"memory", func(t *testing.T) *Limiter { return newMemLimiter(t, newTestClock()) }},
		{"redis", func(t *testing.T) *Limiter {
			return newRedisLimiter(t, Config{Redis: RedisConfig{URL: redistest.Start(t).URL()}})
		}},
	}
}

// A quota's limit is its bucket's capacity, the larger of the per-window amount and
// the burst: with the burst above the amount, the amount as the limit told a client
// it had more requests left (99) than its limit (10). OpenAI's
// x-ratelimit-limit-requests is what may be sent before the limit is exhausted.
func TestQuotaLimitIsBucketCapacity(t *testing.T) {
	cases := []struct {
		name    string
		lim     Limit
		est     int64
		quota   func(*Ticket) Quota
		limit   int64
		remains int64
	}{
		{"requests, burst above the amount", Limit{Per: "api_key", Requests: 10, Window: "minute", Burst: 100},
			0, func(tk *Ticket) Quota { return tk.Requests }, 100, 99},
		{"requests, burst below the amount", Limit{Per: "api_key", Requests: 600, Window: "minute", Burst: 60},
			0, func(tk *Ticket) Quota { return tk.Requests }, 600, 59},
		{"tokens, burst above the amount", Limit{Per: "api_key", Tokens: 1000, Window: "hour", Burst: 5000},
			100, func(tk *Ticket) Quota { return tk.Tokens }, 5000, 4900},
	}
	for _, st := range bothStores() {
		t.Run(st.name, func(t *testing.T) {
			l := st.open(t)
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					var tk Ticket
					if err := l.Take(bg, mustPolicy(t, tc.name, tc.lim), alice, tc.est, &tk); err != nil {
						t.Fatal(err)
					}
					if q := tc.quota(&tk); q.Limit != tc.limit || q.Remaining != tc.remains {
						t.Errorf("limit %d, remaining %d; want %d, %d", q.Limit, q.Remaining, tc.limit, tc.remains)
					}
				})
			}
		})
	}
}
