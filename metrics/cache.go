package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// cacheVecs are the collectors of the endpoints' answer caches.
type cacheVecs struct {
	requests  *prometheus.CounterVec
	bytes     *prometheus.GaugeVec
	entries   *prometheus.GaugeVec
	evictions *prometheus.CounterVec
}

func newCacheVecs(reg prometheus.Registerer) cacheVecs {
	return cacheVecs{
		requests: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_cache_requests_total",
			Help: "Requests on an endpoint with an answer cache, by result: hit (answered from the cache), miss (looked up and not found) or bypass (not looked up, or not answered from it: a stream, a Responses API call, Cache-Control no-cache or no-store, a request the limits refused).",
		}, []string{"endpoint", "result"})),
		bytes: register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tollgate_cache_bytes",
			Help: "Bytes an endpoint's answer cache holds on this replica: request bodies, answers and each entry's bookkeeping.",
		}, []string{"endpoint"})),
		entries: register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tollgate_cache_entries",
			Help: "Answers an endpoint's answer cache holds on this replica.",
		}, []string{"endpoint"})),
		evictions: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_cache_evictions_total",
			Help: "Answers dropped from an endpoint's answer cache, by reason: size (the least recently used, to stay under max_bytes) or expired (past its ttl).",
		}, []string{"endpoint", "reason"})),
	}
}

// CacheResult is what an endpoint's answer cache did for one request.
type CacheResult uint8

// The results, the values of tollgate_cache_requests_total's result label.
const (
	CacheMiss   CacheResult = iota // looked up and not found: the upstream answered
	CacheHit                       // answered from the cache
	CacheBypass                    // not looked up
	numCacheResults
)

var cacheResultNames = [numCacheResults]string{"miss", "hit", "bypass"}

// String is the result's label value.
func (r CacheResult) String() string {
	if r >= numCacheResults {
		return cacheResultNames[CacheMiss]
	}
	return cacheResultNames[r]
}

// Cache holds the series of one endpoint's answer cache, every one of them there
// at 0 from the start. Its methods do not allocate.
type Cache struct {
	requests          [numCacheResults]prometheus.Counter
	bytes, entries    prometheus.Gauge
	bySize, byExpired prometheus.Counter
	endpoint          string
	hold
}

// Cache returns the series of endpoint's answer cache, created when it has none. They
// stay until DropCache: the cache outlives the configs that keep it. Asked for again
// after DropCache, while they are kept for their last scrape, they go on counting.
func (m *Metrics) Cache(endpoint string) *Cache {
	m.refMu.Lock()
	defer m.refMu.Unlock()
	if c := m.cacheSets[endpoint]; c != nil {
		m.take(&c.hold)
		return c
	}
	v := &m.cache
	c := &Cache{
		bytes:     v.bytes.WithLabelValues(endpoint),
		entries:   v.entries.WithLabelValues(endpoint),
		bySize:    v.evictions.WithLabelValues(endpoint, "size"),
		byExpired: v.evictions.WithLabelValues(endpoint, "expired"),
		endpoint:  endpoint,
	}
	for r := range numCacheResults {
		c.requests[r] = v.requests.WithLabelValues(endpoint, r.String())
	}
	m.cacheSets[endpoint] = c
	m.take(&c.hold)
	return c
}

// DropCache lets go of the series of endpoint's answer cache, once the running config
// has none for it: it holds nothing from then on, and its series go as a removed
// route's do, at once when they counted nothing, else removedKeep later, so that
// Prometheus scrapes the last counts (requests still running on the replaced config
// included).
func (m *Metrics) DropCache(endpoint string) {
	m.refMu.Lock()
	defer m.refMu.Unlock()
	c := m.cacheSets[endpoint]
	if c == nil || c.held == 0 {
		return
	}
	c.bytes.Set(0)
	c.entries.Set(0)
	m.letGo(c)
	m.sweep()
}

func (c *Cache) counted() bool {
	return counted(c.requests[CacheMiss], c.requests[CacheHit], c.requests[CacheBypass], c.bySize, c.byExpired)
}

func (c *Cache) remove(m *Metrics) {
	delete(m.cacheSets, c.endpoint)
	v := &m.cache
	for r := range numCacheResults {
		v.requests.DeleteLabelValues(c.endpoint, r.String())
	}
	v.bytes.DeleteLabelValues(c.endpoint)
	v.entries.DeleteLabelValues(c.endpoint)
	v.evictions.DeleteLabelValues(c.endpoint, "size")
	v.evictions.DeleteLabelValues(c.endpoint, "expired")
}

// Request counts one request on the endpoint by what the cache did for it.
func (c *Cache) Request(r CacheResult) {
	if r >= numCacheResults {
		r = CacheMiss
	}
	c.requests[r].Inc()
}

// Held sets what the cache holds: its bytes and its entries.
func (c *Cache) Held(bytes, entries int64) {
	c.bytes.Set(float64(bytes))
	c.entries.Set(float64(entries))
}

// Evicted counts n entries dropped, past their ttl when expired, else to make room.
func (c *Cache) Evicted(n int, expired bool) {
	if n <= 0 {
		return
	}
	if expired {
		c.byExpired.Add(float64(n))
		return
	}
	c.bySize.Add(float64(n))
}
