package limiter

import (
	"errors"
	"strconv"
	"testing"

	"github.com/tollgate/tollgate/internal/redistest"
)

// BenchmarkRedisRefusedLocally measures a check on an API key whose requests bucket
// Redis refused, answered from the cached refusal: by one user asking the same again,
// and by eight users of the key (a tokens limit per user) in turn, each of whom Redis
// answers once before the cache does.
func BenchmarkRedisRefusedLocally(b *testing.B) {
	srv := redistest.Start(b)
	for _, users := range []int{1, 8} {
		b.Run("users="+strconv.Itoa(users), func(b *testing.B) {
			l := newRedisLimiter(b, Config{Redis: RedisConfig{URL: srv.URL()}})
			// One request a day per key: refused for hours after the first.
			pol := mustPolicy(b, "bench-refused",
				Limit{Per: "api_key", Requests: 1, Window: "day"},
				Limit{Per: "user", Tokens: 1_000_000, Window: "day"})
			subjects := make([]*Subject, users)
			for i := range subjects {
				subjects[i] = &Subject{APIKey: []byte("key-refused-" + strconv.Itoa(users)), User: []byte("user-" + strconv.Itoa(i))}
			}
			var tk Ticket
			var ref *Refused
			_ = l.Take(bg, pol, subjects[0], 100, &tk)
			for _, s := range subjects {
				if err := l.Take(bg, pol, s, 100, &tk); !errors.As(err, &ref) {
					b.Fatalf("Take = %v, want refused", err)
				}
			}
			before := l.Stats()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := l.Take(bg, pol, subjects[i%users], 100, &tk); err == nil {
					b.Fatal("admitted")
				}
				i++
			}
			after := l.Stats()
			b.ReportMetric(float64(after.RoundTrips-before.RoundTrips)*1000/float64(i), "roundtrips/1000takes")
		})
	}
}
