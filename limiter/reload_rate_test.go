package limiter

import (
	"encoding/binary"
	"errors"
	"math"
	"strconv"
	"testing"
	"time"

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
	for _, st := range bothStores() {
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

// A bucket keeps the units it owes across a reload only up to the new bucket's
// capacity: spent, it is empty under the new limit, and its next request fits once the
// new rate refills one unit. Kept in units, a client that spent 600/hour was refused
// for nine hours after a reload to 60/hour (its 600 requests owed at a minute each).
// An overdraft past the old bucket (tokens settled above their estimate) still makes
// the client wait, for what it owes in units at the new rate, but never longer than the
// old limit would have held it.
func TestReloadSpentBucketWaitsOneRefillOfNewLimit(t *testing.T) {
	// Not parallel: the retry bound allows a second of Redis's clock between spending and
	// checking, and 601 checks spend 600/hour only within its 6 s refill.
	cases := []struct {
		name          string
		before, after Limit
		// spend takes (and settles) est tokens, or all of the bucket's requests.
		est, actual int64
		// The take under after is refused for retry, to within a second (Redis's
		// clock runs while a case does).
		retry time.Duration
	}{
		{
			name:   "lowered request rate with the default burst",
			before: Limit{Per: "api_key", Requests: 600, Window: "hour"},
			after:  Limit{Per: "api_key", Requests: 60, Window: "hour"},
			retry:  time.Minute,
		},
		{
			name:   "lowered burst at the same rate",
			before: Limit{Per: "api_key", Requests: 600, Window: "hour"},
			after:  Limit{Per: "api_key", Requests: 600, Window: "hour", Burst: 60},
			retry:  6 * time.Second,
		},
		{
			// 10000 tokens over a bucket of 10000 held the client 6 minutes at
			// 100000/hour; at 10000/hour they would be an hour.
			name:   "overdraft under a lowered token rate waits as the old rate held it",
			before: Limit{Per: "api_key", Tokens: 100_000, Window: "hour", Burst: 10_000},
			after:  Limit{Per: "api_key", Tokens: 10_000, Window: "hour", Burst: 10_000},
			est:    10_000, actual: 20_000,
			retry: 6 * time.Minute,
		},
		{
			// 5000 tokens over the bucket, at 100000/hour.
			name:   "overdraft under a raised token rate waits for its tokens at the new rate",
			before: Limit{Per: "api_key", Tokens: 10_000, Window: "hour", Burst: 10_000},
			after:  Limit{Per: "api_key", Tokens: 100_000, Window: "hour", Burst: 10_000},
			est:    10_000, actual: 15_000,
			retry: 3 * time.Minute,
		},
	}
	for _, st := range bothStores() {
		t.Run(st.name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					l := st.open(t)
					before := mustPolicy(t, "endpoint:chat", tc.before)
					after := mustPolicy(t, "endpoint:chat", tc.after)
					var tk Ticket
					if tc.est > 0 {
						if err := l.Take(bg, before, alice, tc.est, &tk); err != nil {
							t.Fatal(err)
						}
						l.Settle(&tk, tc.actual)
						barrier(t, l)
					} else if n := admitN(t, l, before, alice, 0, int(tc.before.Requests)+1); n != int(tc.before.Requests) {
						t.Fatalf("before the reload: %d admitted, want %d", n, tc.before.Requests)
					}
					err := l.Take(bg, after, alice, 1, &tk)
					var ref *Refused
					if !errors.As(err, &ref) {
						t.Fatalf("after the reload: %v, want a refusal (the bucket is spent)", err)
					}
					if d := ref.RetryAfter - tc.retry; d < -time.Second || d > time.Second {
						t.Errorf("retry after %v, want %v", ref.RetryAfter, tc.retry)
					}
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

// A bucket written by the version of check.lua before the bucket's span was kept holds
// the TAT and the interval: its debt reads as all overdraft, kept in time under a
// lowered rate, so a spent 600/hour bucket is a spent 60/hour one, not ten hours owed.
func TestRedisReadsBucketWithoutSpan(t *testing.T) {
	srv := redistest.Start(t)
	rc := redisClient(t, srv.Addr())
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}})
	pol := mustPolicy(t, "endpoint:chat", Limit{Per: "api_key", Requests: 60, Window: "hour"})
	// 600 requests owed at 6 s each (600/hour spent), on the script's clock.
	tat := redisNow(t, rc).UnixMicro() - 1_700_000_000_000_000 + 3600_000_000
	v := strconv.FormatInt(tat, 10) + "\x00" + string(binary.LittleEndian.AppendUint64(nil, math.Float64bits(6_000_000)))
	if err := rc.Set(bg, bucketKey(pol, alice, 0), v, 0).Err(); err != nil {
		t.Fatal(err)
	}
	var tk Ticket
	err := l.Take(bg, pol, alice, 0, &tk)
	var ref *Refused
	if !errors.As(err, &ref) {
		t.Fatalf("%v, want a refusal (the bucket is spent)", err)
	}
	// To within a second: Redis's clock ran since tat was read from it.
	if d := ref.RetryAfter - time.Minute; d < -time.Second || d > time.Second {
		t.Errorf("retry after %v, want 1m (one request at 60/hour)", ref.RetryAfter)
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

// The previous version of check.lua reads a bucket's interval from a NUL and the
// value's last eight bytes: the span goes before them, so that through a rolling
// upgrade its replicas still read the interval of the buckets this one writes.
func TestRedisBucketKeepsIntervalLast(t *testing.T) {
	srv := redistest.Start(t)
	rc := redisClient(t, srv.Addr())
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}})
	pol := mustPolicy(t, "endpoint:chat", Limit{Per: "api_key", Requests: 60, Window: "hour"})
	if n := admitN(t, l, pol, alice, 0, 1); n != 1 {
		t.Fatalf("%d admitted, want 1", n)
	}
	v, err := rc.Get(bg, bucketKey(pol, alice, 0)).Result()
	if err != nil {
		t.Fatal(err)
	}
	tail := v[len(v)-9:]
	if iv := math.Float64frombits(binary.LittleEndian.Uint64([]byte(tail[1:]))); tail[0] != 0 || iv != 60_000_000 {
		t.Errorf("bucket value %q ends in %q, want a NUL and the interval (60000000 us)", v, tail)
	}
	if span := math.Float64frombits(binary.LittleEndian.Uint64([]byte(v[len(v)-17 : len(v)-9]))); v[len(v)-18] != 0 || span != 3600_000_000 {
		t.Errorf("bucket value %q: span %v, want a NUL and 3600000000 us before the interval", v, span)
	}
}
