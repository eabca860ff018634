package limiter

import (
	"strconv"
	"testing"

	"github.com/tollgate/tollgate/internal/redistest"
)

// A reload that changes a limit's amount keeps its bucket (same scope, per, kind and
// window), and the bucket keeps the units it owes, converted to the new rate: a spent
// bucket stays spent when the rate is lowered, and a raised rate frees what the old
// one held back. Read as a debt in time at the new rate instead, lowering 600/hour to
// 60/hour handed a client with an empty bucket 54 requests at once, and raising
// 6/hour to 600/hour refused it for 54 minutes. Windows are hours so that Redis's
// clock refills nothing while a case runs.
func TestReloadChangingRateKeepsUnitsOwed(t *testing.T) {
	stores := []struct {
		name string
		open func(t *testing.T) *Limiter
	}{
		{"memory", func(t *testing.T) *Limiter { return newMemLimiter(t, newTestClock()) }},
		{"redis", func(t *testing.T) *Limiter {
			return newRedisLimiter(t, Config{Redis: RedisConfig{URL: redistest.Start(t).URL()}})
		}},
	}
	cases := []struct {
		name          string
		before, after Limit
		// run spends under before, reloads to after and checks what after admits.
		run func(t *testing.T, l *Limiter, before, after *Policy)
	}{
		{
			name:   "lowered request rate leaves a spent bucket spent",
			before: Limit{Per: "api_key", Requests: 600, Window: "hour", Burst: 60},
			after:  Limit{Per: "api_key", Requests: 60, Window: "hour", Burst: 60},
			run: func(t *testing.T, l *Limiter, before, after *Policy) {
				if n := admitN(t, l, before, alice, 0, 61); n != 60 {
					t.Fatalf("before the reload: %d admitted, want 60 (the burst)", n)
				}
				if n := admitN(t, l, after, alice, 0, 60); n != 0 {
					t.Errorf("after lowering the rate: %d admitted at once to a spent bucket, want 0", n)
				}
			},
		},
		{
			name:   "raised request rate admits what the old rate owes less",
			before: Limit{Per: "api_key", Requests: 6, Window: "hour"},
			after:  Limit{Per: "api_key", Requests: 600, Window: "hour", Burst: 60},
			run: func(t *testing.T, l *Limiter, before, after *Policy) {
				if n := admitN(t, l, before, alice, 0, 7); n != 6 {
					t.Fatalf("before the reload: %d admitted, want 6", n)
				}
				// 6 requests owed of a bucket of 60.
				if n := admitN(t, l, after, alice, 0, 60); n != 54 {
					t.Errorf("after raising the rate: %d admitted, want 54", n)
				}
			},
		},
		{
			name:   "lowered token rate leaves a spent bucket spent",
			before: Limit{Per: "api_key", Tokens: 100_000, Window: "hour", Burst: 10_000},
			after:  Limit{Per: "api_key", Tokens: 10_000, Window: "hour", Burst: 10_000},
			run: func(t *testing.T, l *Limiter, before, after *Policy) {
				var tk Ticket
				if err := l.Take(bg, before, alice, 10_000, &tk); err != nil {
					t.Fatal(err)
				}
				l.Settle(&tk, 10_000)
				barrier(t, l)
				if err := l.Take(bg, after, alice, 5000, &tk); err == nil {
					t.Errorf("after lowering the rate: 5000 tokens admitted to a spent bucket (remaining %d of %d)",
						tk.Tokens.Remaining, tk.Tokens.Limit)
				}
			},
		},
		{
			name:   "request admitted before the reload settles at its own rate",
			before: Limit{Per: "api_key", Tokens: 100_000, Window: "hour", Burst: 10_000},
			after:  Limit{Per: "api_key", Tokens: 10_000, Window: "hour", Burst: 10_000},
			run: func(t *testing.T, l *Limiter, before, after *Policy) {
				var early, tk Ticket
				if err := l.Take(bg, before, alice, 5000, &early); err != nil {
					t.Fatal(err)
				}
				// A request under the new rule comes between: it converts the
				// bucket, and the early one's overdraft of 5000 tokens must
				// still count as 5000 tokens.
				if err := l.Take(bg, after, alice, 1, &tk); err != nil {
					t.Fatal(err)
				}
				l.Settle(&tk, 1)
				l.Settle(&early, 9999)
				barrier(t, l)
				if err := l.Take(bg, after, alice, 1, &tk); err == nil {
					t.Errorf("10000 tokens spent of a bucket of 10000, yet 1 more admitted (remaining %d)", tk.Tokens.Remaining)
				}
			},
		},
	}
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					// The reload rebuilds the policy under the same name: the same buckets.
					tc.run(t, st.open(t), mustPolicy(t, "endpoint:chat", tc.before), mustPolicy(t, "endpoint:chat", tc.after))
				})
			}
		})
	}
}

// A bucket written by the previous version of check.lua holds the TAT alone: it reads
// as charged at the interval of the rule that reads it, as that version read it.
func TestRedisReadsBucketWithoutInterval(t *testing.T) {
	srv := redistest.Start(t)
	rc := redisClient(t, srv.Addr())
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}})
	pol := mustPolicy(t, "endpoint:chat", Limit{Per: "api_key", Requests: 60, Window: "hour"})
	// 30 requests owed at a minute each, on the script's clock.
	tat := redisNow(t, rc).UnixMicro() - 1_700_000_000_000_000 + 30*60_000_000
	if err := rc.Set(bg, bucketKey(pol, alice, 0), strconv.FormatInt(tat, 10), 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n := admitN(t, l, pol, alice, 0, 60); n != 30 {
		t.Errorf("%d admitted from a bucket owing 30 of 60, want 30", n)
	}
}

// Replicas of the previous version share the keys through a rolling upgrade: its
// script read a bucket with tonumber, which must still give the TAT.
func TestRedisBucketReadableWithoutInterval(t *testing.T) {
	srv := redistest.Start(t)
	rc := redisClient(t, srv.Addr())
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}})
	pol := mustPolicy(t, "endpoint:chat", Limit{Per: "api_key", Requests: 60, Window: "hour"})
	if n := admitN(t, l, pol, alice, 0, 3); n != 3 {
		t.Fatalf("%d admitted, want 3", n)
	}
	key := bucketKey(pol, alice, 0)
	v, err := rc.Get(bg, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	prev, err := rc.Eval(bg, `return string.format('%.17g', tonumber(redis.call('GET', KEYS[1])))`, []string{key}).Text()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := strconv.ParseFloat(prev, 64); err != nil || got != storedTAT(t, v) {
		t.Errorf("tonumber of %q in Redis's Lua is %s, want the TAT", v, prev)
	}
}
