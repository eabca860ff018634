package limiter

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
)

// A limiter closed while requests it admitted still run (a shutdown whose grace ran
// out, the process about to exit) gives their slots back: nothing renews them once it
// is closed, and left in Redis they would refuse their key on every other replica for
// the whole lease. The requests settling afterwards release nothing twice and do not
// fail on the closed limiter.
func TestRedisCloseReleasesSlotsStillHeld(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	cfg := Config{Redis: RedisConfig{URL: srv.URL()}, ConcurrencyLease: time.Hour}
	closing, other := newRedisLimiter(t, cfg), newRedisLimiter(t, cfg)
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Concurrency: 2})
	c := redisClient(t, srv.Addr())
	key := bucketKey(pol, alice, 0)
	var open [2]Ticket
	for i := range open {
		if err := closing.Take(bg, pol, alice, 0, &open[i]); err != nil || open[i].src != srcRedis {
			t.Fatalf("Take = %v from %d, want admitted by Redis", err, open[i].src)
		}
	}
	if err := closing.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := c.ZCard(bg, key).Result(); err != nil || n != 0 {
		t.Fatalf("ZCARD = %d, %v after closing with 2 requests still open, want their slots given back", n, err)
	}
	if n := len(closing.rs.heldSlots(nil)); n != 0 {
		t.Errorf("%d slots still held by the closed limiter, want 0", n)
	}
	for i := range open {
		closing.Settle(&open[i], 0)
	}
	// Past a few heartbeats of a live limiter: none renews or adds back a slot.
	time.Sleep(500 * time.Millisecond)
	for range 2 {
		var tk Ticket
		if err := other.Take(bg, pol, alice, 0, &tk); err != nil || tk.src != srcRedis {
			t.Fatalf("another replica: Take = %v from %d, want admitted by Redis (the closed limiter's requests hold no slot)", err, tk.src)
		}
		defer other.Settle(&tk, 0)
	}
	var third Ticket
	if err := other.Take(bg, pol, alice, 0, &third); err == nil {
		other.Settle(&third, 0)
		t.Error("a third request admitted under concurrency 2: a slot was released twice")
	}
}
