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
	stores    *prometheus.CounterVec
}

func newCacheVecs(reg prometheus.Registerer) cacheVecs {
	return cacheVecs{
		requests: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_cache_requests_total",
			Help: "Requests on an endpoint with an answer cache, by result: hit (answered from the cache), miss (looked up and not found), bypass (not looked up, or not answered from it: a stream, a Responses API call, Cache-Control no-cache or no-store, a request the limits refused) or error (store: redis only: the lookup failed or timed out, or was skipped while Redis failed; the upstream answered).",
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
		stores: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_cache_stores_total",
			Help: "Answers an endpoint's Redis answer cache (store: redis) was given to keep, by result: stored (written to Redis), stale (not written: the cache was purged since the request was looked up), dropped (not written: the store queue was full, or the gateway stopped first) or error (Redis failed or timed out).",
		}, []string{"endpoint", "result"})),
	}
}

// CacheResult is what an endpoint's answer cache did for one request.
type CacheResult uint8

// The results, the values of tollgate_cache_requests_total's result label.
const (
	CacheMiss   CacheResult = iota // looked up and not found: the upstream answered
	CacheHit                       // answered from the cache
	CacheBypass                    // not looked up
	CacheError                     // a Redis store's lookup failed: the upstream answered
	numCacheResults
)

var cacheResultNames = [numCacheResults]string{"miss", "hit", "bypass", "error"}

// CacheStore is what became of an answer a Redis answer cache was given to keep.
type CacheStore uint8

// The outcomes, the values of tollgate_cache_stores_total's result label.
const (
	CacheStored  CacheStore = iota // written to Redis
	CacheStale                     // not written: purged since the request's lookup
	CacheDropped                   // not written: the queue was full, or the gateway stopped
	CacheFailed                    // Redis failed or timed out
	numCacheStores
)

var cacheStoreNames = [numCacheStores]string{"stored", "stale", "dropped", "error"}

// String is the outcome's label value.
func (s CacheStore) String() string {
	if s >= numCacheStores {
		return cacheStoreNames[CacheFailed]
	}
	return cacheStoreNames[s]
}

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
	// requests has no error series until CacheRemote.
	requests          [numCacheResults]prometheus.Counter
	bytes, entries    prometheus.Gauge
	bySize, byExpired prometheus.Counter
	// stores are a Redis store's (CacheRemote), nil until then; remote is set
	// once they exist, under refMu.
	stores   [numCacheStores]prometheus.Counter
	remote   bool
	endpoint string
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
	for r := range CacheError {
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

// CacheRemote gives c the series of a Redis store (store: redis): its requests
// whose lookup failed, and its stores by outcome, at 0 from now. A cache that had
// them keeps them.
func (m *Metrics) CacheRemote(c *Cache) {
	m.refMu.Lock()
	defer m.refMu.Unlock()
	if c.remote {
		return
	}
	v := &m.cache
	c.requests[CacheError] = v.requests.WithLabelValues(c.endpoint, CacheError.String())
	for s := range numCacheStores {
		c.stores[s] = v.stores.WithLabelValues(c.endpoint, s.String())
	}
	c.remote = true
}

func (c *Cache) counted() bool {
	ms := []prometheus.Counter{c.requests[CacheMiss], c.requests[CacheHit], c.requests[CacheBypass], c.bySize, c.byExpired}
	if c.remote {
		ms = append(append(ms, c.requests[CacheError]), c.stores[:]...)
	}
	return counted(ms...)
}

func (c *Cache) remove(m *Metrics) {
	delete(m.cacheSets, c.endpoint)
	v := &m.cache
	for r := range numCacheResults {
		v.requests.DeleteLabelValues(c.endpoint, r.String())
	}
	for s := range numCacheStores {
		v.stores.DeleteLabelValues(c.endpoint, s.String())
	}
	v.bytes.DeleteLabelValues(c.endpoint)
	v.entries.DeleteLabelValues(c.endpoint)
	v.evictions.DeleteLabelValues(c.endpoint, "size")
	v.evictions.DeleteLabelValues(c.endpoint, "expired")
}

// Request counts one request on the endpoint by what the cache did for it; an error
// on a cache without a Redis store's series counts as a miss.
func (c *Cache) Request(r CacheResult) {
	if r >= numCacheResults || c.requests[r] == nil {
		r = CacheMiss
	}
	c.requests[r].Inc()
}

// Store counts one answer a Redis store was given to keep, by what became of it;
// nothing on a cache without a Redis store's series.
func (c *Cache) Store(s CacheStore) {
	if s >= numCacheStores {
		s = CacheFailed
	}
	if ctr := c.stores[s]; ctr != nil {
		ctr.Inc()
	}
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
