package limiter

import (
	"errors"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
)

// When Redis fails, a replica's share of a concurrency cap counts the requests Redis
// admitted to it that still run: one running three of a cap of 4 (a share of 2 with
// 2 replicas) admits nothing more from its share until two of them end, where it used
// to admit a whole share on top of them. The other replica, running none, admits its
// share. When they end, their slots leave the replica's count (no slot is kept there
// after its request), and Redis, back, has the whole cap free.
func TestFallbackShareCountsRedisAdmittedRequests(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	cfg := Config{Redis: RedisConfig{URL: srv.URL()}, Replicas: 2}
	a, b := newRedisLimiter(t, cfg), newRedisLimiter(t, cfg)
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Concurrency: 4})

	var running [3]Ticket
	for i := range running {
		if err := a.Take(bg, pol, alice, 0, &running[i]); err != nil || running[i].src != srcRedis {
			t.Fatalf("request %d: %v (source %d), want admitted by Redis", i, err, running[i].src)
		}
	}
	srv.Kill()
	waitFor(t, 10*time.Second, "a degraded", a.Degraded)

	refused := func(l *Limiter, who string) {
		t.Helper()
		var tk Ticket
		err := l.Take(bg, pol, alice, 0, &tk)
		if _, ok := errors.AsType[*Refused](err); !ok {
			if err == nil {
				l.Settle(&tk, 0)
			}
			t.Fatalf("%s: %v, want refused by its share", who, err)
		}
	}
	admitted := func(l *Limiter, who string, tk *Ticket) {
		t.Helper()
		if err := l.Take(bg, pol, alice, 0, tk); err != nil || tk.src != srcFallback {
			t.Fatalf("%s: %v (source %d), want admitted from its share", who, err, tk.src)
		}
	}
	refused(a, "a, running 3 Redis admitted, share 2")
	var b1, b2 Ticket
	admitted(b, "b's first", &b1)
	admitted(b, "b's second", &b2)
	refused(b, "b's third")

	a.Settle(&running[0], 0)
	refused(a, "a, running 2, share 2")
	a.Settle(&running[1], 0)
	var a1 Ticket
	admitted(a, "a, running 1", &a1)
	refused(a, "a, running 2 again")
	a.Settle(&running[2], 0)
	a.Settle(&a1, 0)
	b.Settle(&b1, 0)
	b.Settle(&b2, 0)
	for _, l := range []*Limiter{a, b} {
		e := l.mem.shards[shardOf(running[0].bucket[0])].m[running[0].bucket[0]]
		if e != nil && e.conc != 0 {
			t.Errorf("%d slots still counted after every request ended", e.conc)
		}
	}
	// Back, Redis gets the releases kept for it: the cap is whole again.
	srv.Restart()
	waitFor(t, 10*time.Second, "both recovered", func() bool { return !a.Degraded() && !b.Degraded() })
	barrier(t, a)
	barrier(t, b)
	var all [4]Ticket
	for i := range all {
		if err := b.Take(bg, pol, alice, 0, &all[i]); err != nil || all[i].src != srcRedis {
			t.Fatalf("after Redis came back, request %d of a cap of 4: %v (source %d), want admitted by Redis", i, err, all[i].src)
		}
	}
	for i := range all {
		b.Settle(&all[i], 0)
	}
}
