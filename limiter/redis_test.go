package limiter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/tollgate/tollgate/internal/redistest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newRedisLimiter starts a limiter on Redis with fast heartbeats and probes; the
// timeout defaults to one generous enough for a loaded 2-core machine under -race,
// since only the fault tests are about the timeout.
func newRedisLimiter(t testing.TB, cfg Config, mod ...func(*options)) *Limiter {
	t.Helper()
	return newRedisLimiterLog(t, cfg, nil, mod...)
}

func newRedisLimiterLog(t testing.TB, cfg Config, log *slog.Logger, mod ...func(*options)) *Limiter {
	t.Helper()
	cfg.Store = "redis"
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	o := defaultOptions()
	o.heartbeatEvery = 100 * time.Millisecond
	o.probeEvery = 50 * time.Millisecond
	o.sweepEvery = time.Hour
	for _, f := range mod {
		f(&o)
	}
	l, err := newLimiter(cfg, log, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// logBuffer collects a limiter's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (lb *logBuffer) Write(p []byte) (int, error) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return lb.b.Write(p)
}

func (lb *logBuffer) String() string {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return lb.b.String()
}

func (lb *logBuffer) count(s string) int {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return strings.Count(lb.b.String(), s)
}

func redisClient(t testing.TB, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func redisNow(t testing.TB, c *redis.Client) time.Time {
	t.Helper()
	now, err := c.Time(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return now
}

// waitFor polls cond until it holds or d passes; used only for background recovery,
// whose timing is what the fault tests measure.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// barrier returns once everything l queued before it (settlements) has reached Redis:
// a check travels after them. A concurrency limit is never prefetched, so the check
// always goes to Redis.
func barrier(t testing.TB, l *Limiter) {
	t.Helper()
	var tk Ticket
	if err := l.Take(bg, barrierPolicy, &Subject{}, 0, &tk); err != nil {
		t.Fatalf("barrier: %v", err)
	}
	l.Settle(&tk, 0)
}

var barrierPolicy, _ = NewPolicy("barrier", []Limit{{Per: "ip", Concurrency: maxAmount}})

// storedTAT is the TAT of a rate bucket's value in Redis: the TAT, then a NUL, the
// interval its debt was charged at and its bucket's span (check.lua).
func storedTAT(t testing.TB, v string) float64 {
	t.Helper()
	tat, _, _ := strings.Cut(v, "\x00")
	f, err := strconv.ParseFloat(tat, 64)
	if err != nil {
		t.Fatalf("bucket value %q: %v", v, err)
	}
	return f
}

// bucketKey is the Redis key of rule i of pol for s.
func bucketKey(pol *Policy, s *Subject, i int) string {
	var tk Ticket
	pol.locate(s, 0, &tk)
	var k keyArg
	k.set(tk.tag[i], tk.bucket[i])
	return k.String()
}

// splitSlots returns an endpoint's limit of nx requests an hour and team-a's key's
// of ny, whose buckets for alice hash to different Cluster slots of l, and the two
// combined.
func splitSlots(t *testing.T, l *Limiter, nx, ny int64) (x, y, xy *Policy) {
	t.Helper()
	x = mustPolicy(t, "endpoint:chat", Limit{Per: "endpoint", Requests: nx, Window: "hour"})
	y = mustPolicy(t, "key:team-a", Limit{Per: "api_key", Requests: ny, Window: "hour"})
	var tx, ty Ticket
	x.locate(alice, 0, &tx)
	y.locate(alice, 0, &ty)
	if l.rs.slotOf(tx.tag[0]) == l.rs.slotOf(ty.tag[0]) {
		t.Fatal("the test needs two scopes on different slots")
	}
	xy, err := Combine(x, y)
	if err != nil {
		t.Fatal(err)
	}
	return x, y, xy
}

func TestRedisAccuracyRequests(t *testing.T) {
	// Not parallel: 50 closed-loop clients load the machine, and the 1% bound tolerates
	// under 0.2 s of refill that no check is there to take.
	srv := redistest.Start(t)
	var ls []*Limiter
	for range 3 {
		ls = append(ls, newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}}))
	}
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 600, Window: "minute", Burst: 60})
	admitted, checks, elapsed := saturate(t, srv, ls, pol, 50, 3*time.Second)
	// Never more than the bucket allows; less only by 1% and the one request that may
	// be refilling at the end.
	allowance := 60 + 10*elapsed.Seconds()
	got := float64(admitted)
	t.Logf("admitted %v of %d checks in %v, allowance %.2f", got, checks, elapsed, allowance)
	if low := 0.99*allowance - 1; got > allowance || got < low {
		t.Errorf("admitted %v, want %.2f..%.2f", got, low, allowance)
	}
}

// saturate runs workers closed-loop clients spread over the limiters for d, each
// taking one request of pol at a time, and returns how many were admitted out of how
// many checks, and how long the run took by Redis's clock. It fails the test if a
// limiter answered from its local fallback: the count would not be Redis's.
func saturate(t *testing.T, srv *redistest.Server, ls []*Limiter, pol *Policy, workers int, d time.Duration) (admitted, checks int64, elapsed time.Duration) {
	t.Helper()
	rc := redisClient(t, srv.Addr())
	var nAdmitted, nChecks atomic.Int64
	var failed atomic.Value
	t0 := redisNow(t, rc)
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := ls[g%len(ls)]
			var tk Ticket
			for time.Now().Before(stop) {
				err := l.Take(bg, pol, alice, 0, &tk)
				nChecks.Add(1)
				var ref *Refused
				switch {
				case err == nil:
					nAdmitted.Add(1)
					l.Settle(&tk, 0)
				case errors.As(err, &ref):
				default:
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	t1 := redisNow(t, rc)
	if err := failed.Load(); err != nil {
		t.Fatalf("Take: %v", err)
	}
	for _, l := range ls {
		s := l.Stats()
		if s.Fallbacks != 0 {
			t.Fatalf("a limiter fell back (%+v): the count is not Redis's", s)
		}
		t.Logf("replica: %d checks answered by Redis in %d round trips, %d prefetched, %d refused locally",
			s.RedisAnswered, s.RoundTrips, s.LocalChecks, s.RefusedLocally)
	}
	return nAdmitted.Load(), nChecks.Load(), t1.Sub(t0)
}

func TestRedisAccuracyTokens(t *testing.T) {
	// Not parallel: 50 closed-loop clients load the machine, and the 1% bound tolerates
	// under 0.1 s of refill that no check is there to take.
	srv := redistest.Start(t)
	rc := redisClient(t, srv.Addr())
	var ls []*Limiter
	for range 3 {
		ls = append(ls, newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}}))
	}
	const rate, burst = 1000.0, 6000.0 // tokens per second, capacity
	pol := mustPolicy(t, "chat", Limit{Per: "user", Tokens: 60000, Window: "minute", Burst: 6000})

	const workers, run, estimate = 50, 3 * time.Second, 50
	var used atomic.Int64
	var failed atomic.Value
	t0 := redisNow(t, rc)
	stop := time.Now().Add(run)
	var wg sync.WaitGroup
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := ls[g%len(ls)]
			rnd := rand.New(rand.NewPCG(uint64(g), 1))
			var tk Ticket
			for time.Now().Before(stop) {
				err := l.Take(bg, pol, alice, estimate, &tk)
				var ref *Refused
				switch {
				case err == nil:
					actual := 10 + rnd.Int64N(81) // 10..90, the estimate is 50
					used.Add(actual)
					l.Settle(&tk, actual)
				case errors.As(err, &ref):
				default:
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, l := range ls {
		_ = l.Close() // sends the settlements still queued
		if s := l.Stats(); s.Fallbacks != 0 || s.DroppedSettles != 0 {
			t.Fatalf("stats %+v: the count is not Redis's", s)
		}
	}
	if err := failed.Load(); err != nil {
		t.Fatalf("Take: %v", err)
	}
	// What the bucket still holds (negative: overdrawn by settlements) plus what was
	// used is what it was given: the burst plus the refill since the start.
	t1 := redisNow(t, rc)
	balance := burst
	if v, err := rc.Get(bg, bucketKey(pol, alice, 0)).Result(); err == nil {
		tatUS := storedTAT(t, v) - float64(t1.UnixMicro()-1_700_000_000_000_000) // the script counts from this epoch
		ivUS := 1e6 / rate
		balance = (burst*ivUS - math.Max(tatUS, 0)) / ivUS
	} else if !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	allowance := burst + rate*t1.Sub(t0).Seconds()
	got := float64(used.Load()) + balance
	t.Logf("used %d tokens, balance %.1f, allowance %.1f", used.Load(), balance, allowance)
	if tol := 0.01 * allowance; math.Abs(got-allowance) > tol {
		t.Errorf("used+balance = %.1f, allowance %.1f ± %.1f", got, allowance, tol)
	}
	if balance < -float64(workers)*(90-estimate) {
		t.Errorf("balance %.1f overdrawn beyond what settlement can explain", balance)
	}
}

func TestRedisAtomicity(t *testing.T) {
	srv := redistest.Start(t)
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}})
	wide := Limit{Per: "endpoint", Requests: 10, Window: "hour"}
	narrow := Limit{Per: "api_key", Tokens: 300, Window: "hour"}
	both := mustPolicy(t, "chat", wide, narrow)
	if got := admitN(t, l, both, alice, 100, 8); got != 3 {
		t.Fatalf("admitted %d, want 3 (the token limit)", got)
	}
	if s := l.Stats(); s.Refused != 5 || s.RedisChecks != 8 {
		t.Errorf("stats %+v, want 8 checks sent and 5 refused", s)
	}
	// Five refusals consumed nothing of the endpoint bucket.
	if got := admitN(t, l, mustPolicy(t, "chat", wide), bob, 0, 10); got != 7 {
		t.Errorf("endpoint bucket admitted %d more, want 7", got)
	}
}

func TestRedisHeaders(t *testing.T) {
	srv := redistest.Start(t)
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}})
	pol := mustPolicy(t, "chat",
		Limit{Per: "api_key", Requests: 60, Window: "minute", Burst: 60},
		Limit{Per: "api_key", Requests: 10000, Window: "day"},
		Limit{Per: "api_key", Tokens: 1000, Window: "minute"})
	var tk Ticket
	// One request a second refills the first bucket: the 61 checks below finish well
	// inside that second even on a loaded machine, and every bound allows for the time
	// they took.
	start := time.Now()
	for range 3 {
		if err := l.Take(bg, pol, alice, 100, &tk); err != nil {
			t.Fatal(err)
		}
	}
	if q := tk.Requests; q.Limit != 60 || q.Remaining != 57 || q.Reset > 3*time.Second || q.Reset < 3*time.Second-time.Since(start)-5*time.Millisecond {
		t.Errorf("Requests = %+v, want the 60/minute bucket with 57 left, reset just under 3s", q)
	}
	if q := tk.Tokens; q.Limit != 1000 || q.Remaining != 700 || q.Reset > 18*time.Second || q.Reset < 17*time.Second {
		t.Errorf("Tokens = %+v, want 700 left, reset just under 18s", q)
	}
	for range 57 {
		if err := l.Take(bg, pol, alice, 0, &tk); err != nil {
			t.Fatal(err)
		}
	}
	err := l.Take(bg, pol, alice, 0, &tk)
	var ref *Refused
	elapsed := time.Since(start)
	if !errors.As(err, &ref) || ref.Limit.Requests != 60 {
		t.Fatalf("Take = %v after %v, want the 60/minute limit to refuse", err, elapsed)
	}
	if tk.RetryAfter > time.Second || tk.RetryAfter < time.Second-elapsed-5*time.Millisecond {
		t.Errorf("RetryAfter = %v after %v of checks, want just under 1s", tk.RetryAfter, elapsed)
	}
	if got := string(AppendRetryAfter(nil, tk.RetryAfter)); got != "1" {
		t.Errorf("retry-after = %q, want 1", got)
	}
}

func TestRedisTokenSettlement(t *testing.T) {
	srv := redistest.Start(t)
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}})
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Tokens: 6000, Window: "hour"})
	var tk Ticket
	if err := l.Take(bg, pol, alice, 1000, &tk); err != nil {
		t.Fatal(err)
	}
	l.Settle(&tk, 400)
	if err := l.Take(bg, pol, alice, 0, &tk); err != nil {
		t.Fatal(err)
	}
	if tk.Tokens.Remaining != 5600 {
		t.Fatalf("after a refund: remaining %d, want 5600", tk.Tokens.Remaining)
	}
	l.Settle(&tk, 7600) // 2000 overdrawn
	err := l.Take(bg, pol, alice, 1, &tk)
	var ref *Refused
	if !errors.As(err, &ref) {
		t.Fatalf("Take after overdraft = %v, want *Refused", err)
	}
	// 2001 tokens at 6000 per hour: 1200.6 seconds.
	if d := tk.RetryAfter - 1200600*time.Millisecond; d > 0 || d < -time.Second {
		t.Errorf("RetryAfter = %v, want just under 20m0.6s", tk.RetryAfter)
	}
}

// An estimate above a token limit's burst is charged the whole burst and admitted once
// the bucket is full, whatever the amounts: the script computes from now rather than
// adding charges onto a TAT of ~6e13 us, where a bucket filled to exactly its burst
// came out a rounding step over it and was refused for ever.
func TestRedisFullBucketAdmitsEstimateAboveBurst(t *testing.T) {
	srv := redistest.Start(t)
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}, Prefetch: durationPtr(0)})
	n := 0
	for _, amount := range []int64{90_000, 70_000, 13, 11, 7} {
		for _, burst := range []int64{0, 1000, 3000, 10_000, 12_345, 17, 5} {
			n++
			pol := mustPolicy(t, "rounding"+strconv.Itoa(n), Limit{Per: "endpoint", Tokens: amount, Window: "minute", Burst: float64(burst)})
			var tk Ticket
			if err := l.Take(bg, pol, alice, 1<<40, &tk); err != nil {
				t.Errorf("tokens %d/minute burst %d, full bucket: %v, retry %v", amount, burst, err, tk.RetryAfter)
			} else if tk.Tokens.Remaining != 0 {
				t.Errorf("tokens %d/minute burst %d: Tokens = %+v after the whole burst, want 0 left", amount, burst, tk.Tokens)
			}
		}
	}
}

// A full bucket of N a second admits all N requests of one batch (they share the
// script's now) and refuses the next, for every N: summed onto the TAT, the N-th
// charge came out a rounding step over the burst for many N.
func TestRedisBatchAdmitsFullBurst(t *testing.T) {
	srv := redistest.Start(t)
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}, Prefetch: durationPtr(0)})
	s := l.rs
	for amount := 2; amount <= 24; amount++ {
		pol := mustPolicy(t, "batch"+strconv.Itoa(amount), Limit{Per: "endpoint", Requests: int64(amount), Window: "second"})
		tks := make([]Ticket, amount+1)
		ws := make([]*waiter, amount+1)
		for i := range tks {
			tks[i].clear()
			pol.locate(alice, 0, &tks[i])
			tks[i].pol = pol
			ws[i] = s.newWaiter(&tks[i])
		}
		// One round, sent here rather than by the flusher, carries them all.
		for !s.busy.CompareAndSwap(false, true) {
			time.Sleep(time.Millisecond)
		}
		s.mu.Lock()
		s.takes = append(s.takes, ws...)
		s.mu.Unlock()
		s.flushOnce(bg)
		s.busy.Store(false)
		admitted := 0
		for i, w := range ws {
			<-w.done
			switch {
			case w.failed:
				t.Fatalf("%d/second: check %d failed: %v", amount, i, w.err)
			case !w.refused:
				admitted++
			case w.retry < 1:
				t.Errorf("%d/second: check %d refused with retry %vus, want at least 1us", amount, i, w.retry)
			}
			s.release(w)
		}
		if admitted != amount {
			t.Errorf("%d/second, full bucket: %d of %d requests of one batch admitted, want %d", amount, admitted, amount+1, amount)
		}
	}
}

func TestRedisConcurrency(t *testing.T) {
	// Not parallel: the slots must outlive a.Close by 500ms of a 1s lease renewed by
	// heartbeats every 100ms, which other tests' load can delay.
	srv := redistest.Start(t)
	cfg := Config{Redis: RedisConfig{URL: srv.URL()}, ConcurrencyLease: time.Second}
	a, b := newRedisLimiter(t, cfg), newRedisLimiter(t, cfg)
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Concurrency: 2})
	var t1, t2, t3 Ticket
	if err := a.Take(bg, pol, alice, 0, &t1); err != nil {
		t.Fatal(err)
	}
	if err := b.Take(bg, pol, alice, 0, &t2); err != nil {
		t.Fatal(err)
	}
	if err := a.Take(bg, pol, alice, 0, &t3); err == nil {
		t.Fatal("a third request in flight was admitted across replicas")
	}
	b.Settle(&t2, 0)
	barrier(t, b)
	if err := a.Take(bg, pol, alice, 0, &t3); err != nil {
		t.Fatalf("after a release on the other replica: %v", err)
	}
	// Replica a dies holding both slots: they come back when the lease ends. Its
	// process gone, it neither renews nor releases them (a limiter closed would
	// release them).
	a.rs.lmu.Lock()
	clear(a.rs.slots)
	a.rs.lmu.Unlock()
	_ = a.Close()
	start := time.Now()
	waitFor(t, 5*time.Second, "leased slots expire", func() bool {
		err := b.Take(bg, pol, alice, 0, &t2)
		return err == nil
	})
	if time.Since(start) < 500*time.Millisecond {
		t.Errorf("slots freed after %v, before the 1s lease", time.Since(start))
	}
}

// A live replica renews the leases of its requests in flight with its heartbeat: a
// request running longer than concurrency_lease keeps its slot, and the cap holds. A
// released slot is not renewed back.
func TestRedisConcurrencyLeaseRenewedWhileInFlight(t *testing.T) {
	// Not parallel: heartbeats every 100ms must renew a 1s lease, and other tests' load
	// can delay them.
	srv := redistest.Start(t)
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}, ConcurrencyLease: time.Second})
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Concurrency: 1})
	var inFlight, next Ticket
	if err := l.Take(bg, pol, alice, 0, &inFlight); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // a long stream, past its first lease
	var ref *Refused
	if err := l.Take(bg, pol, alice, 0, &next); !errors.As(err, &ref) {
		t.Fatalf("a second request under concurrency: 1 while the first is still in flight on a live replica: %v, want refused", err)
	}
	l.Settle(&inFlight, 0)
	barrier(t, l) // the release has reached Redis
	if _, err := l.rs.heartbeat(); err != nil {
		t.Fatal(err)
	}
	if n, err := redisClient(t, srv.Addr()).ZCard(bg, bucketKey(pol, alice, 0)).Result(); err != nil || n != 0 {
		t.Fatalf("ZCARD = %d, %v after the release and a heartbeat, want 0", n, err)
	}
	if err := l.Take(bg, pol, alice, 0, &next); err != nil {
		t.Fatalf("after the release: %v", err)
	}
	l.Settle(&next, 0)
}

// Settlements whose script call fails are sent again once Redis answers a heartbeat:
// a concurrency slot released during an error would otherwise stay taken until its
// lease ends, long after the request. A release is sent again whatever the error; a
// token adjustment only when Redis surely did not run the call (here it refuses it
// with NOAUTH), never after a timeout, when Redis may have run it and sending it again
// would refund twice.
func TestRedisSettlementsAfterErrors(t *testing.T) {
	// Not parallel: its calls must reach Redis within a 200ms timeout; one that other
	// tests' load makes time out fails as a timeout, not as the fault under test.
	tests := []struct {
		name        string
		fault, heal func(t *testing.T, srv *redistest.Server)
		// kept is how many of the request's two settlements are kept to send again.
		kept int
		// remaining is what the tokens bucket may show after recovery: 700 with the
		// refund applied once, 400 without it; 1000 would be the refund applied twice.
		remaining []int64
	}{
		{
			name: "refused",
			// Redis starts requiring a password and drops the open connections, so
			// that reconnecting fails with NOAUTH.
			fault: func(t *testing.T, srv *redistest.Server) {
				if _, err := redistest.Command(srv.Addr(), "CONFIG", "SET", "requirepass", "pw"); err != nil {
					t.Fatal(err)
				}
				admin := redis.NewClient(&redis.Options{Addr: srv.Addr(), Password: "pw", DisableIdentity: true, Protocol: 2})
				defer admin.Close()
				if err := admin.ClientKillByFilter(bg, "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
					t.Fatal(err)
				}
			},
			heal: func(t *testing.T, srv *redistest.Server) {
				admin := redis.NewClient(&redis.Options{Addr: srv.Addr(), Password: "pw", DisableIdentity: true, Protocol: 2})
				defer admin.Close()
				if err := admin.ConfigSet(bg, "requirepass", "").Err(); err != nil {
					t.Fatal(err)
				}
			},
			kept:      2,
			remaining: []int64{700},
		},
		{
			// Redis stops answering: the call times out, and Redis runs it once it
			// resumes (or not, if it drops the closed connection's input).
			name:      "timed out",
			fault:     func(_ *testing.T, srv *redistest.Server) { srv.Pause() },
			heal:      func(_ *testing.T, srv *redistest.Server) { srv.Resume() },
			kept:      1,
			remaining: []int64{400, 700},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t)
			l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}, Timeout: 200 * time.Millisecond, Prefetch: durationPtr(0)})
			// One request at a time, and 1000 tokens a day: no refill within the test.
			pol := mustPolicy(t, "chat", Limit{Per: "api_key", Concurrency: 1}, Limit{Per: "api_key", Tokens: 1000, Window: "day"})
			var tk Ticket
			if err := l.Take(bg, pol, alice, 600, &tk); err != nil || tk.src != srcRedis {
				t.Fatalf("Take = %v from %d, want admitted by Redis", err, tk.src)
			}
			tc.fault(t, srv)
			before := l.Stats().DroppedSettles
			l.Settle(&tk, 300) // the slot's release and a refund of 300
			waitFor(t, 10*time.Second, "the settlements fail", func() bool {
				return l.rs.kept() == tc.kept && l.Stats().DroppedSettles-before == uint64(2-tc.kept)
			})
			waitFor(t, 5*time.Second, "degraded", l.Degraded)
			tc.heal(t, srv)
			waitFor(t, 5*time.Second, "recovery", func() bool { return !l.Degraded() })
			if err := l.Take(bg, pol, alice, 0, &tk); err != nil || tk.src != srcRedis {
				t.Fatalf("no request in flight, yet Take = %v from %d: the release was lost", err, tk.src)
			}
			if got := tk.Tokens.Remaining; !slices.Contains(tc.remaining, got) {
				t.Errorf("Tokens.Remaining %d, want one of %v", got, tc.remaining)
			}
			l.Settle(&tk, 0)
			barrier(t, l)
			if s := l.Stats(); l.rs.kept() != 0 || s.DroppedSettles-before != uint64(2-tc.kept) {
				t.Errorf("%d settlements still kept, %d dropped; want 0 and %d", l.rs.kept(), s.DroppedSettles-before, 2-tc.kept)
			}
		})
	}
}

// TestRedisStalledCheckReleasesItsSlot stops Redis while a check with a concurrency
// limit is on its way: the check times out and is answered without Redis, and Redis
// runs the script once it resumes, taking a slot that no request holds. That slot must
// be released once Redis answers again, not held for the whole lease.
func TestRedisStalledCheckReleasesItsSlot(t *testing.T) {
	// Not parallel: the checks that must reach Redis do so within a 100ms timeout, which
	// other tests' load can exceed.
	for _, mode := range []string{"allow", "deny"} {
		t.Run(mode, func(t *testing.T) {
			srv := redistest.Start(t)
			l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}, Timeout: 100 * time.Millisecond,
				OnRedisError: mode, ConcurrencyLease: time.Hour})
			pol := mustPolicy(t, "chat", Limit{Per: "api_key", Concurrency: 1})
			// A request before the stall leaves a connection in the pool, as traffic
			// does: the check then goes out on it at once.
			var tk Ticket
			if err := l.Take(bg, pol, alice, 0, &tk); err != nil {
				t.Fatal(err)
			}
			l.Settle(&tk, 0)
			barrier(t, l)
			srv.Pause()
			err := l.Take(bg, pol, alice, 0, &tk)
			if mode == "allow" && (err != nil || tk.src != srcFallback) {
				t.Fatalf("Take = %v from %d, want admitted from this replica's share", err, tk.src)
			}
			if mode == "deny" && !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Take = %v, want ErrUnavailable", err)
			}
			l.Settle(&tk, 0)
			// The stall outlasts the longest round the limiter waits on (10 × timeout,
			// at least 500ms), so that the round carrying the check fails too.
			time.Sleep(time.Second)
			srv.Resume()
			waitFor(t, 5*time.Second, "recovery", func() bool { return !l.Degraded() })
			barrier(t, l)
			if err := l.Take(bg, pol, alice, 0, &tk); err != nil || tk.src != srcRedis {
				t.Fatalf("no request in flight, yet Take = %v from %d: the stalled check's slot is still taken", err, tk.src)
			}
			l.Settle(&tk, 0)
			barrier(t, l)
			if l.rs.kept() != 0 {
				t.Errorf("%d settlements still kept after recovery", l.rs.kept())
			}
		})
	}
}

// kept is how many settlements wait to be sent again after a failed call.
func (s *redisStore) kept() int {
	s.retry.mu.Lock()
	defer s.retry.mu.Unlock()
	return len(s.retry.ops)
}

// Only failures that prove the script call did not run let a token adjustment be
// sent again.
func TestScriptNotRun(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{"dial timeout", fmt.Errorf("dial: %w", &net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}), true},
		{"pool timeout", redis.ErrPoolTimeout, true},
		{"client closed", redis.ErrClosed, true},
		{"NOAUTH", replyError("NOAUTH Authentication required."), true},
		{"WRONGPASS", replyError("WRONGPASS invalid username-password pair or user is disabled."), true},
		{"LOADING", replyError("LOADING Redis is loading the dataset in memory"), true},
		{"BUSY", replyError("BUSY Redis is busy running a script."), true},
		{"READONLY", replyError("READONLY You can't write against a read only replica."), true},
		{"OOM", replyError("OOM command not allowed when used memory > 'maxmemory'."), true},
		{"NOSCRIPT", redis.ErrNoScript, true},
		{"TRYAGAIN", replyError("TRYAGAIN Multiple keys request during rehashing of slot"), true},
		{"a call without a marker run late", replyError("TGLATE this call reached Redis past the time it was to run by"), true},
		{"BUSYKEY is not BUSY", replyError("BUSYKEY Target key name already exists."), false},
		{"error inside the script", replyError("ERR user_script:12: attempt to compare nil with number"), false},
		{"read timeout", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, false},
		{"deadline", context.DeadlineExceeded, false},
		{"connection cut", io.EOF, false},
		{"reset", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := scriptNotRun(tc.err); got != tc.want {
				t.Errorf("scriptNotRun(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

// replyError is an error reply from Redis, as go-redis reports one.
type replyError string

func (e replyError) Error() string { return string(e) }

// RedisError marks replyError as a Redis reply for go-redis.
func (replyError) RedisError() {}

func TestRedisClockSkew(t *testing.T) {
	srv := redistest.Start(t)
	cfg := Config{Redis: RedisConfig{URL: srv.URL()}}
	a := newRedisLimiter(t, cfg)
	b := newRedisLimiter(t, cfg, func(o *options) {
		o.now = func() time.Time { return time.Now().Add(7 * time.Minute) }
	})
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 10, Window: "hour"})
	var ta, tb Ticket
	admitted := 0
	for i := range 16 {
		l, tk := a, &ta
		if i%2 == 1 {
			l, tk = b, &tb
		}
		if l.Take(bg, pol, alice, 0, tk) == nil {
			admitted++
		}
	}
	if admitted != 10 {
		t.Errorf("admitted %d across skewed replicas, want 10", admitted)
	}
	if ta.RetryAfter == 0 || tb.RetryAfter == 0 {
		t.Fatal("both replicas should be refusing")
	}
	// Six minutes per request either way; a replica using its own clock would be 7 minutes off.
	if d := ta.RetryAfter - tb.RetryAfter; d > time.Second || d < -time.Second {
		t.Errorf("RetryAfter %v vs %v: the replicas disagree", ta.RetryAfter, tb.RetryAfter)
	}
	if d := ta.Requests.Reset - tb.Requests.Reset; d > time.Second || d < -time.Second {
		t.Errorf("Reset %v vs %v: the replicas disagree", ta.Requests.Reset, tb.Requests.Reset)
	}
}

func TestRedisScriptReload(t *testing.T) {
	srv := redistest.Start(t)
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}})
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 5, Window: "hour"})
	if got := admitN(t, l, pol, alice, 0, 2); got != 2 {
		t.Fatal(got)
	}
	if _, err := redistest.Command(srv.Addr(), "SCRIPT", "FLUSH"); err != nil {
		t.Fatal(err)
	}
	before := l.Stats()
	if got := admitN(t, l, pol, alice, 0, 5); got != 3 {
		t.Errorf("admitted %d after SCRIPT FLUSH, want 3", got)
	}
	// Four checks reach Redis, the first twice (NOSCRIPT, then EVAL); the fifth is
	// refused from the fourth's cached refusal.
	after := l.Stats()
	if after.Fallbacks != 0 || after.RoundTrips-before.RoundTrips != 5 || after.RefusedLocally-before.RefusedLocally != 1 {
		t.Errorf("stats %+v -> %+v: want one extra round trip (EVAL), one cached refusal and no fallback", before, after)
	}
}

func TestRedisFaults(t *testing.T) {
	// Not parallel: 16 clients load the machine, and every Take must end within the
	// timeout and 150ms of slack.
	// Above the default (50ms): on a 2-core machine running other tests under -race, a
	// healthy round trip right after the heal (new connections, the script loaded again)
	// took 59ms, and the limiter rightly called Redis down a second time, failing the
	// one-outage checks below for a stall that is not the fault under test; with the
	// whole suite beside the gateway's -race tests, three round trips in a row took over
	// 200ms.
	const timeout = 400 * time.Millisecond
	// What a request may wait beyond the timeout on a loaded 2-core machine under -race.
	const slack = 150 * time.Millisecond
	tests := []struct {
		name  string
		mode  string
		fault func(*redistest.Server)
		heal  func(*redistest.Server)
		// exact is set when one outage must log exactly one transition each way; a
		// stopped server can answer a late round trip after the timeout and flap once.
		exact bool
	}{
		{name: "killed, allow", mode: "allow", fault: (*redistest.Server).Kill, heal: (*redistest.Server).Restart, exact: true},
		{name: "killed, deny", mode: "deny", fault: (*redistest.Server).Kill, heal: (*redistest.Server).Restart, exact: true},
		{name: "stopped, allow", mode: "allow", fault: (*redistest.Server).Pause, heal: (*redistest.Server).Resume},
	}
	off := time.Duration(0)
	for _, tc := range tests {
		for _, prefetch := range []*time.Duration{nil, &off} {
			name := tc.name + ", prefetch"
			if prefetch != nil {
				name += " off"
			}
			t.Run(name, func(t *testing.T) {
				srv := redistest.Start(t)
				var logs logBuffer
				l := newRedisLimiterLog(t, Config{Redis: RedisConfig{URL: srv.URL()}, Timeout: timeout, OnRedisError: tc.mode, Prefetch: prefetch},
					slog.New(slog.NewTextHandler(&logs, nil)))
				pol := mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 1_000_000, Window: "second"})

				var stop atomic.Bool
				var worst atomic.Int64
				var ok, unavailable, other atomic.Int64
				var wg sync.WaitGroup
				for range 16 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						var tk Ticket
						for !stop.Load() {
							start := time.Now()
							err := l.Take(bg, pol, alice, 0, &tk)
							if d := int64(time.Since(start)); d > worst.Load() {
								worst.Store(d)
							}
							switch {
							case err == nil:
								ok.Add(1)
								l.Settle(&tk, 0)
							case errors.Is(err, ErrUnavailable):
								unavailable.Add(1)
							default:
								other.Add(1)
							}
							time.Sleep(time.Millisecond)
						}
					}()
				}
				time.Sleep(200 * time.Millisecond)
				tc.fault(srv)
				waitFor(t, 2*time.Second, "degraded after the fault", l.Degraded)
				time.Sleep(300 * time.Millisecond)
				tc.heal(srv)
				took := waitFor(t, 5*time.Second, "recovery", func() bool { return !l.Degraded() })
				// Checks sent during the outage (go-redis retrying a dial the restart
				// then answers) may still fail after the recovery, at their timeout:
				// they are answered without Redis, but must not mark it down again
				// (the one-outage logs below). Counted from when they are over.
				time.Sleep(timeout + slack)
				before := l.Stats()
				// After recovery checks are global again: answered by Redis, or from
				// units it granted ahead (prefetch), and no longer from the local
				// fallback. Waited for, not slept: a loaded machine may take a while
				// to run the next check.
				global := func(s Stats) uint64 { return s.RedisChecks + s.LocalChecks }
				waitFor(t, 5*time.Second, "a global check after recovery", func() bool { return global(l.Stats()) > global(before) })
				time.Sleep(50 * time.Millisecond)
				stop.Store(true)
				wg.Wait()
				after := l.Stats()
				t.Logf("recovered %v after the heal; worst Take %v; ok %d, unavailable %d; %+v",
					took, time.Duration(worst.Load()), ok.Load(), unavailable.Load(), after)

				if other.Load() != 0 {
					t.Errorf("%d errors other than ErrUnavailable", other.Load())
				}
				if w := time.Duration(worst.Load()); w > timeout+slack {
					t.Errorf("a Take waited %v, the timeout is %v", w, timeout)
				}
				switch tc.mode {
				case "allow":
					if unavailable.Load() != 0 || after.Fallbacks == 0 {
						t.Errorf("allow: %d unavailable, %d fallbacks; want 0 and some", unavailable.Load(), after.Fallbacks)
					}
				case "deny":
					if unavailable.Load() == 0 || after.Unavailable != uint64(unavailable.Load()) {
						t.Errorf("deny: %d ErrUnavailable seen, stats say %d", unavailable.Load(), after.Unavailable)
					}
				}
				if global(after) == global(before) || after.Fallbacks != before.Fallbacks ||
					after.Unavailable != before.Unavailable || after.Degraded {
					t.Errorf("checks do not go to Redis again after recovery: %+v -> %+v", before, after)
				}
				if prefetch != nil && after.LocalChecks != 0 {
					t.Errorf("prefetch off, yet %d checks were answered from prefetched units", after.LocalChecks)
				}
				down, up := logs.count("redis unavailable"), logs.count("redis answers again")
				if down < 1 || up != down || (tc.exact && down != 1) {
					t.Errorf("logged %d outages and %d recoveries for one outage:\n%s", down, up, logs.String())
				}
			})
		}
	}
}

func TestRedisDownAtStart(t *testing.T) {
	port := func() string {
		srv := redistest.Start(t)
		addr := srv.Addr()
		srv.Kill()
		return addr
	}()
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: "redis://" + port}, Replicas: 3, Timeout: 50 * time.Millisecond})
	if !l.Degraded() {
		t.Fatal("a limiter whose Redis is down should start degraded")
	}
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 600, Window: "minute", Burst: 60})
	if got := admitN(t, l, pol, alice, 0, 30); got != 20 {
		t.Errorf("local share admitted %d, want 20 (a third of the burst)", got)
	}
	if s := l.Stats(); s.Fallbacks != 30 || s.Replicas != 3 {
		t.Errorf("stats %+v", s)
	}
}

// While Redis is down each replica answers from burst/replicas of a tokens limit. An
// estimate above that share, though within the burst, is charged the share's whole
// burst once the share is full, rather than refused for as long as Redis is down, and
// the settlement charges the rest.
func TestRedisDownTokenEstimateAboveShare(t *testing.T) {
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
	// 1000 tokens a minute: a quarter share holds 250 and refills one per 240ms.
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Tokens: 1000, Window: "minute"})
	var tk Ticket
	if err := l.Take(bg, pol, alice, 400, &tk); err != nil || tk.src != srcFallback {
		t.Fatalf("Take of 400 tokens on a full share of 250 = %v from %d, want admitted locally", err, tk.src)
	}
	l.Settle(&tk, 400)
	// 400 used out of a share of 250: the next token is 151 tokens of refill away.
	var ref *Refused
	const wait = 151 * 240 * time.Millisecond
	if err := l.Take(bg, pol, alice, 1, &tk); !errors.As(err, &ref) || ref.RetryAfter != wait {
		t.Fatalf("Take after the overdraft = %v (%+v), want refused for %v", err, ref, wait)
	}
	clk.advance(wait)
	if err := l.Take(bg, pol, alice, 1, &tk); err != nil {
		t.Errorf("Take after retry-after = %v", err)
	}
}

func TestRedisReplicaCount(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	cfg := Config{Redis: RedisConfig{URL: srv.URL()}}
	ls := []*Limiter{newRedisLimiter(t, cfg), newRedisLimiter(t, cfg), newRedisLimiter(t, cfg)}
	waitFor(t, 3*time.Second, "three replicas counted", func() bool { return ls[0].Stats().Replicas == 3 })
	_ = ls[2].Close()
	waitFor(t, 3*time.Second, "a closed replica uncounted", func() bool { return ls[0].Stats().Replicas == 2 })
}

func TestRedisCluster(t *testing.T) {
	t.Parallel()
	addrs := redistest.StartCluster(t, 3)
	cfg := Config{Redis: RedisConfig{Addrs: addrs}}
	a, b := newRedisLimiter(t, cfg), newRedisLimiter(t, cfg)

	t.Run("per-subject buckets spread over slots", func(t *testing.T) {
		pol := mustPolicy(t, "chat",
			Limit{Per: "user", Requests: 5, Window: "hour"},
			Limit{Per: "user", Tokens: 1000, Window: "hour"})
		slots := map[int]bool{}
		for u := range 20 {
			s := &Subject{User: []byte("user-" + strconv.Itoa(u))}
			var tk Ticket
			pol.locate(s, 0, &tk)
			slots[b.rs.slotOf(tk.tag[0])] = true
			if got := admitN(t, a, pol, s, 10, 3) + admitN(t, b, pol, s, 10, 4); got != 5 {
				t.Errorf("user %d admitted %d, want 5", u, got)
			}
		}
		if len(slots) < 10 {
			t.Errorf("20 users used only %d slots", len(slots))
		}
	})
	t.Run("limits of different slots stay all or nothing", func(t *testing.T) {
		x, _, xy := splitSlots(t, a, 5, 3)
		if got := admitN(t, a, xy, alice, 0, 6); got != 3 {
			t.Fatalf("combined admitted %d, want 3", got)
		}
		// The three refusals were admitted by x's slot and given back.
		if got := admitN(t, a, x, bob, 0, 5); got != 2 {
			t.Errorf("x admitted %d more, want 2", got)
		}
	})
	t.Run("concurrency", func(t *testing.T) {
		pol := mustPolicy(t, "chat", Limit{Per: "ip", Concurrency: 1})
		var t1, t2 Ticket
		if err := a.Take(bg, pol, alice, 0, &t1); err != nil {
			t.Fatal(err)
		}
		if err := b.Take(bg, pol, alice, 0, &t2); err == nil {
			t.Fatal("second slot admitted")
		}
		a.Settle(&t1, 0)
		barrier(t, a)
		if err := b.Take(bg, pol, alice, 0, &t2); err != nil {
			t.Fatalf("after release: %v", err)
		}
	})
	for _, l := range []*Limiter{a, b} {
		if s := l.Stats(); s.Fallbacks != 0 || s.Degraded {
			t.Errorf("stats %+v", s)
		}
	}
}

func TestRedisSentinel(t *testing.T) {
	master := redistest.Start(t)
	sentinel := redistest.StartSentinel(t, master, "tollgate")
	cfg := Config{Redis: RedisConfig{Sentinel: SentinelConfig{Master: "tollgate", Addrs: []string{sentinel}}}}
	a, b := newRedisLimiter(t, cfg), newRedisLimiter(t, cfg)
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 4, Window: "hour"})
	if got := admitN(t, a, pol, alice, 0, 3) + admitN(t, b, pol, alice, 0, 3); got != 4 {
		t.Errorf("admitted %d through Sentinel, want 4", got)
	}
	if s := a.Stats(); s.Fallbacks != 0 || s.RedisChecks == 0 {
		t.Errorf("stats %+v: checks did not reach the master", s)
	}
}
