package gateway

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/limiter"
	"github.com/tollgate/tollgate/metrics"
)

// unitRevocations are the revocations of a replica sharing them through rc, logging
// to the buffer returned, on a clock the test moves.
func unitRevocations(t *testing.T, rc limiter.RedisConfig, now *time.Time) (*revocations, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	rv, err := newRevocations(&Config{Limiter: limiter.Config{Store: "redis", Redis: rc}}, slogTo(logs), metrics.New(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	rv.now = func() time.Time { return *now }
	t.Cleanup(rv.close)
	return rv, logs
}

// known is the names rv applies, sorted.
func (rv *revocations) names() []string {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	var out []string
	for name := range rv.known {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// While Redis does not answer, the polls' failures are logged once per 10 s, each
// line counting the revocations kept and the polls failed since the last; the first
// poll that answers after is logged once. Nothing known is dropped.
func TestRevocationsOutageLogThrottled(t *testing.T) {
	t.Parallel()
	rds := redistest.Start(t)
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	rv, logs := unitRevocations(t, limiter.RedisConfig{URL: rds.URL()}, &now)
	ctx := context.Background()
	for _, name := range []string{"team-a", "team-b"} {
		if _, _, err := rv.revoke(ctx, name, "leaked"); err != nil {
			t.Fatal(err)
		}
	}
	rds.Kill()
	lines := func() []string {
		var out []string
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "key revocations not read from Redis") {
				out = append(out, l)
			}
		}
		return out
	}
	for i := range 10 {
		rv.noteFailure(rv.poll(ctx))
		if n := len(lines()); n != 1 {
			t.Fatalf("poll %d, %v after the first failure: %d lines, want 1", i, time.Duration(i)*time.Second, n)
		}
		now = now.Add(time.Second)
	}
	rv.noteFailure(rv.poll(ctx))
	got := lines()
	if len(got) != 2 || !strings.Contains(got[0], `"revocations":2,"failed_polls":1`) || !strings.Contains(got[1], `"revocations":2,"failed_polls":10`) {
		t.Fatalf("after 10 s: %q", got)
	}
	if names := rv.names(); !slices.Equal(names, []string{"team-a", "team-b"}) {
		t.Errorf("kept %v", names)
	}
	rds.Restart()
	// go-redis dials again in the background after failed dials: the first polls
	// may still fail.
	waitFor(t, func() bool {
		err := rv.poll(ctx)
		rv.noteFailure(err)
		return err == nil
	})
	rv.noteFailure(rv.poll(ctx))
	if n := strings.Count(logs.String(), "key revocations read from Redis again"); n != 1 {
		t.Errorf("%d lines about Redis answering again, want 1", n)
	}
	// Restarted empty: the replica wrote back what it knew.
	if h, err := redistest.Command(rds.Addr(), "HKEYS", revokeHashKey); err != nil || h != "team-a\nteam-b" && h != "team-b\nteam-a" {
		t.Errorf("HKEYS after the restart: %q %v", h, err)
	}
}

// Redis losing its data never restores a key: each replica writes back what it knows
// and they end with the union, a revocation made on the empty Redis before any
// replica noticed included. Replicas in step read nothing but the change count.
func TestRevocationsDataLossUnion(t *testing.T) {
	rds := redistest.Start(t)
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	rc := limiter.RedisConfig{URL: rds.URL()}
	a, alog := unitRevocations(t, rc, &now)
	b, blog := unitRevocations(t, rc, &now)
	ctx := context.Background()
	poll := func(rvs ...*revocations) {
		t.Helper()
		for _, rv := range rvs {
			if err := rv.poll(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	poll(a, b)
	if _, _, err := a.revoke(ctx, "x", "one"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.revoke(ctx, "y", "two"); err != nil {
		t.Fatal(err)
	}
	poll(a, b)
	if !slices.Equal(a.names(), []string{"x", "y"}) || !slices.Equal(b.names(), []string{"x", "y"}) {
		t.Fatalf("before the loss: a %v, b %v", a.names(), b.names())
	}
	if r := b.get("x"); r == nil || r.Reason != "one" || !r.At.Equal(now) {
		t.Errorf("b's x: %+v", r)
	}
	if _, err := redistest.Command(rds.Addr(), "FLUSHALL"); err != nil {
		t.Fatal(err)
	}
	// Revoked on the empty Redis before any replica polled it.
	if _, _, err := a.revoke(ctx, "w", "three"); err != nil {
		t.Fatal(err)
	}
	poll(b, a, b)
	for name, rv := range map[string]*revocations{"a": a, "b": b} {
		if got := rv.names(); !slices.Equal(got, []string{"w", "x", "y"}) {
			t.Errorf("%s after the loss: %v, want w x y", name, got)
		}
	}
	if h, err := redistest.Command(rds.Addr(), "HLEN", revokeHashKey); err != nil || h != "3" {
		t.Errorf("HLEN after the loss: %q %v", h, err)
	}
	if !strings.Contains(alog.String()+blog.String(), "key revocations missing from Redis") {
		t.Error("the write-back was not logged")
	}
	// In step: a poll reads nothing but the change count, and changes nothing.
	before := b.names()
	poll(a, b)
	if !slices.Equal(b.names(), before) || a.n != b.n || a.epoch != b.epoch || a.epoch == "" {
		t.Errorf("in step: a %s/%d, b %s/%d", a.epoch, a.n, b.epoch, b.n)
	}
	// A restore on one reaches the other with its next poll.
	if was, err := b.restore(ctx, "x", true); err != nil || !was {
		t.Fatalf("restore: %v %v", was, err)
	}
	poll(a)
	if got := a.names(); !slices.Equal(got, []string{"w", "y"}) {
		t.Errorf("a after b's restore: %v", got)
	}
	if !strings.Contains(alog.String(), `"msg":"client key restored (shared through Redis): its requests are taken again","key":"x"`) {
		t.Errorf("a did not log the restore it applied: %s", alog.String())
	}
}

// On a Redis Cluster the revocations' two keys share a slot (the {keys} hash tag):
// the scripts that touch both run.
func TestRevocationsOnCluster(t *testing.T) {
	t.Parallel()
	addrs := redistest.StartCluster(t, 3)
	now := time.Now()
	rc := limiter.RedisConfig{Addrs: addrs}
	a, _ := unitRevocations(t, rc, &now)
	b, _ := unitRevocations(t, rc, &now)
	ctx := context.Background()
	if _, _, err := a.revoke(ctx, "team-a", "leaked"); err != nil {
		t.Fatal(err)
	}
	if err := b.poll(ctx); err != nil || b.get("team-a") == nil {
		t.Fatalf("b: %v %v", b.names(), err)
	}
	if was, err := b.restore(ctx, "team-a", true); err != nil || !was {
		t.Fatalf("restore: %v %v", was, err)
	}
	if err := a.poll(ctx); err != nil || a.get("team-a") != nil {
		t.Fatalf("a after the restore: %v %v", a.names(), err)
	}
}
