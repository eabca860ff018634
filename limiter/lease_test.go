package limiter

import (
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/redistest"
)

// A Redis restarted empty (no persistence, or a failover to a replica that lagged)
// has lost the leases of the requests in flight. Their replica is alive and adds them
// back with its next heartbeat, so that the cap counts them again: the fleet never has
// more than `concurrency` requests in flight once that heartbeat has run.
func TestRedisRestartKeepsConcurrencyCap(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	cfg := Config{Redis: RedisConfig{URL: srv.URL()}}
	a, b := newRedisLimiter(t, cfg), newRedisLimiter(t, cfg)
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Concurrency: 2})
	var t1, t2 Ticket
	if err := a.Take(bg, pol, alice, 0, &t1); err != nil {
		t.Fatal(err)
	}
	if err := a.Take(bg, pol, alice, 0, &t2); err != nil {
		t.Fatal(err)
	}
	defer a.Settle(&t1, 0)
	defer a.Settle(&t2, 0)

	srv.Restart()
	// Both replicas reach the new Redis again and heartbeat (adding back a's leases)
	// several times.
	waitFor(t, 10*time.Second, "recovered", func() bool {
		_, errA := a.rs.heartbeat()
		_, errB := b.rs.heartbeat()
		return errA == nil && errB == nil && !a.Degraded() && !b.Degraded()
	})
	time.Sleep(500 * time.Millisecond) // five heartbeats of the test limiters

	admitted := 0
	for range 2 {
		var tk Ticket
		err := b.Take(bg, pol, alice, 0, &tk)
		if err == nil {
			admitted++
			defer b.Settle(&tk, 0)
			continue
		}
		var ref *Refused
		if !errors.As(err, &ref) {
			t.Fatalf("Take: %v", err)
		}
	}
	if s := b.Stats(); s.Fallbacks != 0 {
		t.Logf("b fell back %d times", s.Fallbacks)
	}
	if admitted != 0 {
		t.Errorf("with 2 of 2 slots in flight on a live replica, Redis restarted: %d more admitted (%d in flight, cap 2)", admitted, 2+admitted)
	}
	if n, err := redisClient(t, srv.Addr()).ZCard(bg, bucketKey(pol, alice, 0)).Result(); err != nil || n != 2 {
		t.Errorf("ZCARD = %d, %v after the restart and a heartbeat, want the 2 leases in flight", n, err)
	}
}

// A lease is added back only while its request runs, and one whose request ended
// while it was being added back, its release reaching Redis first, is released again
// after it: a finished request never keeps its slot until the lease ends.
func TestRedisLeaseAddedBackOnlyWhileHeld(t *testing.T) {
	srv := redistest.Start(t)
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}, ConcurrencyLease: time.Hour})
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Concurrency: 1})
	c := redisClient(t, srv.Addr())
	key := bucketKey(pol, alice, 0)
	var tk Ticket
	if err := l.Take(bg, pol, alice, 0, &tk); err != nil {
		t.Fatal(err)
	}
	held := l.rs.heldSlots(nil)
	if len(held) != 1 {
		t.Fatalf("%d slots held, want 1", len(held))
	}
	l.Settle(&tk, 0)
	barrier(t, l) // the release has reached Redis
	nowUS := redisNow(t, c).Sub(time.Unix(1700000000, 0)).Microseconds()

	if err := l.rs.addBack(bg, held, nowUS); err != nil {
		t.Fatal(err)
	}
	if n, err := c.ZCard(bg, key).Result(); err != nil || n != 0 {
		t.Fatalf("ZCARD = %d, %v after adding back a released slot, want 0", n, err)
	}

	// The race addBack closes: the slot was still held when it looked, its release
	// reached Redis, and then its ZADD.
	if _, err := l.rs.addLeases(bg, held, nowUS, false); err != nil {
		t.Fatal(err)
	}
	if n, err := c.ZCard(bg, key).Result(); err != nil || n != 1 {
		t.Fatalf("ZCARD = %d, %v after the ZADD, want 1", n, err)
	}
	l.rs.releaseAgain(held)
	barrier(t, l)
	if n, err := c.ZCard(bg, key).Result(); err != nil || n != 0 {
		t.Fatalf("ZCARD = %d, %v after releasing again, want 0", n, err)
	}
	if err := l.Take(bg, pol, alice, 0, &tk); err != nil {
		t.Fatalf("no request in flight, yet %v", err)
	}
	l.Settle(&tk, 0)
}

// A reload that replaces the limiter (NewFrom) during a Redis blip keeps the releases
// the old one could not send, those queued before the reload and those of its
// requests still in flight after it, and the new limiter sends them once Redis
// answers its heartbeat: the slots do not stay taken until their leases end.
func TestRedisReloadDuringBlipKeepsKeptReleases(t *testing.T) {
	// Not parallel: the checks that must reach Redis do so within a 200-300ms timeout,
	// which other tests' load can exceed.
	srv := redistest.Start(t)
	cfg := Config{Store: "redis", Redis: RedisConfig{URL: srv.URL()}, Timeout: 200 * time.Millisecond, ConcurrencyLease: time.Hour}
	old := newRedisLimiter(t, cfg)
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Concurrency: 2})
	var before, after Ticket
	for _, tk := range []*Ticket{&before, &after} {
		if err := old.Take(bg, pol, alice, 0, tk); err != nil || tk.src != srcRedis {
			t.Fatalf("Take = %v from %d, want admitted by Redis", err, tk.src)
		}
	}
	// Redis refuses every command (NOAUTH) until healed.
	if _, err := redistest.Command(srv.Addr(), "CONFIG", "SET", "requirepass", "pw"); err != nil {
		t.Fatal(err)
	}
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr(), Password: "pw", DisableIdentity: true, Protocol: 2})
	defer admin.Close()
	if err := admin.ClientKillByFilter(bg, "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
		t.Fatal(err)
	}
	old.Settle(&before, 0)
	waitFor(t, 5*time.Second, "the release fails", func() bool { return old.rs.kept() == 1 })
	waitFor(t, 5*time.Second, "degraded", old.Degraded)

	cfg.Timeout = 300 * time.Millisecond
	o := defaultOptions()
	o.heartbeatEvery, o.probeEvery, o.sweepEvery = 100*time.Millisecond, 50*time.Millisecond, time.Hour
	next, err := newLimiter(cfg, nil, o, old)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = next.Close() })
	// A request the old limiter admitted ends after the reload; then it is closed.
	old.Settle(&after, 0)
	if err := old.Close(); err != nil {
		t.Logf("closing the old limiter: %v", err)
	}
	if n := next.rs.kept(); n != 2 {
		t.Fatalf("%d releases kept after the old limiter closed, want 2", n)
	}

	if err := admin.ConfigSet(bg, "requirepass", "").Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "recovery", func() bool { return !next.Degraded() })
	barrier(t, next)
	for range 2 {
		var tk Ticket
		if err := next.Take(bg, pol, alice, 0, &tk); err != nil || tk.src != srcRedis {
			t.Fatalf("no request in flight, yet Take = %v from %d: a release was lost in the reload", err, tk.src)
		}
		defer next.Settle(&tk, 0)
	}
	if n := next.rs.kept(); n != 0 {
		t.Errorf("%d releases still kept after recovery", n)
	}
}

// Stores share kept settlements only when they talk to the same Redis: a new password
// or pool does not make it another one.
func TestRedisTarget(t *testing.T) {
	base := RedisConfig{URL: "redis://:old@10.0.0.1:6379/2"}
	tests := []struct {
		name string
		next RedisConfig
		same bool
	}{
		{"password in the URL", RedisConfig{URL: "redis://:new@10.0.0.1:6379/2"}, true},
		{"password and pool fields", RedisConfig{URL: "redis://10.0.0.1:6379/2", Password: "new", PoolSize: 9}, true},
		{"db field naming the URL's", RedisConfig{URL: "redis://10.0.0.1:6379/0", DB: 2}, true},
		{"other host", RedisConfig{URL: "redis://:old@10.0.0.2:6379/2"}, false},
		{"other db", RedisConfig{URL: "redis://:old@10.0.0.1:6379/3"}, false},
		{"cluster", RedisConfig{Addrs: []string{"10.0.0.1:6379"}}, false},
		{"sentinel", RedisConfig{Sentinel: SentinelConfig{Master: "m", Addrs: []string{"10.0.0.1:6379"}}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := redisTarget(&base) == redisTarget(&tc.next); got != tc.same {
				t.Errorf("same Redis = %v, want %v", got, tc.same)
			}
		})
	}
}

// Sentinels and cluster seeds are how the gateway finds its Redis, not which Redis it
// is: the same addresses in another order, or one listed twice, name the same target.
func TestRedisTargetAddressOrder(t *testing.T) {
	tests := []struct {
		name string
		a, b RedisConfig
		same bool
	}{
		{"sentinels reordered",
			RedisConfig{Sentinel: SentinelConfig{Master: "m", Addrs: []string{"s1:26379", "s2:26379"}}},
			RedisConfig{Sentinel: SentinelConfig{Master: "m", Addrs: []string{"s2:26379", "s1:26379", "s2:26379"}}}, true},
		{"other master",
			RedisConfig{Sentinel: SentinelConfig{Master: "m", Addrs: []string{"s1:26379"}}},
			RedisConfig{Sentinel: SentinelConfig{Master: "n", Addrs: []string{"s1:26379"}}}, false},
		{"cluster seeds reordered",
			RedisConfig{Addrs: []string{"c1:6379", "c2:6379", "c3:6379"}},
			RedisConfig{Addrs: []string{"c3:6379", "c1:6379", "c2:6379"}}, true},
		{"other cluster",
			RedisConfig{Addrs: []string{"c1:6379"}},
			RedisConfig{Addrs: []string{"d1:6379"}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := redisTarget(&tc.a), redisTarget(&tc.b)
			if got := a == b; got != tc.same {
				t.Errorf("same Redis = %v (%q, %q), want %v", got, a, b, tc.same)
			}
		})
	}
}
