package gateway

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// GET /admin/keys/{name} holds the runtime it reads from: a reload that replaces the
// limiter (its Redis moved) while the read waits on the old Redis closes the old
// limiter only after the answer, so the key's buckets read from Redis, not
// unavailable.
func TestAdminKeysReadSurvivesLimiterReload(t *testing.T) {
	rds, next := redistest.Start(t), redistest.Start(t)
	_, addr := startMock(t, mockllm.Options{MaxTokens: 16, Seed: 11})
	cfg := func(r *redistest.Server) string {
		return keysConfig(addr, `limiter: {store: redis, redis: {url: "`+r.URL()+`"}, timeout: 5s}
`)
	}
	g := startGateway(t, cfg(rds))
	if l := viewKey(t, g, "team-a").find(t, "key", "", "api_key", "requests"); l.Source != "redis" {
		t.Fatalf("with Redis: %+v", l)
	}
	rds.Pause()
	got := make(chan keyJSON, 1)
	go func() { got <- viewKey(t, g, "team-a") }()
	time.Sleep(300 * time.Millisecond)
	if err := os.WriteFile(g.path, []byte(cfg(next)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if len(got) > 0 {
		t.Fatal("answered while its Redis was paused")
	}
	rds.Resume()
	select {
	case k := <-got:
		if l := k.find(t, "key", "", "api_key", "requests"); l.Source != "redis" {
			t.Fatalf("read across the reload: %+v, want from redis", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("GET /admin/keys/team-a did not answer")
	}
	if strings.Contains(g.logs.String(), "admin keys: limit buckets not read") {
		t.Errorf("a warning of buckets unread:\n%s", g.logs.String())
	}
}
