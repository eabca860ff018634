package limiter

import (
	"testing"

	"github.com/tollgate/tollgate/internal/redistest"
)

// README (Rate limits): while Redis fails each replica answers from its share of every
// limit, burst ÷ the live replicas Redis last reported. A limiter a reload replaced
// lives on, heartbeating to renew the leases of its requests, until the last of them
// ends (a stream, minutes): the process still counts once in each Redis, whichever of
// its limiters closes first (a reload refused after its limiter was built closes the
// newest), and its member leaves a Redis when the last limiter using it there closes
// (at shutdown, once).
func TestReloadCountsTheProcessOnceInRedis(t *testing.T) {
	r1, r2 := redistest.Start(t), redistest.Start(t)
	c1, c2 := redisClient(t, r1.Addr()), redisClient(t, r2.Addr())
	// The chain's configs by name; r1b is r1 with prefetch off, a reload on r1.
	cfgs := map[string]Config{
		"r1":  {Store: "redis", Redis: RedisConfig{URL: r1.URL()}},
		"r1b": {Store: "redis", Redis: RedisConfig{URL: r1.URL()}, Prefetch: durationPtr(0)},
		"r2":  {Store: "redis", Redis: RedisConfig{URL: r2.URL()}},
		"mem": {Store: "memory"},
	}
	type want struct{ r1, r2 int64 }
	cases := []struct {
		name  string
		chain []string
		// built is the members in each Redis once the chain is built; closed[i]
		// once chain[order[i]] is closed as well.
		built  want
		order  []int
		closed []want
	}{
		{"a reload refused after its limiter was built", []string{"r1", "r1b"},
			want{1, 0}, []int{1, 0}, []want{{1, 0}, {0, 0}}},
		{"the replaced limiter ends its requests first", []string{"r1", "r1b"},
			want{1, 0}, []int{0, 1}, []want{{1, 0}, {0, 0}}},
		{"a chain of reloads while the first limiter still runs", []string{"r1", "r1b", "r1"},
			want{1, 0}, []int{0, 2, 1}, []want{{1, 0}, {1, 0}, {0, 0}}},
		{"a reload to another redis", []string{"r1", "r2"},
			want{1, 1}, []int{0, 1}, []want{{0, 1}, {0, 0}}},
		{"a move to another redis and back", []string{"r1", "r2", "r1b"},
			want{1, 1}, []int{1, 0, 2}, []want{{1, 0}, {1, 0}, {0, 0}}},
		{"a reload through the memory store", []string{"r1", "mem", "r1b"},
			want{1, 0}, []int{0, 1, 2}, []want{{1, 0}, {1, 0}, {0, 0}}},
	}
	members := func(t *testing.T) want {
		t.Helper()
		n1, err1 := c1.ZCard(bg, replicasKey).Result()
		n2, err2 := c2.ZCard(bg, replicasKey).Result()
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		return want{n1, n2}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := members(t); got != (want{}) {
				t.Fatalf("members %+v before the case, want none", got)
			}
			chain := make([]*Limiter, len(tc.chain))
			var prev *Limiter
			for i, name := range tc.chain {
				// Default heartbeats: a member outlives a slow check by seconds.
				l, err := newLimiter(cfgs[name], nil, defaultOptions(), prev)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = l.Close() })
				chain[i], prev = l, l
			}
			if got := members(t); got != tc.built {
				t.Fatalf("members in (r1, r2) %+v with the chain %v built, want %+v: one per Redis the process uses", got, tc.chain, tc.built)
			}
			if last := chain[len(chain)-1]; last.rs != nil {
				if n := last.Stats().Replicas; n != 1 {
					t.Errorf("the newest limiter counts %d replicas, want 1", n)
				}
			}
			for i, k := range tc.order {
				if err := chain[k].Close(); err != nil {
					t.Fatal(err)
				}
				if got := members(t); got != tc.closed[i] {
					t.Fatalf("members in (r1, r2) %+v after closing %s (limiter %d), want %+v", got, tc.chain[k], k, tc.closed[i])
				}
			}
		})
	}
	t.Run("another process on the same redis still counts", func(t *testing.T) {
		other := newRedisLimiter(t, cfgs["r1"])
		a, err := New(cfgs["r1"], nil)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		b, err := NewFrom(cfgs["r1b"], nil, a)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		if n := b.Stats().Replicas; n != 2 {
			t.Errorf("the reloaded limiter counts %d replicas with another process on its Redis, want 2", n)
		}
		if err := other.Close(); err != nil {
			t.Fatal(err)
		}
		if got := members(t); got != (want{1, 0}) {
			t.Errorf("members in (r1, r2) %+v with the other process gone, want %+v", got, want{1, 0})
		}
	})
}
