package limiter

import (
	"testing"

	"github.com/tollgate/tollgate/internal/redistest"
)

// README (Rate limits): "the gateway counts once in it while requests begun before a
// reload of the `limiter` section still run on the limiter it replaced". A reload that
// lists the same Sentinels in another order (or adds one) still points at the same
// Redis master: the process must stay one member of tg:{replicas} there, else every
// replica answers from a smaller share while Redis fails.
func TestReloadReorderingSentinelsCountsProcessOnce(t *testing.T) {
	master := redistest.Start(t)
	s1 := redistest.StartSentinel(t, master, "tollgate")
	s2 := redistest.StartSentinel(t, master, "tollgate")
	c := redisClient(t, master.Addr())
	a := Config{Store: "redis", Redis: RedisConfig{Sentinel: SentinelConfig{Master: "tollgate", Addrs: []string{s1, s2}}}}
	b := Config{Store: "redis", Redis: RedisConfig{Sentinel: SentinelConfig{Master: "tollgate", Addrs: []string{s2, s1}}}}
	old, err := newLimiter(a, nil, defaultOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = old.Close() })
	// The reload: old still runs its requests (and heartbeats).
	cur, err := newLimiter(b, nil, defaultOptions(), old)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cur.Close() })
	if old.Degraded() || cur.Degraded() {
		t.Fatalf("setup: a limiter did not reach Redis through its Sentinels (degraded %v, %v)", old.Degraded(), cur.Degraded())
	}
	n, err := c.ZCard(bg, replicasKey).Result()
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d members of %s in the one Redis master after a reload that only reordered its Sentinels, want 1 (one process)", n, replicasKey)
	}
	if r := cur.Stats().Replicas; r != 1 {
		t.Errorf("the new limiter counts %d replicas, want 1", r)
	}
}
