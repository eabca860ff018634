package limiter

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/redistest"
)

// Each limiter stands for a replica sharing one Redis; the keys of a limit leave its
// amounts out, so the old and the new limit count the same bucket. Hours keep Redis's
// clock from refilling anything while a case runs; ago moves the bucket's TAT back
// instead, as if that much time had passed.
var (
	// 6 s a request, a bucket of 6 minutes.
	lowerBefore = Limit{Per: "api_key", Requests: 600, Window: "hour", Burst: 60}
	// A minute a request, a bucket of 6 minutes.
	lowerAfter = Limit{Per: "api_key", Requests: 60, Window: "hour", Burst: 6}
)

// README: a reload that lowers a limit leaves a spent bucket spent, "its next request
// waits one refill at the new rate, not for what the old bucket held", and a client
// that waits the retry-after of a 429 gets through. The redis store converted the debt
// a refused check read (60 requests owed, capped to the 6 of the new bucket) without
// keeping the conversion, so every later check converted the old debt again: the
// bucket read full until the old one owed fewer than 6 requests at the old rate,
// 5.4 minutes here (54 minutes lowering 600/hour to 60/hour), while each 429 said to
// retry after one minute.
func TestReloadLoweredLimitRefillsAtTheNewRate(t *testing.T) {
	srv := redistest.Start(t)
	rc := redisClient(t, srv.Addr())
	before := mustPolicy(t, "endpoint:chat", lowerBefore)
	after := mustPolicy(t, "endpoint:chat", lowerAfter)
	old := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}})
	if n := admitN(t, old, before, alice, 0, 61); n != 60 {
		t.Fatalf("before the reload: %d admitted, want 60 (the burst)", n)
	}
	reloaded := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}})
	var tk Ticket
	err := reloaded.Take(bg, after, alice, 0, &tk)
	var ref *Refused
	if !errors.As(err, &ref) {
		t.Fatalf("after the reload: %v, want a refusal (the bucket is spent)", err)
	}
	if d := ref.RetryAfter - time.Minute; d < -time.Second || d > time.Second {
		t.Fatalf("retry after %v, want 1m (one request at 60/hour)", ref.RetryAfter)
	}
	ago(t, rc, bucketKey(after, alice, 0), ref.RetryAfter)
	// Another replica: the first caches its refusal until the retry time, which has
	// not come on the process's clock.
	other := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}})
	if err := other.Take(bg, after, alice, 0, &tk); err != nil {
		t.Errorf("after waiting the retry-after: %v, want the request admitted (one refill at the new rate)", err)
	}
}

// Replicas still on the old limit while the others reload (a rolling reload) must not
// spend again what the lowered limit let go of a spent bucket: the 54 requests beyond
// the new bucket that the reloaded replica no longer counts as owed are still owed
// under the old limit.
func TestReloadLoweredLimitNotSpentAgainByOldLimit(t *testing.T) {
	srv := redistest.Start(t)
	before := mustPolicy(t, "endpoint:chat", lowerBefore)
	after := mustPolicy(t, "endpoint:chat", lowerAfter)
	old := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}})
	reloaded := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}})
	if n := admitN(t, old, before, alice, 0, 61); n != 60 {
		t.Fatalf("before the reload: %d admitted, want 60 (the burst)", n)
	}
	for round := range 3 {
		if n := admitN(t, reloaded, after, alice, 0, 1); n != 0 {
			t.Fatalf("round %d: the reloaded replica admitted %d from a spent bucket, want 0", round, n)
		}
		// A third replica on the old limit: the first caches its refusal.
		still := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}})
		// The admin API reads the bucket as a check would.
		if r := still.Peek(bg, []Probe{{Policy: before, Subject: *alice}})[0]; r.Quota.Remaining != 0 {
			t.Errorf("round %d: the bucket read under the old limit has %d remaining, want 0", round, r.Quota.Remaining)
		}
		if n := admitN(t, still, before, alice, 0, 60); n != 0 {
			t.Fatalf("round %d: a replica on the old limit admitted %d from a spent bucket, want 0", round, n)
		}
	}
}

// ago moves the TAT of the rate bucket at key d back, keeping the rest of its value
// and its expiry: Redis's clock cannot be moved, and a case waiting minutes of it
// would be too slow.
func ago(t testing.TB, rc *redis.Client, key string, d time.Duration) {
	t.Helper()
	v, err := rc.Get(bg, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(v, "\x00")
	tat := storedTAT(t, v) - float64(d.Microseconds())
	v = strconv.FormatFloat(tat, 'f', -1, 64) + "\x00" + rest
	if err := rc.Set(bg, key, v, redis.KeepTTL).Err(); err != nil {
		t.Fatal(err)
	}
}
