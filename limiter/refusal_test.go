package limiter

import (
	"errors"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
)

// After Redis refuses an empty requests bucket, the requests that follow before its
// retry time are refused without a round trip, with the retry time counting down, and
// the first one after it goes to Redis again.
func TestRefusalCached(t *testing.T) {
	// Not parallel: Redis's clock refills a request a second, so the three checks that
	// spend the burst and get refused must take under a second.
	srv := redistest.Start(t)
	// The limiter's clock, which times the cached refusal, moves only when the test
	// moves it: the 20 refusals below come before the retry time however long a
	// loaded machine takes over them. Redis's clock refills the bucket, at one
	// request a second: slow enough that no request is let in before the test sleeps
	// out the retry time.
	clk := newTestClock()
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}}, func(o *options) { o.now = clk.now })
	// 1 a second, 2 at once: one request a second once the burst is spent.
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 60, Window: "minute", Burst: 2})
	if got := admitN(t, l, pol, alice, 0, 2); got != 2 {
		t.Fatalf("admitted %d of the burst of 2", got)
	}
	var tk Ticket
	var ref *Refused
	if err := l.Take(bg, pol, alice, 0, &tk); !errors.As(err, &ref) {
		t.Fatalf("Take = %v, want a refusal", err)
	}
	first := tk.RetryAfter
	before := l.Stats()
	for range 20 {
		err := l.Take(bg, pol, alice, 0, &tk)
		if !errors.As(err, &ref) || ref.Limit.Requests != 60 {
			t.Fatalf("Take = %v, want the 60/minute limit to refuse", err)
		}
		if tk.RetryAfter <= 0 || tk.RetryAfter > first || tk.Requests.Remaining != 0 || tk.Requests.Limit != 60 {
			t.Fatalf("RetryAfter %v (first %v), Requests %+v", tk.RetryAfter, first, tk.Requests)
		}
	}
	after := l.Stats()
	if after.RoundTrips != before.RoundTrips || after.RefusedLocally-before.RefusedLocally != 20 || after.Refused-before.Refused != 20 {
		t.Errorf("stats %+v -> %+v: want 20 refusals without a round trip", before, after)
	}
	// The retry time passes on both clocks: the limiter's, and Redis's, which refills.
	clk.advance(first + 10*time.Millisecond)
	time.Sleep(first + 10*time.Millisecond)
	if err := l.Take(bg, pol, alice, 0, &tk); err != nil {
		t.Fatalf("Take after the retry time = %v", err)
	}
	if s := l.Stats(); s.RoundTrips == after.RoundTrips {
		t.Error("the check after the retry time did not go to Redis")
	}
}

// A refusal answered from the cache says what Redis said: the time until the bucket
// admits a request again, however much longer than the cache's own 10 seconds, and
// the same x-ratelimit-* values, the tokens limit's included, counting down.
func TestRefusalCacheKeepsRetryAfterAndHeaders(t *testing.T) {
	l, pol, first := refusedByRedis(t, "api_key", 500)
	var tk Ticket
	var ref *Refused
	if first.RetryAfter < 5*time.Minute || first.Tokens.Limit != 100_000 {
		t.Fatalf("refused by Redis with RetryAfter %v, Tokens %+v", first.RetryAfter, first.Tokens)
	}
	before := l.Stats()
	if err := l.Take(bg, pol, alice, 500, &tk); !errors.As(err, &ref) {
		t.Fatalf("third Take = %v, want refused", err)
	}
	if s := l.Stats(); s.RefusedLocally != before.RefusedLocally+1 || s.RoundTrips != before.RoundTrips {
		t.Fatalf("stats %+v -> %+v: want the third refusal answered from the cache", before, s)
	}
	if ref.RetryAfter != tk.RetryAfter || tk.RetryAfter > first.RetryAfter || tk.RetryAfter < first.RetryAfter-time.Second {
		t.Errorf("RetryAfter %v (Refused %v) from the cache, %v from Redis", tk.RetryAfter, ref.RetryAfter, first.RetryAfter)
	}
	for _, q := range []struct {
		name       string
		got, redis Quota
	}{{"Requests", tk.Requests, first.Requests}, {"Tokens", tk.Tokens, first.Tokens}} {
		if q.got.Limit != q.redis.Limit || q.got.Remaining != q.redis.Remaining ||
			q.got.Reset > q.redis.Reset || q.got.Reset < q.redis.Reset-time.Second {
			t.Errorf("%s %+v from the cache, %+v from Redis", q.name, q.got, q.redis)
		}
	}
}

// A cached refusal is void once a reload changes the limit, and token buckets are
// never cached (a smaller request may fit sooner).
func TestRefusalCacheLimits(t *testing.T) {
	srv := redistest.Start(t)
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}})
	var tk Ticket
	var ref *Refused

	t.Run("reload", func(t *testing.T) {
		// 6 an hour: a refusal would be cached for its 10-minute retry time.
		pol := mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 6, Window: "hour", Burst: 1})
		if got := admitN(t, l, pol, bob, 0, 2); got != 1 {
			t.Fatalf("admitted %d of 2, want 1", got)
		}
		// The same bucket (same scope, per and window) with a larger burst.
		raised := mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 6, Window: "hour", Burst: 5})
		before := l.Stats()
		if err := l.Take(bg, raised, bob, 0, &tk); err != nil {
			t.Fatalf("Take under the raised limit = %v", err)
		}
		if s := l.Stats(); s.RoundTrips == before.RoundTrips || s.RefusedLocally != before.RefusedLocally {
			t.Errorf("stats %+v -> %+v: want the check under the new limit sent to Redis", before, s)
		}
	})

	t.Run("tokens", func(t *testing.T) {
		pol := mustPolicy(t, "tok", Limit{Per: "api_key", Tokens: 600, Window: "minute", Burst: 100})
		if err := l.Take(bg, pol, alice, 100, &tk); err != nil {
			t.Fatal(err)
		}
		before := l.Stats()
		for range 3 {
			if err := l.Take(bg, pol, alice, 100, &tk); !errors.As(err, &ref) {
				t.Fatalf("Take = %v, want a refusal", err)
			}
		}
		if s := l.Stats(); s.RoundTrips-before.RoundTrips != 3 || s.RefusedLocally != before.RefusedLocally {
			t.Errorf("stats %+v -> %+v: want every token refusal decided in Redis", before, s)
		}
	})
}

// A cached refusal of a requests bucket shared by several token buckets (requests per
// API key, tokens per user) does not hand one user's x-ratelimit-*-tokens values to
// another: carol, whose tokens bucket the cache knows nothing of (it might refuse her
// for longer), is asked in Redis once, refused by the shared requests bucket with her
// own tokens values, and refused from the cache with them after that, not with alice's
// 95,000 remaining.
func TestRefusalCacheTokensHeadersPerBucket(t *testing.T) {
	l, pol, tk := refusedByRedis(t, "user", 5000)
	var ref *Refused
	if tk.Tokens.Remaining != 95_000 {
		t.Fatalf("alice's tokens %+v, want 95000 remaining", tk.Tokens)
	}
	carol := &Subject{APIKey: alice.APIKey, User: []byte("carol"), Endpoint: alice.Endpoint, IP: alice.IP}
	for i, cached := range []bool{false, true} {
		before := l.Stats()
		var ct Ticket
		if err := l.Take(bg, pol, carol, 5000, &ct); !errors.As(err, &ref) || ref.Limit.Requests != 10 {
			t.Fatalf("carol's Take %d = %v, want refused by the API key's requests limit", i, err)
		}
		if got := l.Stats().RefusedLocally != before.RefusedLocally; got != cached {
			t.Errorf("carol's Take %d answered from the cache: %v, want %v", i, got, cached)
		}
		if ct.Tokens.Limit != 100_000 || ct.Tokens.Remaining != 100_000 {
			t.Errorf("carol's Take %d: tokens %+v, want her own (100000 remaining)", i, ct.Tokens)
		}
		if ct.Requests.Limit != 10 || ct.Requests.Remaining != 0 {
			t.Errorf("carol's requests quota %+v, want the shared bucket's (limit 10, none left)", ct.Requests)
		}
	}
	// Alice, refused again from the cache (carol's refusal did not undo hers), keeps
	// her own tokens values.
	before := l.Stats()
	var at Ticket
	if err := l.Take(bg, pol, alice, 5000, &at); !errors.As(err, &ref) || at.Tokens.Remaining != 95_000 {
		t.Errorf("alice refused again: %v, tokens %+v, want 95000 remaining", err, at.Tokens)
	}
	if l.Stats().RefusedLocally == before.RefusedLocally {
		t.Error("alice's refusal after carol's did not come from the cache")
	}
}

// refusedByRedis sets up a Redis limiter with a policy of one request every six minutes
// per API key (burst 1) and 100,000 tokens a day per tokensPer, has alice take her one
// request with a token estimate of est, and returns the ticket of her second, which
// Redis refuses.
func refusedByRedis(t *testing.T, tokensPer string, est int64) (*Limiter, *Policy, Ticket) {
	t.Helper()
	srv := redistest.Start(t)
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}})
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 10, Window: "hour", Burst: 1},
		Limit{Per: tokensPer, Tokens: 100_000, Window: "day"})
	var tk Ticket
	if err := l.Take(bg, pol, alice, est, &tk); err != nil {
		t.Fatal(err)
	}
	var ref *Refused
	if err := l.Take(bg, pol, alice, est, &tk); !errors.As(err, &ref) {
		t.Fatalf("second Take = %v, want refused", err)
	}
	return l, pol, tk
}
