package limiter

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"
)

// testClock is an injectable clock for the memory store.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock { return &testClock{t: time.Unix(1_700_000_000, 0)} }

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newMemLimiter(t testing.TB, clk *testClock) *Limiter {
	t.Helper()
	o := defaultOptions()
	o.now = clk.now
	o.sweepEvery = time.Hour
	l, err := newLimiter(Config{}, nil, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func mustPolicy(t testing.TB, name string, limits ...Limit) *Policy {
	t.Helper()
	p, err := NewPolicy(name, limits)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var (
	bg    = context.Background()
	alice = &Subject{APIKey: []byte("team-a"), User: []byte("alice"), Endpoint: []byte("chat"), IP: []byte("127.0.0.1")}
	bob   = &Subject{APIKey: []byte("team-b"), User: []byte("bob"), Endpoint: []byte("chat"), IP: []byte("127.0.0.2")}
)

// admitN takes from pol n times and returns how many were admitted.
func admitN(t testing.TB, l *Limiter, pol *Policy, s *Subject, est int64, n int) int {
	t.Helper()
	var tk Ticket
	ok := 0
	for range n {
		err := l.Take(bg, pol, s, est, &tk)
		var ref *Refused
		switch {
		case err == nil:
			ok++
		case errors.As(err, &ref):
		default:
			t.Fatalf("Take: %v", err)
		}
	}
	return ok
}

func TestMemoryRequestBucket(t *testing.T) {
	clk := newTestClock()
	l := newMemLimiter(t, clk)
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 600, Window: "minute", Burst: 60})
	var tk Ticket

	steps := []struct {
		name      string
		advance   time.Duration
		takes     int
		admitted  int
		remaining int64
		reset     time.Duration
		retry     time.Duration
	}{
		{name: "burst is admitted at once", takes: 3, admitted: 3, remaining: 57, reset: 300 * time.Millisecond},
		{name: "up to the burst", takes: 57, admitted: 57, remaining: 0, reset: 6 * time.Second},
		{name: "then refused with the time one request refills",
			takes: 1, admitted: 0, remaining: 0, reset: 6 * time.Second, retry: 100 * time.Millisecond},
		{name: "refills at the rate", advance: 250 * time.Millisecond,
			takes: 3, admitted: 2, remaining: 0, reset: 5950 * time.Millisecond, retry: 50 * time.Millisecond},
		{name: "full again after the reset", advance: time.Hour, takes: 1, admitted: 1, remaining: 59, reset: 100 * time.Millisecond},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			clk.advance(st.advance)
			got := 0
			var last error
			for range st.takes {
				if last = l.Take(bg, pol, alice, 0, &tk); last == nil {
					got++
					l.Settle(&tk, 0)
				}
			}
			if got != st.admitted {
				t.Fatalf("admitted %d of %d, want %d", got, st.takes, st.admitted)
			}
			want := Quota{Limit: 600, Remaining: st.remaining, Reset: st.reset}
			if tk.Requests != want {
				t.Errorf("Requests = %+v, want %+v", tk.Requests, want)
			}
			if tk.RetryAfter != st.retry {
				t.Errorf("RetryAfter = %v, want %v", tk.RetryAfter, st.retry)
			}
			if st.retry > 0 {
				var ref *Refused
				if !errors.As(last, &ref) || ref.RetryAfter != st.retry || ref.Policy != "chat" || ref.Limit.Requests != 600 {
					t.Errorf("error = %#v", last)
				}
			}
		})
	}
}

func TestMemorySubjectsAreSeparate(t *testing.T) {
	l := newMemLimiter(t, newTestClock())
	pol := mustPolicy(t, "chat", Limit{Per: "user", Requests: 2, Window: "hour"})
	if got := admitN(t, l, pol, alice, 0, 5); got != 2 {
		t.Errorf("alice admitted %d, want 2", got)
	}
	if got := admitN(t, l, pol, bob, 0, 5); got != 2 {
		t.Errorf("bob admitted %d, want 2", got)
	}
	// Requests without a user share one bucket rather than escaping the limit.
	if got := admitN(t, l, pol, &Subject{}, 0, 5); got != 2 {
		t.Errorf("anonymous admitted %d, want 2", got)
	}
}

func TestMemoryAtomicity(t *testing.T) {
	l := newMemLimiter(t, newTestClock())
	wide := Limit{Per: "endpoint", Requests: 10, Window: "hour"}
	narrow := Limit{Per: "api_key", Requests: 3, Window: "hour"}
	both := mustPolicy(t, "chat", wide, narrow)
	if got := admitN(t, l, both, alice, 0, 8); got != 3 {
		t.Fatalf("admitted %d, want 3 (the narrow limit)", got)
	}
	if s := l.Stats(); s.Refused != 5 || s.Degraded || s.Fallbacks != 0 {
		t.Errorf("stats %+v, want 5 refused", s)
	}
	// The five refusals must not have consumed the endpoint bucket: seven remain.
	var tk Ticket
	if err := l.Take(bg, both, bob, 0, &tk); err != nil {
		t.Fatalf("bob refused: %v", err)
	}
	if tk.Requests.Remaining != 2 {
		t.Errorf("tightest remaining = %d, want 2 (bob's key bucket)", tk.Requests.Remaining)
	}
	if got := admitN(t, l, mustPolicy(t, "chat", wide), alice, 0, 10); got != 6 {
		t.Errorf("endpoint bucket admitted %d more, want 6", got)
	}
}

func TestMemoryTokenSettlement(t *testing.T) {
	clk := newTestClock()
	l := newMemLimiter(t, clk)
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Tokens: 6000, Window: "minute"})
	var tk Ticket

	take := func(t *testing.T, est int64) error {
		t.Helper()
		return l.Take(bg, pol, alice, est, &tk)
	}
	t.Run("estimate is charged", func(t *testing.T) {
		if err := take(t, 1000); err != nil {
			t.Fatal(err)
		}
		if tk.Tokens.Remaining != 5000 || tk.Tokens.Limit != 6000 || tk.Requests != (Quota{}) {
			t.Fatalf("after estimate: %+v %+v", tk.Tokens, tk.Requests)
		}
	})
	t.Run("refund on settle", func(t *testing.T) {
		l.Settle(&tk, 400)
		if err := take(t, 0); err != nil {
			t.Fatal(err)
		}
		l.Settle(&tk, 0)
		if tk.Tokens.Remaining != 5600 {
			t.Fatalf("remaining after refund = %d, want 5600", tk.Tokens.Remaining)
		}
	})
	t.Run("overdraft makes the next request wait", func(t *testing.T) {
		if err := take(t, 100); err != nil {
			t.Fatal(err)
		}
		l.Settle(&tk, 7000) // 5600 were left: 1400 overdrawn
		err := take(t, 1)
		var ref *Refused
		if !errors.As(err, &ref) {
			t.Fatalf("Take after overdraft = %v, want *Refused", err)
		}
		// 1401 tokens at 100 tokens/s.
		if want := 14010 * time.Millisecond; tk.RetryAfter != want {
			t.Errorf("RetryAfter = %v, want %v", tk.RetryAfter, want)
		}
		if tk.Tokens.Remaining != 0 || tk.Tokens.Reset != 74*time.Second {
			t.Errorf("Tokens = %+v, want 0 remaining, reset 74s", tk.Tokens)
		}
		clk.advance(tk.RetryAfter)
		if err := take(t, 1); err != nil {
			t.Fatalf("after waiting RetryAfter: %v", err)
		}
		l.Settle(&tk, KeepEstimate)
	})
	t.Run("estimate above the burst is clamped", func(t *testing.T) {
		clk.advance(time.Hour)
		if err := take(t, 1_000_000); err != nil {
			t.Fatalf("huge estimate on a full bucket: %v", err)
		}
		if tk.Tokens.Remaining != 0 {
			t.Errorf("remaining = %d", tk.Tokens.Remaining)
		}
		l.Settle(&tk, 6000)
		clk.advance(time.Minute)
		if err := take(t, 6000); err != nil {
			t.Fatalf("after a full window: %v", err)
		}
	})
}

// A full bucket admits what fits it exactly, at any instant: an estimate above a token
// limit's burst (charged the whole burst), and N requests of N a second at one instant.
// Summed onto the TAT, such a charge came out a rounding step over the burst and was
// refused, with a RetryAfter of 0 that Stats did not count as a refusal either. The
// request that does not fit is refused with a RetryAfter above 0, and counted.
func TestMemoryFullBucketAdmitsWhatFits(t *testing.T) {
	clk := newTestClock()
	l := newMemLimiter(t, clk)
	clk.advance(time.Hour)
	n := 0
	next := func() string { n++; return "rounding" + strconv.Itoa(n) }
	var tk Ticket
	refused := func(what string, pol *Policy, est int64) {
		t.Helper()
		before := l.Stats().Refused
		var ref *Refused
		if err := l.Take(bg, pol, alice, est, &tk); !errors.As(err, &ref) {
			t.Errorf("%s: %v, want refused", what, err)
		} else if ref.RetryAfter <= 0 || l.Stats().Refused != before+1 {
			t.Errorf("%s: refused with RetryAfter %v, Stats.Refused %d -> %d: want a wait above 0, counted",
				what, ref.RetryAfter, before, l.Stats().Refused)
		}
	}
	t.Run("estimate above burst", func(t *testing.T) {
		for _, amount := range []int64{90_000, 70_000, 13, 11, 7} {
			for _, burst := range []int64{0, 1000, 3000, 10_000, 12_345, 17, 5} {
				pol := mustPolicy(t, next(), Limit{Per: "endpoint", Tokens: amount, Window: "minute", Burst: float64(burst)})
				what := "tokens " + strconv.FormatInt(amount, 10) + "/minute burst " + strconv.FormatInt(burst, 10)
				if err := l.Take(bg, pol, alice, 1<<40, &tk); err != nil {
					t.Errorf("%s, full bucket: %v, retry %v", what, err, tk.RetryAfter)
					continue
				}
				if tk.Tokens.Remaining != 0 {
					t.Errorf("%s: Tokens = %+v after the whole burst, want 0 left", what, tk.Tokens)
				}
				refused(what+", empty bucket", pol, 1)
			}
		}
	})
	t.Run("burst at one instant", func(t *testing.T) {
		for amount := 2; amount <= 24; amount++ {
			pol := mustPolicy(t, next(), Limit{Per: "endpoint", Requests: int64(amount), Window: "second"})
			if got := admitN(t, l, pol, alice, 0, amount); got != amount {
				t.Errorf("%d/second, full bucket: %d of %d admitted at one instant", amount, got, amount)
			}
			refused(strconv.Itoa(amount)+"/second, empty bucket", pol, 0)
		}
	})
}

func TestMemoryConcurrency(t *testing.T) {
	l := newMemLimiter(t, newTestClock())
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Concurrency: 2})
	var a, b, c Ticket
	if err := l.Take(bg, pol, alice, 0, &a); err != nil {
		t.Fatal(err)
	}
	if err := l.Take(bg, pol, alice, 0, &b); err != nil {
		t.Fatal(err)
	}
	err := l.Take(bg, pol, alice, 0, &c)
	var ref *Refused
	if !errors.As(err, &ref) || ref.Limit.Concurrency != 2 || c.RetryAfter != time.Second {
		t.Fatalf("third Take = %v (retry %v), want a concurrency refusal", err, c.RetryAfter)
	}
	l.Settle(&c, 0) // settling a refused ticket does nothing
	l.Settle(&a, 0)
	l.Settle(&a, 0) // nor does settling twice
	if err := l.Take(bg, pol, alice, 0, &c); err != nil {
		t.Fatalf("after release: %v", err)
	}
	if err := l.Take(bg, pol, alice, 0, &a); err == nil {
		t.Fatal("double settle freed a slot it did not hold")
	}
}

func TestMemoryEmptyPolicy(t *testing.T) {
	l := newMemLimiter(t, newTestClock())
	var tk Ticket
	tk.Requests.Limit = 9 // left over from an earlier request
	for _, pol := range []*Policy{nil, mustPolicy(t, "none")} {
		if err := l.Take(bg, pol, alice, 10, &tk); err != nil {
			t.Fatal(err)
		}
		if tk.Requests != (Quota{}) || tk.Tokens != (Quota{}) {
			t.Errorf("quotas not cleared: %+v", tk)
		}
		l.Settle(&tk, 5)
	}
}

func TestPoliciesShareBucketsByName(t *testing.T) {
	l := newMemLimiter(t, newTestClock())
	lim := Limit{Per: "api_key", Requests: 4, Window: "hour"}
	first := mustPolicy(t, "chat", lim)
	if got := admitN(t, l, first, alice, 0, 3); got != 3 {
		t.Fatal(got)
	}
	// A reload rebuilds the policy: same name, same bucket.
	if got := admitN(t, l, mustPolicy(t, "chat", lim), alice, 0, 5); got != 1 {
		t.Errorf("rebuilt policy admitted %d, want 1", got)
	}
	if got := admitN(t, l, mustPolicy(t, "embed", lim), alice, 0, 9); got != 4 {
		t.Errorf("other scope admitted %d, want 4", got)
	}
}

func TestCombine(t *testing.T) {
	l := newMemLimiter(t, newTestClock())
	ep := mustPolicy(t, "endpoint:chat", Limit{Per: "endpoint", Requests: 5, Window: "hour"})
	key := mustPolicy(t, "key:team-a", Limit{Per: "api_key", Requests: 3, Window: "hour"})
	both, err := Combine(ep, nil, key)
	if err != nil {
		t.Fatal(err)
	}
	if both.Name() != "endpoint:chat+key:team-a" || both.Len() != 2 {
		t.Fatalf("combined %q with %d limits", both.Name(), both.Len())
	}
	if got := admitN(t, l, both, alice, 0, 4); got != 3 {
		t.Fatalf("combined admitted %d, want 3", got)
	}
	// The endpoint bucket is the endpoint policy's own: 2 left for everyone.
	if got := admitN(t, l, ep, bob, 0, 4); got != 2 {
		t.Errorf("endpoint policy admitted %d, want 2", got)
	}
	many := make([]*Policy, MaxLimits+1)
	for i := range many {
		many[i] = key
	}
	if _, err := Combine(many...); err == nil {
		t.Error("Combine accepted more than MaxLimits limits")
	}
}

func TestMemoryShare(t *testing.T) {
	clk := newTestClock()
	l := newMemLimiter(t, clk)
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 600, Window: "minute", Burst: 60})
	var tk Ticket
	pol.locate(alice, 0, &tk)
	tk.pol = pol
	admitted := 0
	for range 30 {
		if l.mem.take(&tk, 3, l.nanotime()) == nil {
			admitted++
		}
	}
	if admitted != 20 {
		t.Errorf("a third of burst 60 admitted %d, want 20", admitted)
	}
	// A third of the rate: one request per 300ms.
	clk.advance(299 * time.Millisecond)
	if l.mem.take(&tk, 3, l.nanotime()) == nil {
		t.Error("admitted before a third of the rate refilled one request")
	}
	clk.advance(time.Millisecond)
	if err := l.mem.take(&tk, 3, l.nanotime()); err != nil {
		t.Errorf("refused after 300ms: %v", err)
	}
}

func TestMemorySweep(t *testing.T) {
	clk := newTestClock()
	l := newMemLimiter(t, clk)
	rate := mustPolicy(t, "chat", Limit{Per: "user", Requests: 10, Window: "second"})
	conc := mustPolicy(t, "chat", Limit{Per: "user", Concurrency: 1})
	var tk, held Ticket
	for _, s := range []*Subject{alice, bob} {
		if err := l.Take(bg, rate, s, 0, &tk); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Take(bg, conc, alice, 0, &held); err != nil {
		t.Fatal(err)
	}
	if n := l.mem.sweep(l.nanotime()); n != 0 {
		t.Fatalf("swept %d buckets still refilling", n)
	}
	clk.advance(time.Second)
	if n := l.mem.sweep(l.nanotime()); n != 2 {
		t.Fatalf("swept %d, want the 2 full rate buckets", n)
	}
	if n := l.mem.len(); n != 1 {
		t.Fatalf("%d buckets left, want the held concurrency slot", n)
	}
	if err := l.Take(bg, conc, alice, 0, &tk); err == nil {
		t.Fatal("sweep freed a held slot")
	}
	l.Settle(&held, 0)
	if n := l.mem.sweep(l.nanotime()); n != 1 {
		t.Fatalf("swept %d after release, want 1", n)
	}
}

func TestMemoryConcurrentUse(t *testing.T) {
	l := newMemLimiter(t, newTestClock())
	// Two limits whose buckets land in different shards, taken in both orders, must
	// neither deadlock nor over-admit.
	a := Limit{Per: "user", Requests: 500, Window: "hour"}
	b := Limit{Per: "api_key", Requests: 300, Window: "hour"}
	p1 := mustPolicy(t, "x", a, b)
	// The same buckets, listed in the other order.
	p2, err := Combine(mustPolicy(t, "x", b), mustPolicy(t, "x", a))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pol := p1
			if g%2 == 1 {
				pol = p2
			}
			n := admitN(t, l, pol, alice, 0, 100)
			mu.Lock()
			total += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	if total != 300 {
		t.Errorf("admitted %d, want 300", total)
	}
}

func (m *memStore) len() int {
	n := 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// A limiter built for a reload (NewFrom) takes over the buckets and the requests in
// flight of the one it replaces: a spent bucket stays spent, and a slot taken through
// the old limiter is held until the old limiter's ticket settles.
func TestNewFromKeepsBuckets(t *testing.T) {
	clk := newTestClock()
	prev := newMemLimiter(t, clk)
	rate := mustPolicy(t, "rate", Limit{Per: "api_key", Requests: 2, Window: "hour"})
	conc := mustPolicy(t, "conc", Limit{Per: "api_key", Concurrency: 1})
	if n := admitN(t, prev, rate, alice, 0, 3); n != 2 {
		t.Fatalf("before the reload: %d admitted, want 2", n)
	}
	var inFlight Ticket
	if err := prev.Take(bg, conc, alice, 0, &inFlight); err != nil {
		t.Fatal(err)
	}
	clk.advance(time.Minute)
	o := defaultOptions()
	o.now = clk.now
	o.sweepEvery = time.Hour
	next, err := newLimiter(Config{Timeout: 80 * time.Millisecond}, nil, o, prev)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = next.Close() })
	if n := admitN(t, next, rate, alice, 0, 1); n != 0 {
		t.Errorf("after the reload: the spent bucket admitted %d", n)
	}
	if n := admitN(t, next, rate, bob, 0, 1); n != 1 {
		t.Errorf("after the reload: another key's bucket admitted %d, want 1", n)
	}
	var tk Ticket
	if err := next.Take(bg, conc, alice, 0, &tk); err == nil {
		t.Fatal("a second request in flight admitted under concurrency: 1 after the reload")
	}
	prev.Settle(&inFlight, 0)
	if err := prev.Close(); err != nil {
		t.Fatal(err)
	}
	if err := next.Take(bg, conc, alice, 0, &tk); err != nil {
		t.Fatalf("the slot the old limiter's request released: %v", err)
	}
	next.Settle(&tk, 0)
	clk.advance(time.Hour)
	if n := admitN(t, next, rate, alice, 0, 3); n != 2 {
		t.Errorf("an hour later: %d admitted, want 2 (the bucket refills on the old limiter's clock)", n)
	}
}

// per: model is per: endpoint under the name DESIGN gives it (the endpoint is the
// model clients name): a config that swaps one word for the other counts on in the
// same bucket, and in a key's limits it counts the key's requests per model.
func TestPerModelIsPerEndpoint(t *testing.T) {
	l := newMemLimiter(t, newTestClock())
	byEndpoint := mustPolicy(t, "key:team-a", Limit{Per: "endpoint", Requests: 4, Window: "hour"})
	byModel := mustPolicy(t, "key:team-a", Limit{Per: "model", Requests: 4, Window: "hour"})
	chat := *alice
	chat.Endpoint = []byte("chat")
	if got := admitN(t, l, byEndpoint, &chat, 0, 3); got != 3 {
		t.Fatal(got)
	}
	if got := admitN(t, l, byModel, &chat, 0, 5); got != 1 {
		t.Errorf("per: model after per: endpoint admitted %d, want the bucket's last 1", got)
	}
	embed := chat
	embed.Endpoint = []byte("embed")
	if got := admitN(t, l, byModel, &embed, 0, 9); got != 4 {
		t.Errorf("another model admitted %d, want its own 4", got)
	}
}
