package limiter

import (
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
)

// Three replicas at a concurrency cap's edge, Redis losing its scripts mid-run
// (SCRIPT FLUSH, as a restart does): never more in flight than the cap, every check
// answered by Redis (NOSCRIPT loads the script again), and every slot back at the end.
func TestRedisReplicasConcurrencyCapExactAcrossScriptFlush(t *testing.T) {
	// Not parallel: 24 closed-loop clients load the machine for the whole run.
	srv := redistest.Start(t)
	rc := redisClient(t, srv.Addr())
	cfg := Config{Redis: RedisConfig{URL: srv.URL()}}
	ls := []*Limiter{newRedisLimiter(t, cfg), newRedisLimiter(t, cfg), newRedisLimiter(t, cfg)}
	const limit = 3
	pol := mustPolicy(t, "chat",
		Limit{Per: "user", Concurrency: limit},
		Limit{Per: "api_key", Tokens: 1_000_000, Window: "minute"})

	var inFlight, most, admitted atomic.Int64
	var failed atomic.Value
	stop := time.Now().Add(1500 * time.Millisecond)
	var wg sync.WaitGroup
	for g := range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := ls[g%len(ls)]
			rnd := rand.New(rand.NewPCG(uint64(g), 7))
			var tk Ticket
			for time.Now().Before(stop) {
				err := l.Take(bg, pol, alice, 100, &tk)
				var ref *Refused
				switch {
				case err == nil:
					admitted.Add(1)
					n := inFlight.Add(1)
					for {
						m := most.Load()
						if n <= m || most.CompareAndSwap(m, n) {
							break
						}
					}
					time.Sleep(time.Duration(rnd.IntN(3)) * time.Millisecond)
					inFlight.Add(-1)
					// Refunded (an error answer), overdrawn, or kept.
					l.Settle(&tk, []int64{0, 250, KeepEstimate}[rnd.IntN(3)])
				case errors.As(err, &ref):
				default:
					failed.Store(err)
					return
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	if err := rc.ScriptFlush(bg).Err(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		t.Fatalf("Take: %v", err)
	}
	for _, l := range ls {
		if s := l.Stats(); s.Fallbacks != 0 || s.Degraded {
			t.Fatalf("stats %+v: a check was answered without Redis", s)
		}
		barrier(t, l)
	}
	t.Logf("admitted %d, at most %d in flight", admitted.Load(), most.Load())
	if most.Load() > limit {
		t.Errorf("%d in flight at once across the replicas, cap %d", most.Load(), limit)
	}
	if admitted.Load() < 10 {
		t.Errorf("admitted only %d: the run did not reach the cap's edge", admitted.Load())
	}
	if n, err := rc.ZCard(bg, bucketKey(pol, alice, 0)).Result(); err != nil || n != 0 {
		t.Errorf("ZCARD = %d, %v after every request ended, want 0", n, err)
	}
}

// A replica that dies holding concurrency slots (no Close: its process is gone)
// keeps them taken for concurrency_lease after its last heartbeat, no shorter, and
// they free then without it.
func TestRedisKilledReplicaSlotsFreeAfterLease(t *testing.T) {
	// Not parallel: the half-lease bound assumes the dead replica's heartbeats ran every
	// 100ms, which other tests' load can delay.
	srv := redistest.Start(t)
	const lease = time.Second
	cfg := Config{Redis: RedisConfig{URL: srv.URL()}, ConcurrencyLease: lease, Timeout: 2 * time.Second, Store: "redis"}
	o := defaultOptions()
	o.heartbeatEvery = 100 * time.Millisecond
	o.probeEvery = 50 * time.Millisecond
	o.sweepEvery = time.Hour
	dying, err := newLimiter(cfg, nil, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	other := newRedisLimiter(t, cfg)
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Concurrency: 2})
	var t1, t2 Ticket
	for _, tk := range []*Ticket{&t1, &t2} {
		if err := dying.Take(bg, pol, alice, 0, tk); err != nil {
			t.Fatal(err)
		}
	}
	// Let its heartbeat renew the leases a few times, then kill it: its goroutines
	// stop and its connections close, with nothing released.
	time.Sleep(350 * time.Millisecond)
	close(dying.stop)
	dying.wg.Wait()
	died := time.Now()
	_ = dying.rs.c.Close()

	refused := func() bool {
		var tk Ticket
		err := other.Take(bg, pol, alice, 0, &tk)
		if err == nil {
			other.Settle(&tk, 0)
			return false
		}
		var ref *Refused
		if !errors.As(err, &ref) {
			t.Fatalf("Take: %v", err)
		}
		return true
	}
	// Half the lease after the last heartbeat, the dead replica's slots still count.
	time.Sleep(lease / 2)
	if !refused() && time.Since(died) < lease {
		t.Errorf("a slot freed %v after the replica died, before its lease of %v", time.Since(died), lease)
	}
	took := waitFor(t, 5*lease, "the dead replica's slots free", func() bool { return !refused() })
	t.Logf("freed %v after death (lease %v)", took+lease/2, lease)
}

// Three replicas prefetching a requests and a tokens bucket together, at the edge of
// both, with refunds, overdrafts and kept estimates settled, Redis losing its scripts
// and one replica shut down and replaced mid-run: what every replica admitted and
// what Redis has left add up to the burst and the refill since the start, exactly
// (no more admitted than the limit, and no prefetched unit lost at the shutdown).
func TestRedisReplicasPrefetchAddsUpAcrossShutdown(t *testing.T) {
	// Not parallel: 30 closed-loop clients load the machine for the whole run.
	srv := redistest.Start(t)
	rc := redisClient(t, srv.Addr())
	cfg := Config{Redis: RedisConfig{URL: srv.URL()}, Prefetch: durationPtr(time.Second)}
	const reqRate, reqBurst = 100.0, 400.0
	const tokRate, tokBurst = 10_000.0, 40_000.0
	pol := mustPolicy(t, "chat",
		Limit{Per: "api_key", Requests: 360_000, Window: "hour", Burst: 400},
		Limit{Per: "api_key", Tokens: 600_000, Window: "minute", Burst: 40_000})
	var mu sync.RWMutex
	ls := []*Limiter{newRedisLimiter(t, cfg), newRedisLimiter(t, cfg), newRedisLimiter(t, cfg)}

	var admitted, used atomic.Int64
	var failed atomic.Value
	t0 := redisNow(t, rc)
	// Replica 0, the one shut down below, takes three requests while the buckets are
	// full: the first marks the subject busy, the second is granted units ahead, the
	// third is answered from them. Under load the buckets soon sit in their lower
	// half, where Redis grants nothing ahead, so which replica got units in the first
	// moments would be a matter of scheduling.
	for range 3 {
		var tk Ticket
		if err := ls[0].Take(bg, pol, alice, 100, &tk); err != nil {
			t.Fatal(err)
		}
		admitted.Add(1)
		used.Add(100)
		ls[0].Settle(&tk, 100)
	}
	if s := ls[0].Stats(); s.LocalChecks == 0 {
		t.Fatalf("stats %+v: a replica with full buckets was granted no units ahead", s)
	}
	stop := time.Now().Add(2 * time.Second)
	var wg sync.WaitGroup
	for g := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(g), 9))
			var tk Ticket
			for time.Now().Before(stop) {
				mu.RLock()
				l := ls[g%len(ls)]
				err := l.Take(bg, pol, alice, 100, &tk)
				var ref *Refused
				switch {
				case err == nil:
					admitted.Add(1)
					actual := []int64{0, 40, 100, 180}[rnd.IntN(4)]
					used.Add(actual)
					l.Settle(&tk, actual)
				case errors.As(err, &ref):
				default:
					failed.Store(err)
				}
				mu.RUnlock()
				if err != nil && failed.Load() != nil {
					return
				}
			}
		}()
	}
	time.Sleep(600 * time.Millisecond)
	if err := rc.ScriptFlush(bg).Err(); err != nil {
		t.Fatal(err)
	}
	// Replica 0 shuts down (what it holds goes back) and a new one takes its place.
	mu.RLock()
	old := ls[0]
	mu.RUnlock()
	mu.Lock()
	ls[0] = newRedisLimiter(t, cfg)
	mu.Unlock()
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		t.Fatalf("Take: %v", err)
	}
	for _, l := range append(ls, old) {
		_ = l.Close() // what is held goes back, what is queued is sent
		if s := l.Stats(); s.Fallbacks != 0 || s.DroppedSettles != 0 {
			t.Fatalf("stats %+v: the count is not Redis's", s)
		}
	}
	t1 := redisNow(t, rc)
	elapsed := t1.Sub(t0).Seconds()
	balance := func(i int, rate, burst float64) float64 {
		v, err := rc.Get(bg, bucketKey(pol, alice, i)).Result()
		if err != nil {
			return burst // gone: full
		}
		debtUS := storedTAT(t, v) - float64(t1.UnixMicro()-1_700_000_000_000_000)
		return burst - max(debtUS, 0)*rate/1e6
	}
	reqAllow := reqBurst + reqRate*elapsed
	reqGot := float64(admitted.Load()) + balance(0, reqRate, reqBurst)
	tokAllow := tokBurst + tokRate*elapsed
	tokGot := float64(used.Load()) + balance(1, tokRate, tokBurst)
	t.Logf("requests: admitted %d + left %.1f = %.1f, allowance %.1f", admitted.Load(), reqGot-float64(admitted.Load()), reqGot, reqAllow)
	t.Logf("tokens: used %d + left %.1f = %.1f, allowance %.1f", used.Load(), tokGot-float64(used.Load()), tokGot, tokAllow)
	if float64(admitted.Load()) > reqAllow {
		t.Errorf("admitted %d requests, allowance %.1f", admitted.Load(), reqAllow)
	}
	if reqGot < reqAllow-2 || reqGot > reqAllow+2 {
		t.Errorf("requests admitted + left = %.1f, want the allowance %.1f: units lost or made up", reqGot, reqAllow)
	}
	if tokGot < tokAllow-0.01*tokAllow || tokGot > tokAllow+0.01*tokAllow {
		t.Errorf("tokens used + left = %.1f, want the allowance %.1f", tokGot, tokAllow)
	}
}
