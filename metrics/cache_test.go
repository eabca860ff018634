package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestCacheSeries: an endpoint's cache series exist at 0 from the start, count what
// they are told, and go after DropCache as a removed route's do (at once when they
// counted nothing, else removedKeep later, for their last scrape); another
// endpoint's stay.
func TestCacheSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	now := time.Unix(1_800_000_000, 0)
	m.now = func() time.Time { return now }
	c := m.Cache("embed")
	m.Cache("chat")
	type want struct {
		name   string
		labels map[string]string
		v      float64
	}
	check := func(wants []want) {
		t.Helper()
		fams := scrape(t, reg, "")
		for _, w := range wants {
			if got := value(series(t, fams, w.name, w.labels)); got != w.v {
				t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.v)
			}
		}
	}
	ep := map[string]string{"endpoint": "embed"}
	result := func(r string) map[string]string { return map[string]string{"endpoint": "embed", "result": r} }
	reason := func(r string) map[string]string { return map[string]string{"endpoint": "embed", "reason": r} }
	check([]want{
		{"tollgate_cache_requests_total", result("hit"), 0}, {"tollgate_cache_requests_total", result("miss"), 0},
		{"tollgate_cache_requests_total", result("bypass"), 0}, {"tollgate_cache_bytes", ep, 0}, {"tollgate_cache_entries", ep, 0},
		{"tollgate_cache_evictions_total", reason("size"), 0}, {"tollgate_cache_evictions_total", reason("expired"), 0},
	})
	c.Request(CacheHit)
	c.Request(CacheHit)
	c.Request(CacheMiss)
	c.Request(CacheBypass)
	c.Held(1234, 3)
	c.Evicted(2, false)
	c.Evicted(1, true)
	c.Evicted(0, true)
	check([]want{
		{"tollgate_cache_requests_total", result("hit"), 2}, {"tollgate_cache_requests_total", result("miss"), 1},
		{"tollgate_cache_requests_total", result("bypass"), 1}, {"tollgate_cache_bytes", ep, 1234}, {"tollgate_cache_entries", ep, 3},
		{"tollgate_cache_evictions_total", reason("size"), 2}, {"tollgate_cache_evictions_total", reason("expired"), 1},
	})
	m.Cache("idle")
	m.DropCache("idle")
	m.DropCache("embed")
	if fams := scrape(t, reg, ""); hasSeries(fams, "tollgate_cache_entries", map[string]string{"endpoint": "idle"}) {
		t.Error("a cache that counted nothing kept its series after DropCache")
	}
	// Kept for their last scrape, holding nothing.
	check([]want{
		{"tollgate_cache_requests_total", result("hit"), 2}, {"tollgate_cache_entries", ep, 0}, {"tollgate_cache_bytes", ep, 0},
	})
	now = now.Add(removedKeep)
	// The sweep runs within a gather, beside the families' own collection: the next
	// one shows its result.
	scrape(t, reg, "")
	fams := scrape(t, reg, "")
	for _, name := range []string{"tollgate_cache_requests_total", "tollgate_cache_bytes", "tollgate_cache_entries", "tollgate_cache_evictions_total"} {
		for _, s := range fams[name].GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "endpoint" && l.GetValue() != "chat" {
					t.Errorf("%s: series of %s left after DropCache", name, l.GetValue())
				}
			}
		}
	}
	if !hasSeries(fams, "tollgate_cache_entries", map[string]string{"endpoint": "chat"}) {
		t.Error("DropCache removed another endpoint's series")
	}
}

// TestCacheAllocs: counting a request and what the cache holds allocates nothing.
func TestCacheAllocs(t *testing.T) {
	c := New(prometheus.NewRegistry()).Cache("embed")
	if n := testing.AllocsPerRun(100, func() {
		c.Request(CacheHit)
		c.Held(10, 1)
		c.Evicted(1, false)
	}); n != 0 {
		t.Fatalf("%.1f allocations", n)
	}
}
