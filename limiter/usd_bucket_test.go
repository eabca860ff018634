package limiter

import (
	"errors"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
)

// budget is a burst of $0.01, 10^7 nano-dollars, refilled at $0.00001 a day: 10^4
// nano-dollars, about 0.12 a second, so that a test against Redis's clock sees its
// figures move by a unit at most. (A refill of the whole $0.01 a day, 116 a second,
// moves them by a unit every 9 ms: a loaded machine takes longer than that between
// a charge and the check that reads it.)
var budget = Limit{Per: "api_key", USD: 0.00001, Window: "day", Burst: 0.01}

// usdRemaining is what the usd bucket of pol has left for s, read by a check that
// costs nothing and settles at nothing.
func usdRemaining(t *testing.T, l *Limiter, pol *Policy, s *Subject) int64 {
	t.Helper()
	var tk Ticket
	if err := l.TakeAmounts(bg, pol, s, Amounts{}, &tk); err != nil {
		t.Fatalf("probe: %v", err)
	}
	l.SettleAmounts(&tk, Amounts{})
	return tk.USD.Remaining
}

// usdStores are a memory limiter on a frozen clock and Redis limiters (prefetch off,
// the figures exact but for Redis's own clock's refill, at most a unit here).
func usdStores(t *testing.T) map[string]*Limiter {
	srv := redistest.Start(t)
	return map[string]*Limiter{
		"memory": newMemLimiter(t, newTestClock()),
		"redis":  newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}, Prefetch: durationPtr(0)}),
	}
}

// near reports whether got is want, or a unit of refill above it on Redis's clock.
func near(got, want int64) bool { return got == want || got == want+1 }

// A usd bucket is charged the cost estimate at admission and trued up to the actual
// cost at settlement, exactly, in both stores: a refund when the answer cost less, the
// estimate kept when it is unknown, nothing for an answer that cost nothing. The
// headers' quota counts nano-dollars.
func TestUSDBucketChargeAndSettle(t *testing.T) {
	for name, l := range usdStores(t) {
		t.Run(name, func(t *testing.T) {
			pol := mustPolicy(t, "usd-settle-"+name, budget, Limit{Per: "api_key", Tokens: 1_000_000, Window: "day"})
			var tk Ticket
			if err := l.TakeAmounts(bg, pol, alice, Amounts{Tokens: 500, NanoUSD: 3_000_000}, &tk); err != nil {
				t.Fatal(err)
			}
			if q := tk.USD; q.Limit != 10_000_000 || !near(q.Remaining, 7_000_000) || q.Reset <= 0 {
				t.Fatalf("after the estimate: %+v, want limit 10000000, 7000000 remaining", q)
			}
			if tk.Tokens.Remaining != 999_500 {
				t.Errorf("tokens remaining %d, want 999500", tk.Tokens.Remaining)
			}
			l.SettleAmounts(&tk, Amounts{Tokens: 321, NanoUSD: 1_234_567})
			barrier(t, l)
			want := int64(10_000_000 - 1_234_567)
			if got := usdRemaining(t, l, pol, alice); !near(got, want) {
				t.Fatalf("settled at 1234567: %d remaining, want %d", got, want)
			}

			if err := l.TakeAmounts(bg, pol, alice, Amounts{Tokens: 10, NanoUSD: 2_000_000}, &tk); err != nil {
				t.Fatal(err)
			}
			l.SettleAmounts(&tk, Amounts{Tokens: KeepEstimate, NanoUSD: KeepEstimate})
			barrier(t, l)
			want -= 2_000_000
			if got := usdRemaining(t, l, pol, alice); !near(got, want) {
				t.Fatalf("estimate kept: %d remaining, want %d", got, want)
			}

			if err := l.TakeAmounts(bg, pol, alice, Amounts{Tokens: 10, NanoUSD: 1_000_000}, &tk); err != nil {
				t.Fatal(err)
			}
			l.SettleAmounts(&tk, Amounts{})
			barrier(t, l)
			if got := usdRemaining(t, l, pol, alice); !near(got, want) {
				t.Fatalf("refunded: %d remaining, want %d", got, want)
			}

			// Take and Settle alone (no cost given) charge a usd bucket nothing up
			// front and keep that at the settlement.
			if err := l.Take(bg, pol, alice, 10, &tk); err != nil {
				t.Fatal(err)
			}
			l.Settle(&tk, 10)
			barrier(t, l)
			if got := usdRemaining(t, l, pol, alice); !near(got, want) {
				t.Fatalf("Take and Settle: %d remaining, want %d", got, want)
			}
		})
	}
}

// A spent budget refuses, names the usd limit, and says when the estimate fits; a
// refusal charges no other limit (all or nothing).
func TestUSDBucketRefuses(t *testing.T) {
	for name, l := range usdStores(t) {
		t.Run(name, func(t *testing.T) {
			pol := mustPolicy(t, "usd-refuse-"+name, Limit{Per: "api_key", Requests: 100, Window: "day"}, budget)
			var tk Ticket
			for range 4 {
				if err := l.TakeAmounts(bg, pol, alice, Amounts{NanoUSD: 2_400_000}, &tk); err != nil {
					t.Fatal(err)
				}
				l.SettleAmounts(&tk, Amounts{NanoUSD: KeepEstimate})
			}
			barrier(t, l)
			err := l.TakeAmounts(bg, pol, alice, Amounts{NanoUSD: 1_000_000}, &tk)
			var ref *Refused
			if !errors.As(err, &ref) {
				t.Fatalf("Take past the budget = %v, want *Refused", err)
			}
			if ref.Limit.USD != budget.USD || ref.Limit.Burst != 0.01 || ref.Limit.Window != "day" || ref.RetryAfter <= 0 {
				t.Fatalf("refused by %+v, retry %v", ref.Limit, ref.RetryAfter)
			}
			// 600000 of the 1000000 are missing: at 10^4 a day, 60 days.
			if d := ref.RetryAfter - 60*24*time.Hour; d < -2*time.Second || d > time.Millisecond {
				t.Errorf("retry after %v, want 60 days", ref.RetryAfter)
			}
			if tk.USD.Remaining > 400_001 || tk.Requests.Remaining != 96 {
				t.Errorf("refusal's quotas: usd %+v, requests %+v (want 400000 left, the refusal charging no request)", tk.USD, tk.Requests)
			}
			if err := l.TakeAmounts(bg, pol, alice, Amounts{NanoUSD: 400_000}, &tk); err != nil {
				t.Fatalf("what is left: %v", err)
			}
			l.SettleAmounts(&tk, Amounts{NanoUSD: KeepEstimate})
		})
	}
}

// An estimate above the budget's burst is charged the whole burst once the bucket is
// full, rather than refused for ever, and the settlement charges the rest.
func TestUSDEstimateAboveBurst(t *testing.T) {
	for name, l := range usdStores(t) {
		t.Run(name, func(t *testing.T) {
			pol := mustPolicy(t, "usd-above-"+name, budget)
			var tk Ticket
			if err := l.TakeAmounts(bg, pol, alice, Amounts{NanoUSD: 30_000_000}, &tk); err != nil {
				t.Fatalf("an estimate of 3 bursts on a full bucket: %v", err)
			}
			l.SettleAmounts(&tk, Amounts{NanoUSD: KeepEstimate})
			barrier(t, l)
			// 20000001 nano-dollars owed past the bucket: 2000 days and 8.64 s at 10^4 a
			// day.
			want := 2000*24*time.Hour + 8640*time.Millisecond
			err := l.TakeAmounts(bg, pol, alice, Amounts{NanoUSD: 1}, &tk)
			var ref *Refused
			if !errors.As(err, &ref) || ref.RetryAfter < want-time.Second || ref.RetryAfter > want+time.Second {
				t.Fatalf("after the overdraft: %v (%+v), want refused for about %v", err, ref, want)
			}
		})
	}
}

// Two gateways on one Redis spend one budget together: ten requests of $0.001 fit in
// $0.01, whichever replica takes them.
func TestUSDSharedRedisBudget(t *testing.T) {
	srv := redistest.Start(t)
	cfg := Config{Redis: RedisConfig{URL: srv.URL()}}
	a, b := newRedisLimiter(t, cfg), newRedisLimiter(t, cfg)
	pol := mustPolicy(t, "usd-shared", budget)
	admitted := 0
	for i := range 30 {
		l := a
		if i%3 == 0 {
			l = b
		}
		var tk Ticket
		err := l.TakeAmounts(bg, pol, alice, Amounts{NanoUSD: 1_000_000}, &tk)
		var ref *Refused
		switch {
		case err == nil:
			admitted++
			l.SettleAmounts(&tk, Amounts{NanoUSD: 1_000_000})
		case errors.As(err, &ref):
		default:
			t.Fatal(err)
		}
	}
	if admitted != 10 {
		t.Fatalf("admitted %d requests of $0.001 on a $0.01 budget, want 10", admitted)
	}
	for _, l := range []*Limiter{a, b} {
		if s := l.Stats(); s.Fallbacks != 0 || s.RedisAnswered == 0 {
			t.Errorf("stats %+v", s)
		}
	}
}

// With prefetch a replica holds part of a fast budget's refill and answers from it;
// a cost settled below its estimate goes back to what it holds, as a token refund
// does, and the remaining it reports counts that.
func TestUSDPrefetch(t *testing.T) {
	srv := redistest.Start(t)
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}})
	// $3600 an hour is a dollar a second: 100 ms of it, 10^8 nano-dollars, is held.
	pol := mustPolicy(t, "usd-prefetch", Limit{Per: "api_key", USD: 3600, Window: "hour"})
	var tk Ticket
	for range 50 {
		if err := l.TakeAmounts(bg, pol, alice, Amounts{NanoUSD: 1_000_000}, &tk); err != nil {
			t.Fatal(err)
		}
		l.SettleAmounts(&tk, Amounts{NanoUSD: 400_000})
	}
	if s := l.Stats(); s.LocalChecks == 0 {
		t.Fatalf("no check answered from held units: %+v", s)
	}
	if q := tk.USD; q.Limit != 3_600_000_000_000 || q.Remaining > q.Limit || q.Remaining < q.Limit-100_000_000 {
		t.Errorf("usd quota %+v", q)
	}
}

// While Redis is down a replica answers from its share of the budget (burst ÷
// replicas); an estimate above the share is charged the share once it is full.
func TestUSDRedisDownShare(t *testing.T) {
	port := func() string {
		srv := redistest.Start(t)
		addr := srv.Addr()
		srv.Kill()
		return addr
	}()
	clk := newTestClock()
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: "redis://" + port}, Replicas: 4, Timeout: 50 * time.Millisecond},
		func(o *options) { o.now = clk.now })
	if !l.Degraded() {
		t.Fatal("a limiter whose Redis is down should start degraded")
	}
	pol := mustPolicy(t, "usd-share", budget)
	// A quarter of $0.01: 2500000 nano-dollars.
	var tk Ticket
	for i := range 2 {
		if err := l.TakeAmounts(bg, pol, alice, Amounts{NanoUSD: 1_000_000}, &tk); err != nil || tk.src != srcFallback {
			t.Fatalf("request %d: %v from %d, want admitted from the share", i, err, tk.src)
		}
		l.SettleAmounts(&tk, Amounts{NanoUSD: KeepEstimate})
	}
	if err := l.TakeAmounts(bg, pol, alice, Amounts{NanoUSD: 1_000_000}, &tk); err == nil {
		t.Fatal("a third $0.001 admitted from a share of $0.0025")
	}
	if tk.USD.Limit != 10_000_000 {
		t.Errorf("the headers' limit %d, want the whole budget", tk.USD.Limit)
	}
	if err := l.TakeAmounts(bg, pol, bob, Amounts{NanoUSD: 4_000_000}, &tk); err != nil {
		t.Fatalf("an estimate above the share on a full share: %v", err)
	}
	l.SettleAmounts(&tk, Amounts{NanoUSD: KeepEstimate})
	if err := l.TakeAmounts(bg, pol, bob, Amounts{NanoUSD: 1}, &tk); err == nil {
		t.Fatal("the overdrawn share admitted")
	}
	if s := l.Stats(); s.Fallbacks == 0 {
		t.Errorf("stats %+v", s)
	}
}

// A reload keeps a usd bucket and what it has spent, also one that changes the
// amount and burst: $0.006 spent of $0.01 leaves $0.014 of a raised $0.02.
func TestUSDReloadKeepsBucket(t *testing.T) {
	srv := redistest.Start(t)
	clk := newTestClock()
	for name, prev := range map[string]*Limiter{
		"memory": newMemLimiter(t, clk),
		"redis":  newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}, Prefetch: durationPtr(0)}),
	} {
		t.Run(name, func(t *testing.T) {
			pol := mustPolicy(t, "usd-reload", budget)
			var tk Ticket
			if err := prev.TakeAmounts(bg, pol, alice, Amounts{NanoUSD: 6_000_000}, &tk); err != nil {
				t.Fatal(err)
			}
			prev.SettleAmounts(&tk, Amounts{NanoUSD: KeepEstimate})
			barrier(t, prev)
			next := prev
			if name == "memory" {
				o := defaultOptions()
				o.now = clk.now
				var err error
				if next, err = newLimiter(Config{Timeout: 80 * time.Millisecond}, nil, o, prev); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = next.Close() })
			}
			raised := budget
			raised.USD, raised.Burst = 2*budget.USD, 0.02
			after := mustPolicy(t, "usd-reload", raised)
			if got := usdRemaining(t, next, after, alice); !near(got, 14_000_000) {
				t.Fatalf("after the reload: %d remaining, want 14000000", got)
			}
		})
	}
}

// A monthly budget (window: month, 30 days) spent comes back a thirtieth a day: the
// refusal says when the next request's cost is there again, in both stores.
func TestUSDMonthlyBudget(t *testing.T) {
	for name, l := range usdStores(t) {
		t.Run(name, func(t *testing.T) {
			pol := mustPolicy(t, "usd-month-"+name, Limit{Per: "api_key", USD: 30, Window: "month"})
			var tk Ticket
			if err := l.TakeAmounts(bg, pol, alice, Amounts{NanoUSD: 30 * NanoPerUSD}, &tk); err != nil {
				t.Fatal(err)
			}
			l.SettleAmounts(&tk, Amounts{NanoUSD: KeepEstimate})
			barrier(t, l)
			err := l.TakeAmounts(bg, pol, alice, Amounts{NanoUSD: NanoPerUSD}, &tk)
			var ref *Refused
			if !errors.As(err, &ref) || ref.Limit.Window != "month" {
				t.Fatalf("a dollar on a spent monthly budget: %v, want refused by it", err)
			}
			// $30 over 30 days: a dollar a day.
			if d := ref.RetryAfter - 24*time.Hour; d < -2*time.Second || d > time.Second {
				t.Errorf("retry after %v, want a day", ref.RetryAfter)
			}
		})
	}
}
