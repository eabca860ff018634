package limiter

import (
	"errors"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
)

func durationPtr(d time.Duration) *time.Duration { return &d }

// A limit far from its limit is answered from units granted ahead: a round trip per
// refill, not per request, and the headers still count every request.
func TestPrefetchAnswersLocally(t *testing.T) {
	srv := redistest.Start(t)
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}})
	pol := mustPolicy(t, "chat",
		Limit{Per: "endpoint", Requests: 1_000_000, Window: "hour"},
		Limit{Per: "endpoint", Tokens: 1_000_000_000, Window: "hour"})
	const n = 500
	var tk Ticket
	start := time.Now()
	for i := range n {
		if err := l.Take(bg, pol, alice, 10, &tk); err != nil {
			t.Fatal(err)
		}
		l.Settle(&tk, 10)
		// Every request counts, whoever answered it; 1,000,000 an hour refills one
		// request every 3.6ms meanwhile. Redis reports its remaining in whole units
		// and the replica adds the refill since: the fraction Redis dropped can make
		// the figure one short.
		want := int64(1_000_000 - i - 1)
		refilled := int64(time.Since(start)/(3600*time.Microsecond)) + 1
		if q := tk.Requests; q.Remaining < want-1 || q.Remaining > want+refilled {
			t.Fatalf("request %d: Requests = %+v, want %d..%d left", i, q, want, want+refilled)
		}
	}
	st := l.Stats()
	t.Logf("%+v", st)
	if st.LocalChecks < n*9/10 || st.RedisChecks > n/10 {
		t.Errorf("%d of %d checks answered locally, %d sent to Redis: want most answered locally", st.LocalChecks, n, st.RedisChecks)
	}
	if st.Fallbacks != 0 || st.Refused != 0 {
		t.Errorf("stats %+v: want no fallback and no refusal", st)
	}
}

// Replicas that prefetch admit what the bucket allows, no more, at saturation.
func TestPrefetchAcrossReplicasIsExact(t *testing.T) {
	// Not parallel: 16 closed-loop clients load the machine, and the 1% bound tolerates
	// about 0.5 s of refill that no check is there to take.
	srv := redistest.Start(t)
	// 10 a second with a burst of 400; ten seconds of prefetch asks for 50 at a time
	// (an eighth of the burst), granted only while the bucket is above half full.
	cfg := Config{Redis: RedisConfig{URL: srv.URL()}, Prefetch: durationPtr(10 * time.Second)}
	ls := []*Limiter{newRedisLimiter(t, cfg), newRedisLimiter(t, cfg)}
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 36_000, Window: "hour", Burst: 400})
	admitted, _, elapsed := saturate(t, srv, ls, pol, 16, 2*time.Second)
	var local uint64
	for _, l := range ls {
		local += l.Stats().LocalChecks
	}
	allowance := 400 + 10*elapsed.Seconds()
	got := float64(admitted)
	t.Logf("admitted %v, allowance %.2f, %d answered from prefetched units", got, allowance, local)
	if local == 0 {
		t.Error("no check was answered from prefetched units")
	}
	if low := 0.99*allowance - 1; got > allowance || got < low {
		t.Errorf("admitted %v, want %.2f..%.2f", got, low, allowance)
	}
}

// Units not spent go back to the bucket when the limiter closes and when they expire.
func TestPrefetchGivesBack(t *testing.T) {
	srv := redistest.Start(t)
	cfg := Config{Redis: RedisConfig{URL: srv.URL()}, Prefetch: durationPtr(10 * time.Second)}
	// 10 a second: ten seconds of prefetch is 100 units.
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 36_000, Window: "hour"})
	off := Config{Redis: cfg.Redis, Prefetch: durationPtr(0)}
	check := newRedisLimiter(t, off)

	t.Run("close", func(t *testing.T) {
		a := newRedisLimiter(t, cfg)
		// The first check of a bucket asks for nothing ahead, the second for 100 units,
		// the third spends one of them.
		if got := admitN(t, a, pol, alice, 0, 3); got != 3 {
			t.Fatalf("admitted %d of 3", got)
		}
		if s := a.Stats(); s.LocalChecks != 1 || s.RedisAnswered != 2 {
			t.Fatalf("stats %+v: want the third check answered from the 100 prefetched units", s)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if s := a.Stats(); s.ReturnedUnits != 99 {
			t.Fatalf("stats %+v: want 99 units given back", s)
		}
		var tk Ticket
		if err := check.Take(bg, pol, alice, 0, &tk); err != nil {
			t.Fatal(err)
		}
		// Four requests taken; without the give-back 99 more would be missing.
		if q := tk.Requests; q.Remaining < 36_000-4 {
			t.Errorf("Requests = %+v after 4 requests, want %d left", q, 36_000-4)
		}
	})

	t.Run("expiry", func(t *testing.T) {
		clk := newTestClock()
		a := newRedisLimiter(t, cfg, func(o *options) { o.now = clk.now })
		if got := admitN(t, a, pol, bob, 0, 2); got != 2 {
			t.Fatal("not admitted")
		}
		clk.advance(prefetchHold + time.Millisecond)
		waitFor(t, 2*time.Second, "expired units given back", func() bool { return a.Stats().ReturnedUnits == 100 })
		before := a.Stats()
		if got := admitN(t, a, pol, bob, 0, 1); got != 1 {
			t.Fatal("not admitted")
		}
		if s := a.Stats(); s.LocalChecks != before.LocalChecks || s.RedisChecks != before.RedisChecks+1 {
			t.Errorf("stats %+v -> %+v: want the check after expiry sent to Redis", before, s)
		}
		barrier(t, a)
		var tk Ticket
		if err := check.Take(bg, pol, bob, 0, &tk); err != nil {
			t.Fatal(err)
		}
		// bob: three requests and this one; the 100 units went back, and the check
		// after the pause asked for none (a bucket new to the replica again).
		if q := tk.Requests; q.Remaining < 36_000-4 || q.Remaining > 36_000-4+2 {
			t.Errorf("Requests = %+v, want %d left", q, 36_000-4)
		}
	})
}

// A refund settled into a held bucket that Redis granted nothing ahead (it was below
// half full) goes back to Redis with the held units when the key goes quiet, instead
// of being forgotten with the entry.
func TestPrefetchGivesBackRefundOfUngrantedBucket(t *testing.T) {
	srv := redistest.Start(t)
	clk := newTestClock()
	a := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}, Prefetch: durationPtr(10 * time.Second)},
		func(o *options) { o.now = clk.now })
	check := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}, Prefetch: durationPtr(0)})
	// 1000 tokens a second; ten seconds of prefetch asks for 10,000 units.
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Tokens: 3_600_000, Window: "hour"})
	var tk Ticket
	// Another replica drains the bucket below half: nothing is granted ahead any more.
	if err := check.Take(bg, pol, alice, 2_000_000, &tk); err != nil {
		t.Fatal(err)
	}
	check.Settle(&tk, KeepEstimate)
	if err := check.Take(bg, pol, alice, 0, &tk); err != nil {
		t.Fatal(err)
	}
	before := tk.Tokens.Remaining

	// The first check creates the held entry, the second asks ahead and gets nothing.
	if err := a.Take(bg, pol, alice, 4000, &tk); err != nil {
		t.Fatal(err)
	}
	a.Settle(&tk, KeepEstimate)
	if err := a.Take(bg, pol, alice, 4000, &tk); err != nil {
		t.Fatal(err)
	}
	a.Settle(&tk, 0) // the upstream failed: 4000 to refund
	barrier(t, a)

	// The key goes quiet: what the replica holds goes back.
	clk.advance(prefetchHold + time.Millisecond)
	a.rs.giveBack(false)
	barrier(t, a)

	if err := check.Take(bg, pol, alice, 0, &tk); err != nil {
		t.Fatal(err)
	}
	// 4000 used since; the refill of one a millisecond only adds.
	if got := tk.Tokens.Remaining; got < before-4000 {
		t.Errorf("Tokens.Remaining %d, want at least %d: the refund of 4000 was lost (stats %+v)", got, before-4000, a.Stats())
	}
	if s := a.Stats(); s.ReturnedUnits != 4000 {
		t.Errorf("stats %+v: want the 4000 refunded units returned", s)
	}
}

// Small limits, limits near their end and concurrency limits are decided in Redis for
// every request.
func TestPrefetchOnlyFarFromTheLimit(t *testing.T) {
	srv := redistest.Start(t)
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}})
	tests := []struct {
		name string
		pol  *Policy
	}{
		// 10 a second: 100ms of it is one request, not worth holding.
		{"small", mustPolicy(t, "small", Limit{Per: "api_key", Requests: 600, Window: "minute", Burst: 60})},
		{"concurrency", mustPolicy(t, "conc",
			Limit{Per: "api_key", Requests: 1_000_000, Window: "minute"},
			Limit{Per: "api_key", Concurrency: 1000})},
		// 100ms of the tokens bucket cannot cover two requests of 10,000 tokens.
		{"tokens", mustPolicy(t, "tok",
			Limit{Per: "api_key", Requests: 1_000_000, Window: "minute"},
			Limit{Per: "api_key", Tokens: 1_000_000, Window: "minute"})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := l.Stats()
			var tk Ticket
			for range 20 {
				if err := l.Take(bg, tc.pol, alice, 10_000, &tk); err != nil {
					t.Fatal(err)
				}
				l.Settle(&tk, KeepEstimate)
			}
			if s := l.Stats(); s.LocalChecks != before.LocalChecks || s.RedisChecks-before.RedisChecks != 20 {
				t.Errorf("stats %+v -> %+v: want all 20 checks sent to Redis", before, s)
			}
		})
	}

	// Prefetching stops in the lower half of the bucket: from there every check is a
	// round trip, and the bucket refuses exactly when it is empty.
	t.Run("lower half", func(t *testing.T) {
		cfg := Config{Redis: RedisConfig{URL: srv.URL()}, Prefetch: durationPtr(10 * time.Second)}
		l := newRedisLimiter(t, cfg)
		// 36,000 an hour, burst 80: an eighth of the burst (10) at a time.
		pol := mustPolicy(t, "half", Limit{Per: "api_key", Requests: 36_000, Window: "hour", Burst: 80})
		var tk Ticket
		admitted := 0
		for range 50 {
			if l.Take(bg, pol, alice, 0, &tk) == nil {
				admitted++
			}
		}
		mid := l.Stats()
		// Grants stop once fewer than 40 are left in Redis; whatever was held is spent.
		if mid.LocalChecks == 0 || mid.LocalChecks > 40 {
			t.Errorf("stats %+v: want some but at most 40 checks answered locally", mid)
		}
		for range 60 {
			if l.Take(bg, pol, alice, 0, &tk) == nil {
				admitted++
			}
		}
		end := l.Stats()
		// 80 in the bucket plus what 10 a second refills while this runs.
		if admitted < 80 || admitted > 85 {
			t.Errorf("admitted %d of 110 from a bucket of 80", admitted)
		}
		if end.LocalChecks != mid.LocalChecks {
			t.Errorf("stats %+v -> %+v: checks in the lower half answered locally", mid, end)
		}
	})
}

// A request that one held bucket cannot cover goes to Redis and spends none of what
// the other buckets hold.
func TestPrefetchAllOrNothing(t *testing.T) {
	l, pol := slowPrefetchLimiter(t)
	var tk Ticket
	take := func(est int64) Quota {
		t.Helper()
		if err := l.Take(bg, pol, alice, est, &tk); err != nil {
			t.Fatal(err)
		}
		l.Settle(&tk, KeepEstimate)
		return tk.Requests
	}
	take(100) // a bucket new to the replica: nothing asked ahead
	first := take(100)
	local := l.Stats().LocalChecks
	take(100)
	if l.Stats().LocalChecks != local+1 {
		t.Fatalf("stats %+v: want the third check answered locally", l.Stats())
	}
	// 20,000 tokens is more than the 10,000 held: Redis decides, and grants nothing
	// ahead for a request that large.
	big := take(20_000)
	if l.Stats().LocalChecks != local+1 {
		t.Fatalf("stats %+v: a request over what is held was answered locally", l.Stats())
	}
	after := take(100)
	if l.Stats().LocalChecks != local+2 {
		t.Fatalf("stats %+v: want the check after it answered locally again", l.Stats())
	}
	// Every admitted request counts once: the big one took one request in Redis and
	// none of the held ones.
	if first.Remaining-big.Remaining != 2 || big.Remaining-after.Remaining != 1 {
		t.Errorf("Remaining %d, %d, %d: want one less per request", first.Remaining, big.Remaining, after.Remaining)
	}
}

// Token true-ups of a held bucket stay local: no settlement round to Redis, and the
// next request sees the refund.
func TestPrefetchSettlesLocally(t *testing.T) {
	// The limiter's clock stands still: what a local check reports is what Redis said
	// last and what is held, with no refill between the checks however long a loaded
	// machine takes over them.
	clk := newTestClock()
	l, pol := slowPrefetchLimiter(t, func(o *options) { o.now = clk.now })
	var tk Ticket
	for range 2 { // the second check of a bucket asks ahead
		if err := l.Take(bg, pol, alice, 100, &tk); err != nil {
			t.Fatal(err)
		}
		l.Settle(&tk, KeepEstimate)
	}
	if err := l.Take(bg, pol, alice, 100, &tk); err != nil {
		t.Fatal(err)
	}
	first := tk.Tokens.Remaining
	before := l.Stats()
	l.Settle(&tk, 40)
	time.Sleep(20 * time.Millisecond) // a settlement sent to Redis would go within 1ms
	if err := l.Take(bg, pol, alice, 100, &tk); err != nil {
		t.Fatal(err)
	}
	l.Settle(&tk, 130)
	time.Sleep(20 * time.Millisecond)
	after := l.Stats()
	if after.RoundTrips != before.RoundTrips || after.LocalChecks != before.LocalChecks+1 {
		t.Errorf("stats %+v -> %+v: want the check and both settlements answered locally", before, after)
	}
	// 60 refunded, then 100 charged, exactly: the clock standing still, nothing refilled.
	if got := tk.Tokens.Remaining; got != first-40 {
		t.Errorf("Tokens.Remaining %d after %d, want %d", got, first, first-40)
	}
	if err := l.Take(bg, pol, alice, 0, &tk); err != nil {
		t.Fatal(err)
	}
	// The second request used 130: 30 more than its estimate.
	if got := tk.Tokens.Remaining; got != first-40-30 {
		t.Errorf("Tokens.Remaining %d, want %d", got, first-70)
	}
}

// At a steady load far below the limits nothing goes to Redis once the units are
// held, settlements included.
func TestPrefetchSteadyLoadNeedsNoRoundTrips(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}})
	pol := mustPolicy(t, "chat",
		Limit{Per: "endpoint", Requests: 1_000_000_000, Window: "minute"},
		Limit{Per: "endpoint", Tokens: 1_000_000_000_000, Window: "minute"})
	var tk Ticket
	run := func(d time.Duration) {
		for end := time.Now().Add(d); time.Now().Before(end); {
			if err := l.Take(bg, pol, alice, 30, &tk); err != nil {
				t.Fatal(err)
			}
			l.Settle(&tk, 40)
			time.Sleep(time.Millisecond)
		}
	}
	// Longer than prefetchHold: units in use are never handed back.
	run(prefetchHold + 200*time.Millisecond)
	before := l.Stats()
	run(500 * time.Millisecond)
	after := l.Stats()
	if after.RoundTrips != before.RoundTrips || after.RedisChecks != before.RedisChecks || after.ReturnedUnits != 0 {
		t.Errorf("stats %+v -> %+v: want no round trip and nothing given back", before, after)
	}
}

// slowPrefetchLimiter prefetches ten seconds of a policy of 10 requests (100 held) and
// 1,000 tokens a second (10,000 held), so that refill during a test stays small.
func slowPrefetchLimiter(t *testing.T, mod ...func(*options)) (*Limiter, *Policy) {
	srv := redistest.Start(t)
	cfg := Config{Redis: RedisConfig{URL: srv.URL()}, Prefetch: durationPtr(10 * time.Second)}
	return newRedisLimiter(t, cfg, mod...), mustPolicy(t, "chat",
		Limit{Per: "api_key", Requests: 36_000, Window: "hour"},
		Limit{Per: "api_key", Tokens: 3_600_000, Window: "hour"})
}

// A bucket checked less often than prefetchHold (a quiet API key) never prefetches: its
// units would go back unused every time, a second Redis operation per request.
func TestPrefetchNotForQuietBuckets(t *testing.T) {
	srv := redistest.Start(t)
	clk := newTestClock()
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}}, func(o *options) { o.now = clk.now })
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 1_000_000, Window: "minute"})
	for range 5 {
		if got := admitN(t, l, pol, alice, 0, 1); got != 1 {
			t.Fatal("not admitted")
		}
		clk.advance(prefetchHold + time.Millisecond)
		l.rs.giveBack(false)
	}
	if s := l.Stats(); s.LocalChecks != 0 || s.ReturnedUnits != 0 || s.RedisAnswered != 5 {
		t.Errorf("stats %+v: want five checks answered by Redis and nothing prefetched", s)
	}
}

// The buckets tracked for prefetch are bounded; past the bound new buckets are checked
// in Redis request by request.
func TestPrefetchTracksBoundedBuckets(t *testing.T) {
	srv := redistest.Start(t)
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}})
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 1_000_000, Window: "minute"})
	l.rs.pmu.Lock()
	for i := range maxHeld {
		l.rs.held[keyID{tag: uint64(i), bucket: 1}] = &held{idleUntil: 1 << 62}
	}
	l.rs.pmu.Unlock()
	if got := admitN(t, l, pol, alice, 0, 5); got != 5 {
		t.Fatalf("admitted %d of 5", got)
	}
	l.rs.pmu.Lock()
	n := len(l.rs.held)
	l.rs.pmu.Unlock()
	if s := l.Stats(); n != maxHeld || s.LocalChecks != 0 || s.RedisAnswered != 5 {
		t.Errorf("%d buckets tracked, stats %+v: want %d and every check answered by Redis", n, s, maxHeld)
	}
}

// A reload that lowers a limit keeps its bucket (same scope, per, kind and window),
// but the units a replica took ahead under the old limit were taken at its faster
// rate: they go back, and the new limit alone decides from then on.
func TestPrefetchLoweredLimitGivesBackHeldUnits(t *testing.T) {
	srv := redistest.Start(t)
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}})
	old := mustPolicy(t, "chat", Limit{Per: "endpoint", Requests: 10_000, Window: "second"})
	// The first check registers the bucket, the second asks 1000 units ahead.
	if got := admitN(t, l, old, alice, 0, 5); got != 5 {
		t.Fatalf("admitted %d of 5 under the old limit", got)
	}
	if l.Stats().LocalChecks == 0 {
		t.Fatal("no units were prefetched under the old limit")
	}
	lowered := mustPolicy(t, "chat", Limit{Per: "endpoint", Requests: 10, Window: "second"})
	// 10 in the bucket and at most one refilled while the checks run.
	if got := admitN(t, l, lowered, alice, 0, 200); got > 11 {
		t.Errorf("admitted %d of 200 right after lowering the limit to 10/second (burst 10); stats %+v", got, l.Stats())
	}
	if s := l.Stats(); s.ReturnedUnits < 990 {
		t.Errorf("stats %+v: want the ~997 units held under the old limit given back", s)
	}
}

// A request answered from held units but too large to prefetch for (two of it exceed
// what the replica asks ahead) asks Redis for nothing, and leaves the units to go back
// once the bucket goes quiet, as any others.
func TestPrefetchGivesBackAfterRequestTooLargeToPrefetch(t *testing.T) {
	srv := redistest.Start(t)
	clk := newTestClock()
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}}, func(o *options) { o.now = clk.now })
	// 1,000,000 tokens a minute: 100ms of prefetch is 1666 units.
	pol := mustPolicy(t, "tok", Limit{Per: "endpoint", Tokens: 1_000_000, Window: "minute"})
	var tk Ticket
	take := func(est int64) {
		t.Helper()
		if err := l.Take(bg, pol, alice, est, &tk); err != nil {
			t.Fatal(err)
		}
		l.Settle(&tk, est)
	}
	for range 3 { // the second check asks ahead, the third spends from what it got
		take(10)
	}
	take(900) // 756 left: below half of 1666, yet 1800 is more than a refill asks
	if s := l.Stats(); s.LocalChecks != 2 {
		t.Fatalf("stats %+v: want the last two checks answered from held units", s)
	}
	barrier(t, l)
	clk.advance(prefetchHold + time.Millisecond)
	l.rs.giveBack(false)
	barrier(t, l)
	k := keyID{tk.tag[0], tk.bucket[0]}
	l.rs.pmu.Lock()
	h := l.rs.held[k]
	l.rs.pmu.Unlock()
	if s := l.Stats(); h != nil || s.ReturnedUnits != 1666-10-900 {
		t.Errorf("held entry %+v, stats %+v: want the %d unused units given back", h, s, 1666-10-900)
	}
}

// tokensHeld returns the prefetch entry of the tokens bucket of tk (rule 1 of
// slowPrefetchLimiter's policy) and what it holds, read under the lock.
func tokensHeld(t *testing.T, l *Limiter, tk *Ticket) (*held, float64) {
	t.Helper()
	l.rs.pmu.Lock()
	defer l.rs.pmu.Unlock()
	h := l.rs.held[keyID{tk.tag[1], tk.bucket[1]}]
	if h == nil {
		t.Fatal("the tokens bucket has no prefetch entry")
	}
	return h, h.avail
}

// A settlement that charges more than the replica holds spends the held units, sends
// only the rest to Redis, and voids the entry: the next request is decided by Redis,
// which refuses it until the debt is paid (README: a request that overdraws makes the
// next ones wait), instead of being admitted from held units with the remaining from
// before the debt.
func TestPrefetchOverdraftVoidsHeldUnits(t *testing.T) {
	l, pol := slowPrefetchLimiter(t)
	var tk Ticket
	for range 3 { // the second check asks ahead, the third is answered locally
		if err := l.Take(bg, pol, alice, 100, &tk); err != nil {
			t.Fatal(err)
		}
		l.Settle(&tk, KeepEstimate)
	}
	if err := l.Take(bg, pol, alice, 100, &tk); err != nil {
		t.Fatal(err)
	}
	if _, avail := tokensHeld(t, l, &tk); avail < 1000 {
		t.Fatalf("%v tokens held, want the ~10,000 prefetched", avail)
	}
	before := l.Stats()
	// Twice the burst of 3,600,000: an hour of the bucket owed once it is spent.
	l.Settle(&tk, 7_200_000)
	h, avail := tokensHeld(t, l, &tk)
	if avail != 0 || h.remaining != 0 || h.resetAt != 0 || h.interval != 0 {
		t.Fatalf("entry %+v after the overdraft, want it void", *h)
	}
	err := l.Take(bg, pol, alice, 100, &tk)
	var ref *Refused
	if !errors.As(err, &ref) {
		t.Fatalf("Take after the overdraft: %v, want refused", err)
	}
	after := l.Stats()
	if after.LocalChecks != before.LocalChecks || after.RedisAnswered != before.RedisAnswered+1 {
		t.Errorf("stats %+v -> %+v: want the check after the overdraft answered by Redis", before, after)
	}
	if after.ReturnedUnits != 0 {
		t.Errorf("%d units given back: the held units pay for the overdraft", after.ReturnedUnits)
	}
	// ~3,600,000 owed at 1,000 a second; the held units spent on it shorten it by ~10s.
	if ref.RetryAfter < 3500*time.Second || ref.RetryAfter > 3700*time.Second {
		t.Errorf("RetryAfter %v, want about an hour", ref.RetryAfter)
	}
	if tk.Tokens.Remaining != 0 {
		t.Errorf("Tokens %+v, want none remaining", tk.Tokens)
	}
}

// Units granted to a check that was on its way when a settlement overdrew the entry
// may predate the debt in Redis: they go back instead of admitting the next requests.
func TestPrefetchOverdraftGivesBackGrantInFlight(t *testing.T) {
	l, pol := slowPrefetchLimiter(t)
	var tk Ticket
	for range 3 {
		if err := l.Take(bg, pol, alice, 100, &tk); err != nil {
			t.Fatal(err)
		}
		l.Settle(&tk, KeepEstimate)
	}
	if err := l.Take(bg, pol, alice, 100, &tk); err != nil {
		t.Fatal(err)
	}
	// A refill on its way, as takeLocal and askAhead mark one.
	h, _ := tokensHeld(t, l, &tk)
	l.rs.pmu.Lock()
	h.asking = true
	l.rs.pmu.Unlock()
	l.Settle(&tk, 7_200_000)
	// The refill's answer, granted before the debt reached Redis.
	w := &waiter{pol: pol, n: tk.n, tag: tk.tag, bucket: tk.bucket}
	w.want[1], w.granted[1], w.remaining[1] = 10_000, 10_000, 3_000_000
	w.remaining[0] = 30_000
	l.rs.granted([]*waiter{w})
	l.rs.pmu.Lock()
	avail, asking, overdrawn := h.avail, h.asking, h.overdrawn
	l.rs.pmu.Unlock()
	if avail != 0 || asking || overdrawn {
		t.Errorf("entry holds %v (asking %v, overdrawn %v) after the grant, want nothing held", avail, asking, overdrawn)
	}
	if got := l.Stats().ReturnedUnits; got != 10_000 {
		t.Errorf("%d units given back, want the 10,000 granted", got)
	}
	if err := l.Take(bg, pol, alice, 100, &tk); err == nil {
		t.Error("Take after the overdraft admitted, want refused")
	}
}
