package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestCacheRemoteSeries: a Redis store's series (its failed lookups, its stores by
// outcome) exist at 0 once CacheRemote gave them, only for that endpoint, count what
// they are told, and go with the cache's other series.
func TestCacheRemoteSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	c := m.Cache("embed")
	mem := m.Cache("chat")
	// Before CacheRemote an error counts as a miss and a store as nothing.
	mem.Request(CacheError)
	mem.Store(CacheStored)
	m.CacheRemote(c)
	m.CacheRemote(c)
	fams := scrape(t, reg, "")
	if hasSeries(fams, "tollgate_cache_requests_total", map[string]string{"endpoint": "chat", "result": "error"}) ||
		hasSeries(fams, "tollgate_cache_stores_total", map[string]string{"endpoint": "chat", "result": "stored"}) {
		t.Error("a memory store has a Redis store's series")
	}
	if got := value(series(t, fams, "tollgate_cache_requests_total", map[string]string{"endpoint": "chat", "result": "miss"})); got != 1 {
		t.Errorf("an error on a memory store counted %v misses, want 1", got)
	}
	for _, r := range []string{"stored", "stale", "dropped", "error"} {
		if got := value(series(t, fams, "tollgate_cache_stores_total", map[string]string{"endpoint": "embed", "result": r})); got != 0 {
			t.Errorf("stores %s = %v at the start", r, got)
		}
	}
	c.Request(CacheError)
	c.Store(CacheStored)
	c.Store(CacheStored)
	c.Store(CacheDropped)
	c.Store(CacheStore(200))
	fams = scrape(t, reg, "")
	for _, w := range []struct {
		name, result string
		v            float64
	}{
		{"tollgate_cache_requests_total", "error", 1}, {"tollgate_cache_stores_total", "stored", 2},
		{"tollgate_cache_stores_total", "dropped", 1}, {"tollgate_cache_stores_total", "error", 1}, {"tollgate_cache_stores_total", "stale", 0},
	} {
		if got := value(series(t, fams, w.name, map[string]string{"endpoint": "embed", "result": w.result})); got != w.v {
			t.Errorf("%s{result=%s} = %v, want %v", w.name, w.result, got, w.v)
		}
	}
	m.DropCache("embed")
	m.now = func() time.Time { return time.Now().Add(removedKeep) }
	scrape(t, reg, "")
	fams = scrape(t, reg, "")
	if hasSeries(fams, "tollgate_cache_stores_total", map[string]string{"endpoint": "embed", "result": "stored"}) {
		t.Error("stores series left after DropCache")
	}
}

// TestCacheRemoteAllocs: counting a Redis store's outcomes allocates nothing.
func TestCacheRemoteAllocs(t *testing.T) {
	m := New(prometheus.NewRegistry())
	c := m.Cache("embed")
	m.CacheRemote(c)
	if n := testing.AllocsPerRun(100, func() {
		c.Request(CacheError)
		c.Store(CacheStored)
	}); n != 0 {
		t.Fatalf("%.1f allocations", n)
	}
}
