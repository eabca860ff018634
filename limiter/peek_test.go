package limiter

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
)

// peekLimits are a key's limits of every kind, slow enough that Redis's clock refills
// nothing of them over a test: a request every 86 s, a token every 26 s, a nano-dollar
// every 26 s.
var peekLimits = []Limit{
	{Per: "api_key", Requests: 1000, Window: "day", Burst: 50},
	{Per: "api_key", Tokens: 100_000, Window: "month"},
	{Per: "api_key", USD: 0.0001, Window: "month", Burst: 0.01},
	{Per: "api_key", Concurrency: 3},
}

// probesOf names every limit of pol for s.
func probesOf(pol *Policy, s *Subject) []Probe {
	ps := make([]Probe, pol.Len())
	for i := range ps {
		ps[i] = Probe{Policy: pol, Limit: i, Subject: *s}
	}
	return ps
}

// checkReset fails t unless a reading's reset is the ticket's less the time since the
// ticket was filled (since), within a millisecond either way for the rounding of
// Redis's clock, which is in microseconds.
func checkReset(t *testing.T, what string, got, ticket, since time.Duration) {
	t.Helper()
	// since is timed from after the take returned: the ticket's reset was read a
	// little before (Redis's clock, in its script), so allow a loaded machine's delay.
	if got > ticket+time.Millisecond || got < ticket-since-50*time.Millisecond {
		t.Errorf("%s: reset %v, want %v less at most %v", what, got, ticket, since)
	}
}

// peekStores are a memory limiter on a frozen clock and a Redis limiter without
// prefetch, whose figures are exact but for Redis's clock.
func peekStores(t *testing.T) map[string]*Limiter {
	srv := redistest.Start(t)
	return map[string]*Limiter{
		"memory": newMemLimiter(t, newTestClock()),
		"redis":  newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}, Prefetch: durationPtr(0)}),
	}
}

// A peek reads what the headers of the last check said (remaining and limit exactly,
// the reset less the time since), once its settlement is in; a concurrency limit
// counts the requests in flight; a bucket never used reads full.
func TestPeekReadsWhatTheHeadersSaid(t *testing.T) {
	for name, l := range peekStores(t) {
		t.Run(name, func(t *testing.T) {
			pol := mustPolicy(t, "key:team-a", peekLimits...)
			var tk Ticket
			for range 3 {
				if err := l.TakeAmounts(bg, pol, alice, Amounts{Tokens: 700, NanoUSD: 120_000}, &tk); err != nil {
					t.Fatal(err)
				}
				l.SettleAmounts(&tk, Amounts{Tokens: 700, NanoUSD: 120_000})
			}
			if err := l.TakeAmounts(bg, pol, alice, Amounts{Tokens: 500, NanoUSD: 90_000}, &tk); err != nil {
				t.Fatal(err)
			}
			taken := time.Now()
			if l.rs != nil {
				barrier(t, l)
			}
			rs := l.Peek(bg, probesOf(pol, alice))
			since := time.Since(taken)
			want := []Quota{tk.Requests, tk.Tokens, tk.USD}
			for i, q := range want {
				got := rs[i]
				if got.Source.String() != name {
					t.Errorf("limit %d: source %v, want %s", i, got.Source, name)
				}
				if got.Quota.Limit != q.Limit || got.Quota.Remaining != q.Remaining {
					t.Errorf("limit %d: %+v, the headers said %+v", i, got.Quota, q)
				}
				checkReset(t, "limit "+pol.rules[i].scope, got.Quota.Reset, q.Reset, since)
			}
			if c := rs[3]; c.InUse != 1 || c.Quota != (Quota{Limit: 3, Remaining: 2}) {
				t.Errorf("concurrency with one request in flight: %+v", c)
			}
			if rs[0].Quota.Remaining != 46 || rs[1].Quota.Remaining != 100_000-2600 || rs[2].Quota.Remaining != 10_000_000-450_000 {
				t.Errorf("readings %+v", rs)
			}
			l.SettleAmounts(&tk, Amounts{Tokens: 500, NanoUSD: 90_000})
			if l.rs != nil {
				barrier(t, l)
			}
			if c := l.Peek(bg, probesOf(pol, alice))[3]; c.InUse != 0 || c.Quota.Remaining != 3 {
				t.Errorf("concurrency once the request ended: %+v", c)
			}
			for i, r := range l.Peek(bg, probesOf(pol, bob)) {
				full := Quota{Limit: []int64{1000, 100_000, 10_000_000, 3}[i], Remaining: []int64{50, 100_000, 10_000_000, 3}[i]}
				if r.Quota != full || r.InUse != 0 {
					t.Errorf("limit %d never used: %+v, want %+v", i, r, full)
				}
			}
		})
	}
}

// Peeking charges nothing and changes nothing: a limiter that peeks between its checks
// answers them exactly as one that does not, and a bucket never used is not created.
func TestPeekChangesNothing(t *testing.T) {
	clkA, clkB := newTestClock(), newTestClock()
	a, b := newMemLimiter(t, clkA), newMemLimiter(t, clkB)
	pol := mustPolicy(t, "key:team-a", peekLimits...)
	var ta, tb Ticket
	for i := range 60 {
		for range 5 {
			a.Peek(bg, probesOf(pol, alice))
			a.Peek(bg, probesOf(pol, bob))
		}
		errA := a.TakeAmounts(bg, pol, alice, Amounts{Tokens: 300, NanoUSD: 40_000}, &ta)
		errB := b.TakeAmounts(bg, pol, alice, Amounts{Tokens: 300, NanoUSD: 40_000}, &tb)
		if (errA == nil) != (errB == nil) || ta.Requests != tb.Requests || ta.Tokens != tb.Tokens || ta.USD != tb.USD || ta.RetryAfter != tb.RetryAfter {
			t.Fatalf("check %d: with peeks %v %+v, without %v %+v", i, errA, ta, errB, tb)
		}
		if errA == nil {
			a.SettleAmounts(&ta, Amounts{Tokens: 200, NanoUSD: 30_000})
			b.SettleAmounts(&tb, Amounts{Tokens: 200, NanoUSD: 30_000})
		}
		clkA.advance(time.Second)
		clkB.advance(time.Second)
	}
	if got, want := a.mem.len(), b.mem.len(); got != want {
		t.Errorf("%d buckets after peeks, %d without", got, want)
	}

	srv := redistest.Start(t)
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}, Prefetch: durationPtr(0)})
	c := redisClient(t, srv.Addr())
	if err := l.TakeAmounts(bg, pol, alice, Amounts{Tokens: 300, NanoUSD: 40_000}, &ta); err != nil {
		t.Fatal(err)
	}
	snapshot := func() map[string]string {
		keys, err := c.Keys(bg, "tg:{*").Result()
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(keys)
		out := map[string]string{}
		for _, k := range keys {
			switch c.Type(bg, k).Val() {
			case "string":
				out[k] = c.Get(bg, k).Val()
			case "zset":
				if k == replicasKey {
					continue
				}
				// The heartbeat renews the lease of the request in flight: its
				// score moves, its member stays.
				out[k] = "leases " + strings.Join(c.ZRange(bg, k, 0, -1).Val(), ",")
			}
		}
		return out
	}
	before := snapshot()
	for range 20 {
		l.Peek(bg, probesOf(pol, alice))
		l.Peek(bg, probesOf(pol, bob))
	}
	if after := snapshot(); len(after) != len(before) || len(before) != 4 {
		t.Fatalf("keys before the peeks %v, after %v", before, after)
	} else {
		for k, v := range before {
			if after[k] != v {
				t.Errorf("%s: %q before the peeks, %q after", k, v, after[k])
			}
		}
	}
	l.SettleAmounts(&ta, Amounts{Tokens: 300, NanoUSD: 40_000})
	if err := l.TakeAmounts(bg, pol, alice, Amounts{Tokens: 300, NanoUSD: 40_000}, &ta); err != nil {
		t.Fatal(err)
	}
	if ta.Requests.Remaining != 48 || ta.Tokens.Remaining != 99_400 || ta.USD.Remaining != 9_920_000 {
		t.Errorf("the check after the peeks: %+v %+v %+v, want 48, 99400, 9920000 left", ta.Requests, ta.Tokens, ta.USD)
	}
	l.SettleAmounts(&ta, Amounts{Tokens: 300, NanoUSD: 40_000})
}

// Replicas sharing one Redis read one bucket: each reads what the other charged, and
// both read alike.
func TestPeekRedisSharedByReplicas(t *testing.T) {
	srv := redistest.Start(t)
	cfg := Config{Redis: RedisConfig{URL: srv.URL()}, Prefetch: durationPtr(0)}
	a, b := newRedisLimiter(t, cfg), newRedisLimiter(t, cfg)
	pol := mustPolicy(t, "key:team-a", peekLimits...)
	var ta, tb Ticket
	if err := a.TakeAmounts(bg, pol, alice, Amounts{Tokens: 100, NanoUSD: 1000}, &ta); err != nil {
		t.Fatal(err)
	}
	if err := b.TakeAmounts(bg, pol, alice, Amounts{Tokens: 200, NanoUSD: 2000}, &tb); err != nil {
		t.Fatal(err)
	}
	ra, rb := a.Peek(bg, probesOf(pol, alice)), b.Peek(bg, probesOf(pol, alice))
	for i := range ra {
		if ra[i].Quota.Limit != rb[i].Quota.Limit || ra[i].Quota.Remaining != rb[i].Quota.Remaining || ra[i].InUse != rb[i].InUse {
			t.Errorf("limit %d: replica a reads %+v, b %+v", i, ra[i], rb[i])
		}
	}
	if ra[0].Quota.Remaining != 48 || ra[1].Quota.Remaining != 99_700 || ra[2].Quota.Remaining != 9_997_000 || ra[3].InUse != 2 {
		t.Errorf("after a check on each replica: %+v", ra)
	}
	if ra[0].Quota.Remaining != tb.Requests.Remaining || ra[1].Quota.Remaining != tb.Tokens.Remaining {
		t.Errorf("reads %+v, the last check's headers said %+v %+v", ra, tb.Requests, tb.Tokens)
	}
	a.SettleAmounts(&ta, Amounts{Tokens: 100, NanoUSD: 1000})
	b.SettleAmounts(&tb, Amounts{Tokens: 200, NanoUSD: 2000})
}

// With prefetch, the units a replica holds are counted as free, as its headers count
// them: a peek reads what the last check's headers said, whether Redis or the held
// units answered it.
func TestPeekCountsHeldUnits(t *testing.T) {
	srv := redistest.Start(t)
	// 1000 an hour (3.6s a request) with ten seconds of prefetch: two units ahead.
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}, Prefetch: durationPtr(10 * time.Second)})
	pol := mustPolicy(t, "key:team-a", Limit{Per: "api_key", Requests: 1000, Window: "hour"})
	var tk Ticket
	for i := range 6 {
		if err := l.Take(bg, pol, alice, 0, &tk); err != nil {
			t.Fatal(err)
		}
		l.Settle(&tk, 0)
		// A refill the check asked for lands before the peek: while its round
		// trip is in flight Redis counts its units spent and the replica does not
		// hold them yet.
		barrier(t, l)
		r := l.Peek(bg, probesOf(pol, alice))[0]
		if r.Source != FromRedis || r.Quota.Remaining != tk.Requests.Remaining || r.Quota.Limit != tk.Requests.Limit {
			t.Fatalf("check %d: reads %+v, the headers said %+v", i, r, tk.Requests)
		}
		if want := int64(1000 - i - 1); r.Quota.Remaining != want {
			t.Fatalf("check %d: %d remaining, want %d", i, r.Quota.Remaining, want)
		}
	}
	if st := l.Stats(); st.LocalChecks == 0 {
		t.Fatalf("no check was answered from held units: %+v", st)
	}
}

// A reload that changes a limit keeps its bucket: a peek under the new limit reads
// what a check under it finds, the debt converted as the check converts it.
func TestPeekAfterLimitChanged(t *testing.T) {
	for name, l := range peekStores(t) {
		t.Run(name, func(t *testing.T) {
			old := mustPolicy(t, "key:team-a", Limit{Per: "api_key", Requests: 100, Window: "day"})
			if got := admitN(t, l, old, alice, 0, 30); got != 30 {
				t.Fatalf("admitted %d of 30", got)
			}
			for _, amount := range []int64{40, 400} {
				pol := mustPolicy(t, "key:team-a", Limit{Per: "api_key", Requests: amount, Window: "day"})
				r := l.Peek(bg, probesOf(pol, alice))[0]
				var tk Ticket
				if err := l.Take(bg, pol, alice, 0, &tk); err != nil {
					t.Fatal(err)
				}
				if r.Quota.Remaining != tk.Requests.Remaining+1 || r.Quota.Limit != amount {
					t.Errorf("limit lowered to %d: reads %+v, the next check says %+v", amount, r.Quota, tk.Requests)
				}
			}
		})
	}
}

// While Redis does not answer, each reading says so rather than the whole peek failing.
func TestPeekRedisDown(t *testing.T) {
	// Not parallel: the first peek must reach Redis within a 50ms timeout, which other
	// tests' load can exceed.
	srv := redistest.Start(t)
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}, Timeout: 50 * time.Millisecond})
	pol := mustPolicy(t, "key:team-a", peekLimits...)
	if rs := l.Peek(bg, probesOf(pol, alice)); rs[0].Source != FromRedis {
		t.Fatalf("Redis up: %+v", rs)
	}
	ctx, cancel := context.WithCancel(bg)
	cancel()
	if r := l.Peek(ctx, probesOf(pol, alice))[0]; r.Source != Unavailable {
		t.Errorf("a peek whose context ended: %+v", r)
	}
	srv.Kill()
	start := time.Now()
	rs := l.Peek(bg, probesOf(pol, alice))
	for i, r := range rs {
		if r.Err == nil || r != (Reading{Source: Unavailable, Err: r.Err}) {
			t.Errorf("limit %d with Redis down: %+v", i, r)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the peek took %v", d)
	}
}

// On Redis Cluster a peek reads buckets of different slots in one go.
func TestPeekRedisCluster(t *testing.T) {
	t.Parallel()
	addrs := redistest.StartCluster(t, 3)
	l := newRedisLimiter(t, Config{Redis: RedisConfig{Addrs: addrs}, Prefetch: durationPtr(0)})
	x, y, xy := splitSlots(t, l, 50, 30)
	if got := admitN(t, l, xy, alice, 0, 4); got != 4 {
		t.Fatalf("admitted %d of 4", got)
	}
	rs := l.Peek(bg, []Probe{{Policy: x, Subject: *alice}, {Policy: y, Subject: *alice}, {Policy: y, Subject: *bob}})
	if rs[0].Quota.Remaining != 46 || rs[1].Quota.Remaining != 26 || rs[2].Quota.Remaining != 30 {
		t.Errorf("readings %+v, want 46, 26 and 30 left", rs)
	}
}

// BenchmarkPeekMemory is one admin read of a key's four limits in the memory store.
func BenchmarkPeekMemory(b *testing.B) {
	l, err := New(Config{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	pol, _ := NewPolicy("key:team-a", peekLimits)
	ps := probesOf(pol, alice)
	b.ReportAllocs()
	for b.Loop() {
		l.Peek(bg, ps)
	}
}
