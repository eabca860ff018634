package limiter

import (
	"errors"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
)

// A refusal cached for a requests bucket answers only checks Redis vouched for: a
// request that another limit refuses for far longer is not given the cached answer.
// 500 of 1000 tokens an hour are spent, so a request of 1000 tokens fits in 30
// minutes, and both stores say so (the tokens limit, retry-after 1800) rather than
// the requests limit's 6 s, after which the client would be refused again.
func TestRefusalCacheNotForLongerLimit(t *testing.T) {
	for _, st := range storesPrefetching(DefaultPrefetch) {
		t.Run(st.name, func(t *testing.T) {
			l := st.open(t)
			pol := mustPolicy(t, "chat",
				Limit{Per: "api_key", Requests: 10, Window: "minute"},
				Limit{Per: "api_key", Tokens: 1000, Window: "hour"})
			if n := admitN(t, l, pol, alice, 50, 10); n != 10 {
				t.Fatalf("%d of 10 admitted", n)
			}
			var tk Ticket
			var ref *Refused
			if err := l.Take(bg, pol, alice, 1, &tk); !errors.As(err, &ref) || ref.Limit.Requests != 10 {
				t.Fatalf("11th request: %v, want refused by the requests limit", err)
			}
			err := l.Take(bg, pol, alice, 1000, &tk)
			if !errors.As(err, &ref) {
				t.Fatalf("12th request (1000 tokens): %v, want refused", err)
			}
			if ref.Limit.Tokens != 1000 || ref.RetryAfter < 1790*time.Second {
				t.Errorf("12th request refused by %+v, retry after %v; want the tokens limit, about 1800s", ref.Limit, ref.RetryAfter)
			}
			// The 11th request's like is still answered from the cache.
			before := l.Stats()
			if err := l.Take(bg, pol, alice, 1, &tk); !errors.As(err, &ref) || ref.Limit.Requests != 10 {
				t.Fatalf("13th request (1 token): %v, want refused by the requests limit", err)
			}
			if s := l.Stats(); st.name == "redis" && (s.RefusedLocally != before.RefusedLocally+1 || s.RoundTrips != before.RoundTrips) {
				t.Errorf("stats %+v -> %+v: want the 13th request refused from the cache", before, s)
			}
		})
	}
}

// A check the cache cannot vouch for is asked in Redis once, and answered from the
// cache after that: a larger estimate on the same buckets, and a policy object of the
// same rules alone (a reload that kept the limit) for a requests limit alone.
func TestRefusalCacheAsksRedisOnce(t *testing.T) {
	tests := []struct {
		name    string
		limits  []Limit
		est     int64
		second  func(*Policy) (*Policy, int64)
		inRedis bool // whether the first second check goes to Redis
	}{
		{"larger estimate", []Limit{
			{Per: "api_key", Requests: 1, Window: "hour"},
			{Per: "api_key", Tokens: 100_000, Window: "hour"},
		}, 10, func(p *Policy) (*Policy, int64) { return p, 500 }, true},
		{"smaller estimate", []Limit{
			{Per: "api_key", Requests: 1, Window: "hour"},
			{Per: "api_key", Tokens: 100_000, Window: "hour"},
		}, 500, func(p *Policy) (*Policy, int64) { return p, 10 }, false},
		{"requests limit alone, another policy object", []Limit{
			{Per: "api_key", Requests: 1, Window: "hour"},
		}, 10, func(*Policy) (*Policy, int64) {
			return mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 1, Window: "hour"}), 10
		}, false},
		{"tokens limit too, another policy object", []Limit{
			{Per: "api_key", Requests: 1, Window: "hour"},
			{Per: "api_key", Tokens: 100_000, Window: "hour"},
		}, 10, func(*Policy) (*Policy, int64) {
			return mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 1, Window: "hour"},
				Limit{Per: "api_key", Tokens: 100_000, Window: "hour"}), 10
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: redistest.Start(t).URL()}})
			pol := mustPolicy(t, "chat", tc.limits...)
			var tk Ticket
			var ref *Refused
			if err := l.Take(bg, pol, alice, tc.est, &tk); err != nil {
				t.Fatal(err)
			}
			if err := l.Take(bg, pol, alice, tc.est, &tk); !errors.As(err, &ref) {
				t.Fatalf("second Take = %v, want refused", err)
			}
			second, est := tc.second(pol)
			for i, cached := range []bool{!tc.inRedis, true} {
				before := l.Stats()
				if err := l.Take(bg, second, alice, est, &tk); !errors.As(err, &ref) || ref.Limit.Requests != 1 {
					t.Fatalf("check %d: %v, want refused by the requests limit", i, err)
				}
				s := l.Stats()
				local, asked := s.RefusedLocally-before.RefusedLocally, s.RedisAnswered-before.RedisAnswered
				if cached && (local != 1 || asked != 0) || !cached && (local != 0 || asked != 1) {
					t.Errorf("check %d: stats %+v -> %+v, want answered from the cache: %v", i, before, s, cached)
				}
				if tk.RetryAfter < 59*time.Minute {
					t.Errorf("check %d: retry after %v, want about an hour", i, tk.RetryAfter)
				}
			}
		})
	}
}

// What the cache vouched for under a refusal that was voided (capacity queued back to
// the bucket) does not answer under the next refusal of the bucket: the vouched
// check's other buckets may have been charged meanwhile.
func TestRefusalCacheVouchEndsWithItsRefusal(t *testing.T) {
	l, pol, tk := refusedByRedis(t, "user", 10)
	carol := &Subject{APIKey: alice.APIKey, User: []byte("carol"), Endpoint: alice.Endpoint, IP: alice.IP}
	var ct Ticket
	var ref *Refused
	if err := l.Take(bg, pol, carol, 10, &ct); !errors.As(err, &ref) {
		t.Fatalf("carol's Take = %v, want refused", err)
	}
	l.rs.mu.Lock()
	l.rs.returningLocked(keyID{tk.tag[0], tk.bucket[0]})
	l.rs.mu.Unlock()
	// Alice is refused by Redis again: a new refusal of the bucket.
	before := l.Stats()
	if err := l.Take(bg, pol, alice, 10, &tk); !errors.As(err, &ref) {
		t.Fatalf("alice's Take = %v, want refused", err)
	}
	if err := l.Take(bg, pol, carol, 10, &ct); !errors.As(err, &ref) {
		t.Fatalf("carol's Take = %v, want refused", err)
	}
	if s := l.Stats(); s.RefusedLocally != before.RefusedLocally || s.RedisAnswered != before.RedisAnswered+2 {
		t.Errorf("stats %+v -> %+v: want both checks answered by Redis", before, s)
	}
}

// The sweep forgets expired refusals and what was vouched for under them.
func TestRefusalSweepForgetsVouches(t *testing.T) {
	clk := newTestClock()
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: redistest.Start(t).URL()}}, func(o *options) { o.now = clk.now })
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 1, Window: "hour"},
		Limit{Per: "user", Tokens: 100_000, Window: "hour"})
	if got := admitN(t, l, pol, alice, 10, 2); got != 1 {
		t.Fatalf("admitted %d of 2, want 1", got)
	}
	count := func() (int, int) {
		l.rs.rmu.Lock()
		defer l.rs.rmu.Unlock()
		return len(l.rs.refused), len(l.rs.vouched)
	}
	if r, v := count(); r != 1 || v != 1 {
		t.Fatalf("%d refusals, %d vouched checks cached, want 1 and 1", r, v)
	}
	clk.advance(maxRefusalCache)
	l.rs.sweepRefusals()
	if r, v := count(); r != 0 || v != 0 {
		t.Errorf("%d refusals, %d vouched checks cached after they expired, want none", r, v)
	}
}
