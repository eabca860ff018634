package limiter

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/redistest"
)

// Redis Cluster: a request's per-endpoint and per-key buckets hash to different slots;
// when the key's slot refuses, what the endpoint's slot admitted is given back in the
// next round. Another key's request on the endpoint checked in the same round sees
// that brief charge and is refused; the refusal must not be cached as if the
// endpoint's bucket were empty (README: "a request refused by one limit consumes none
// of the others"): once the charge is back, the next request goes to Redis and fits.
func TestRefusalNotCachedForBriefClusterCharge(t *testing.T) {
	t.Parallel()
	addrs := redistest.StartCluster(t, 3)
	l := newRedisLimiter(t, Config{Redis: RedisConfig{Addrs: addrs}, Prefetch: durationPtr(0)})
	x, y, xy := splitSlots(t, l, 1, 1)
	// team-a has spent its one request an hour.
	var tk Ticket
	if err := l.Take(bg, y, alice, 0, &tk); err != nil {
		t.Fatal(err)
	}
	// Two requests in one round, as under load: team-a's on the endpoint, refused by
	// its key's limit, then team-b's.
	resume := holdRounds(t, l)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, pol := range []*Policy{xy, x} {
		subj := []*Subject{alice, bob}[i]
		wg.Go(func() {
			var tk Ticket
			errs[i] = l.Take(bg, pol, subj, 0, &tk)
		})
		waitFor(t, time.Second, "check queued", func() bool { n, _ := l.rs.queued(); return n == i+1 })
	}
	resume()
	wg.Wait()
	var ref *Refused
	if !errors.As(errs[0], &ref) || ref.Policy != "key:team-a" {
		t.Fatalf("team-a's request: %v, want refused by its key's limit", errs[0])
	}
	barrier(t, l) // the endpoint's charge given back
	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer rc.Close()
	if v, err := rc.Exists(bg, bucketKey(x, alice, 0)).Result(); err != nil || v != 0 {
		t.Fatalf("the endpoint's bucket in Redis: exists %d %v, want full", v, err)
	}
	if err := l.Take(bg, x, bob, 0, &tk); err != nil {
		t.Errorf("the endpoint's bucket is full in Redis, yet team-b's request is refused: %v (retry-after %v, %d refused locally)",
			err, tk.RetryAfter.Round(time.Second), l.Stats().RefusedLocally)
	}
}

// A cached refusal of a bucket is dropped as soon as capacity is queued back to it (an
// undo, prefetched units given back, a compensation): the next request asks Redis.
func TestRefusalForgottenWhenCapacityIsGivenBack(t *testing.T) {
	srv := redistest.Start(t)
	l := newRedisLimiter(t, Config{Redis: RedisConfig{URL: srv.URL()}, Prefetch: durationPtr(0)})
	pol := mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 1, Window: "hour"})
	var tk Ticket
	if err := l.Take(bg, pol, alice, 0, &tk); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := l.Take(bg, pol, alice, 0, &tk); err == nil {
			t.Fatal("second request admitted")
		}
	}
	if got := l.Stats().RefusedLocally; got != 1 {
		t.Fatalf("refused locally %d, want the refusal cached", got)
	}
	pol.locate(alice, 0, &tk)
	l.rs.mu.Lock()
	l.rs.returningLocked(keyID{tk.tag[0], tk.bucket[0]})
	l.rs.mu.Unlock()
	trips := l.Stats().RoundTrips
	if err := l.Take(bg, pol, alice, 0, &tk); err == nil {
		t.Fatal("admitted, though nothing came back in Redis")
	}
	if s := l.Stats(); s.RoundTrips == trips || s.RefusedLocally != 1 {
		t.Errorf("round trips %d -> %d, refused locally %d: want the request checked in Redis", trips, s.RoundTrips, s.RefusedLocally)
	}
}
