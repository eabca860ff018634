package limiter

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/redistest"
)

// README (Rate limits): "A reload that changes a limit's amount or burst keeps its
// bucket and the requests or tokens it owes, up to the new burst: a spent bucket stays
// spent under a lowered rate". A request charged a small estimate settles its real,
// larger usage after its charge has refilled (a long stream): the bucket then owes the
// overdraft, 5000 tokens of a bucket of 10000, half spent. Lowered tenfold, the bucket
// must still owe 5000 tokens (at the new rate), so 6000 more do not fit. The
// settlement lands on a bucket Redis has forgotten as full (its key expired): the debt
// it writes records the settling rule's span, as a take's does; without it the next
// take read all of it as overdraft past the old bucket, kept in time (180 s), i.e. 500
// tokens at the new rate, and admitted 6000.
func TestRedisSettleAfterRefillKeepsUnitsOwedAcrossReload(t *testing.T) {
	srv := redistest.Start(t)
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}, Prefetch: durationPtr(0)})
	before := mustPolicy(t, "endpoint:chat", Limit{Per: "api_key", Tokens: 100_000, Window: "hour", Burst: 10_000})
	after := mustPolicy(t, "endpoint:chat", Limit{Per: "api_key", Tokens: 10_000, Window: "hour", Burst: 10_000})

	var long Ticket
	if err := l.Take(bg, before, alice, 1, &long); err != nil {
		t.Fatal(err)
	}
	// The estimate's 36 ms refill: the bucket is full again and Redis forgets it.
	rc := redisClient(t, srv.Addr())
	key := bucketKey(before, alice, 0)
	waitFor(t, 5*time.Second, "bucket key expired", func() bool {
		return errors.Is(rc.Get(context.Background(), key).Err(), redis.Nil)
	})
	l.Settle(&long, 5001) // 5000 tokens over the estimate
	barrier(t, l)

	var tk Ticket
	err := l.Take(bg, after, alice, 6000, &tk)
	if err == nil && tk.src != srcRedis {
		t.Fatal("the check was answered without Redis: the case needs Redis to answer")
	}
	if err == nil {
		t.Errorf("after lowering the rate tenfold, 6000 tokens admitted to a bucket of 10000 that owes 5000 (remaining now %d)",
			tk.Tokens.Remaining)
	}
}

// The memory store alike: its sweep forgets a full bucket ("exactly what a missing
// entry means, so eviction loses nothing"), and the overdraft a long request settles
// into the forgotten bucket afterwards must leave the bucket owing its 5000 tokens
// under a lowered rule, as the same settlement into the kept entry (no sweep between)
// does.
func TestMemorySettleAfterSweepKeepsUnitsOwedAcrossReload(t *testing.T) {
	clk := newTestClock()
	l := newMemLimiter(t, clk)
	before := mustPolicy(t, "endpoint:chat", Limit{Per: "api_key", Tokens: 100_000, Window: "hour", Burst: 10_000})
	after := mustPolicy(t, "endpoint:chat", Limit{Per: "api_key", Tokens: 10_000, Window: "hour", Burst: 10_000})

	var long Ticket
	if err := l.Take(bg, before, alice, 1, &long); err != nil {
		t.Fatal(err)
	}
	clk.advance(time.Second)
	if n := l.mem.sweep(l.nanotime()); n != 1 {
		t.Fatalf("sweep forgot %d buckets, want the full one", n)
	}
	l.Settle(&long, 5001)

	var tk Ticket
	if err := l.Take(bg, after, alice, 6000, &tk); err == nil {
		t.Errorf("after lowering the rate tenfold, 6000 tokens admitted to a bucket of 10000 that owes 5000 (remaining now %d)",
			tk.Tokens.Remaining)
	}
}
