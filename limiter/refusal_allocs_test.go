//go:build !race

package limiter

import (
	"errors"
	"testing"

	"github.com/tollgate/tollgate/internal/redistest"
)

// A refusal answered from the cache, the vouched check's or a requests limit's alone,
// allocates nothing.
func TestRefusedLocallyAllocs(t *testing.T) {
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: redistest.Start(t).URL()}})
	tests := []struct {
		name string
		pol  *Policy
	}{
		{"vouched", mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 1, Window: "hour"},
			Limit{Per: "user", Tokens: 100_000, Window: "hour"})},
		{"requests alone", mustPolicy(t, "solo", Limit{Per: "api_key", Requests: 1, Window: "hour"})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var tk Ticket
			var ref *Refused
			_ = l.Take(bg, tc.pol, alice, 100, &tk)
			if err := l.Take(bg, tc.pol, alice, 100, &tk); !errors.As(err, &ref) {
				t.Fatalf("Take = %v, want refused", err)
			}
			before := l.Stats().RefusedLocally
			take := func() {
				if err := l.Take(bg, tc.pol, alice, 100, &tk); err == nil {
					t.Fatal("admitted")
				}
			}
			if n := testing.AllocsPerRun(200, take); n != 0 {
				t.Errorf("%v allocations per cached refusal, want 0", n)
			}
			if got := l.Stats().RefusedLocally - before; got != 201 {
				t.Errorf("%d of 201 refused from the cache", got)
			}
		})
	}
}
