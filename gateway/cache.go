package gateway

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cespare/xxhash/v2"
	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/internal/jsonscan"
	"github.com/tollgate/tollgate/metrics"
	"github.com/tollgate/tollgate/providers"
	"github.com/tollgate/tollgate/tracing"
)

// CacheConfig is an endpoint's `cache:`: its 200 answers to requests that do not
// stream, kept for a request repeated byte for byte, in this replica's memory or in
// the limiter's Redis, shared by every replica (cache_redis.go).
type CacheConfig struct {
	// TTL is how long an answer is served from the cache (required; at most 30 days).
	TTL time.Duration `yaml:"ttl"`
	// MaxBytes bounds what the cache holds; the least recently used answers go
	// first to stay under it (default 64MiB).
	MaxBytes Size `yaml:"max_bytes"`
	// MaxEntryBytes is the most one entry (request body and answer) may hold to be
	// kept (default 1MiB).
	MaxEntryBytes Size `yaml:"max_entry_bytes"`
	// Shared lets every key allowed on the endpoint be answered from the entries of
	// the others; by default each key has its own.
	Shared bool `yaml:"shared"`
	// Store is memory (the default: this replica's) or redis (limiter.redis, shared
	// by every replica; MaxBytes does not apply: Redis's maxmemory bounds it).
	Store string `yaml:"store"`
}

// The values of CacheConfig.Store.
const (
	cacheStoreMemory = "memory"
	cacheStoreRedis  = "redis"
)

const (
	defaultCacheBytes      = 64 << 20
	defaultCacheEntryBytes = 1 << 20
	maxCacheTTL            = 30 * 24 * time.Hour
)

// cacheDefaults fills in the sizes endpoint i's cache leaves out. One written 0 is
// refused (cacheProblems), not taken for left out.
func (c *Config) cacheDefaults(i int) {
	cc := c.Endpoints[i].Cache
	if cc == nil {
		return
	}
	p := "endpoints[" + strconv.Itoa(i) + "].cache."
	if cc.Store == "" && !c.holds(p+"store") {
		cc.Store = cacheStoreMemory
	}
	if cc.MaxBytes == 0 && !c.holds(p+"max_bytes") && cc.Store != cacheStoreRedis {
		cc.MaxBytes = defaultCacheBytes
	}
	if cc.MaxEntryBytes == 0 && !c.holds(p+"max_entry_bytes") {
		cc.MaxEntryBytes = defaultCacheEntryBytes
	}
}

// cacheProblems checks the cache of the endpoint at key path p.
func (c *Config) cacheProblems(p string, cc *CacheConfig, add func(key, problem string)) {
	if cc == nil {
		return
	}
	p += ".cache"
	switch {
	case cc.TTL == 0 && !c.holds(p+".ttl"):
		add(p+".ttl", "is required: how long an answer is served from the cache (e.g. 1h)")
	case cc.TTL <= 0:
		add(p+".ttl", "must be more than 0")
	case cc.TTL > maxCacheTTL:
		add(p+".ttl", "must be at most 720h (30 days)")
	}
	redis := cc.Store == cacheStoreRedis
	switch cc.Store {
	case cacheStoreMemory:
	case cacheStoreRedis:
		if !c.Limiter.Redis.Given() {
			add(p+".store", "redis keeps the cache in the limiter's Redis, and limiter.redis is not set: add limiter: {redis: {url: ...}} (or addrs, or sentinel)")
		}
		if c.holds(p + ".max_bytes") {
			add(p+".max_bytes", "does not apply to store: redis: Redis's maxmemory (with an LRU maxmemory-policy) bounds what it holds; remove it")
		}
		if cc.TTL > 0 && cc.TTL < time.Millisecond {
			// Redis expires entries in whole milliseconds (PX).
			add(p+".ttl", "must be at least 1ms with store: redis")
		}
		if cc.MaxEntryBytes > cacheQueueBytes {
			// A larger entry could never wait in the store queue.
			add(p+".max_entry_bytes", "must be at most 64MiB with store: redis")
		}
	default:
		add(p+".store", "must be memory or redis")
	}
	switch {
	case cc.MaxEntryBytes <= 0:
		add(p+".max_entry_bytes", "must be more than 0")
	case !redis && cc.MaxBytes < cc.MaxEntryBytes:
		add(p+".max_bytes", "must be at least max_entry_bytes ("+strconv.FormatInt(int64(cc.MaxEntryBytes), 10)+" bytes): the cache holds at least one entry")
	}
}

// cacheResult is what an endpoint's answer cache did for a request: its
// x-tollgate-cache header, access log field, span attribute and metric label.
type cacheResult uint8

const (
	cacheNone   cacheResult = iota // the endpoint has no cache
	cacheMiss                      // looked up and not found
	cacheHit                       // answered from the cache
	cacheBypass                    // not looked up: a stream, a Responses call, anthropic-beta, two anthropic-version lines, Cache-Control, a refusal before
	cacheError                     // a Redis store's lookup failed: a miss to the client
)

var (
	cacheResultNames = [...]string{cacheNone: "", cacheMiss: "miss", cacheHit: "hit", cacheBypass: "bypass", cacheError: "error"}
	// A lookup that failed is a miss to the client: looked up, not answered from it.
	cacheResultBytes = [...][]byte{cacheNone: nil, cacheMiss: []byte("miss"), cacheHit: []byte("hit"), cacheBypass: []byte("bypass"), cacheError: []byte("miss")}
	cacheResultStats = [...]metrics.CacheResult{cacheMiss: metrics.CacheMiss, cacheHit: metrics.CacheHit, cacheBypass: metrics.CacheBypass, cacheError: metrics.CacheError}

	hdrCache   = []byte("X-Tollgate-Cache")
	hdrAge     = []byte("Age")
	strNoStore = []byte("no-store")
)

// hdrAnthropicBeta names the Anthropic API betas a request asks for.
const hdrAnthropicBeta = "Anthropic-Beta"

// answerCache is one endpoint's answers, kept in memory: an LRU by bytes under
// maxBytes, each entry served until its ttl has passed. It outlives the runtimes that
// keep its settings (carryCaches). An entry is never written once stored: a hit is
// answered from its bytes as they are.
type answerCache struct {
	ttl         time.Duration
	maxBytes    int64
	maxEntry    int64
	shared      bool
	fingerprint string
	m           *metrics.Cache
	// remote holds the entries in Redis (store: redis), nil for memory: the rest
	// of the cache's memory then stays empty, and retired and gen apply to this
	// replica's requests.
	remote *remoteCache

	// retired is set once no runtime to come uses the cache: it then neither finds
	// nor keeps anything, and its memory goes.
	retired atomic.Bool
	// gen counts the purges: an answer asked for under an earlier one is not kept.
	gen atomic.Uint64

	mu sync.Mutex
	// now is the clock (tests set their own, under mu).
	now    func() time.Time
	byHash map[uint64]*cacheEntry
	// mru and lru are the ends of the recency list; oldest and newest those of the
	// list by the time stored, which with one ttl for all is the order they expire in.
	mru, lru       *cacheEntry
	oldest, newest *cacheEntry
	bytes, n       int64
	// evicted and expire count the entries dropped since the metrics last had them.
	evicted, expire int
}

// cacheEntry is one answer and the request it answers.
type cacheEntry struct {
	hash  uint64
	owner string
	// route is the backend of the route the request was planned on: an answer a
	// canary made is not served to a request routed to the stable backend, nor
	// once the canary is rolled back.
	route string
	// version is the client's anthropic-version (empty without one), which goes
	// upstream and picks the shape of the answer to the same body. body, version,
	// answer and ctype view one buffer, never written after it was filled.
	body, version, answer, ctype []byte

	backend string
	stored  time.Time
	size    int64
	// prev and next link the recency list (toward mru and toward lru), older and
	// newer the list by the time stored.
	prev, next   *cacheEntry
	older, newer *cacheEntry
}

// cacheEntryOverhead is what an entry costs besides its bytes: itself and its place in
// the map. Counting it keeps a cache of many small entries within max_bytes too.
const cacheEntryOverhead = int64(unsafe.Sizeof(cacheEntry{})) + 32

func newAnswerCache(cc *CacheConfig, fingerprint string, m *metrics.Cache) *answerCache {
	c := &answerCache{ttl: cc.TTL, maxBytes: int64(cc.MaxBytes), maxEntry: int64(cc.MaxEntryBytes),
		shared: cc.Shared, fingerprint: fingerprint, m: m, now: time.Now, byHash: map[uint64]*cacheEntry{}}
	m.Held(0, 0)
	return c
}

// cacheHash picks the entry of a request by body from owner on route, sent with
// anthropic-version version. A collision only costs a miss: the entry's owner, route,
// version and body are compared whole before it is served.
func cacheHash(owner, route string, version, body []byte) uint64 {
	h := xxhash.Sum64(body)
	if owner != "" {
		h ^= xxhash.Sum64String(owner) * 0x9e3779b97f4a7c15
	}
	if len(version) > 0 {
		h ^= xxhash.Sum64(version) * 0x165667b19e3779f9
	}
	return h ^ xxhash.Sum64String(route)*0xc2b2ae3d27d4eb4f
}

// get finds the answer to body from owner on route, sent with version, and its age.
// An expired one is dropped.
func (c *answerCache) get(owner, route string, version, body []byte) (*cacheEntry, time.Duration) {
	h := cacheHash(owner, route, version, body)
	c.mu.Lock()
	if c.retired.Load() {
		c.mu.Unlock()
		return nil, 0
	}
	now := c.now()
	c.expireOld(now)
	e := c.byHash[h]
	if e != nil {
		c.unlinkRecent(e)
		c.pushRecent(e)
	}
	c.flush()
	c.mu.Unlock()
	// Compared outside the lock: the entry's bytes are never written, and a body
	// of megabytes must not hold every other request of the endpoint.
	if e == nil || e.owner != owner || e.route != route || !bytes.Equal(e.version, version) || !bytes.Equal(e.body, body) {
		return nil, 0
	}
	return e, now.Sub(e.stored)
}

// put keeps answer (of content type ctype, made by backend) for body from owner on
// route, sent with version, copying them, unless the entry would be over max_entry_bytes or the cache
// was purged since gen was read (the request's lookup): an answer asked for before a
// purge is not kept after it. An entry with the same hash (the same request stored
// again, or the rare collision) is replaced.
func (c *answerCache) put(owner, route string, version, body, answer, ctype []byte, backend string, gen uint64) bool {
	size := int64(len(owner)+len(version)+len(body)+len(answer)+len(ctype)) + cacheEntryOverhead
	if size > c.maxEntry || c.retired.Load() {
		return false
	}
	buf := make([]byte, len(body)+len(version)+len(answer)+len(ctype))
	b := copy(buf, body)
	v := b + copy(buf[b:], version)
	n := v + copy(buf[v:], answer)
	copy(buf[n:], ctype)
	e := &cacheEntry{hash: cacheHash(owner, route, version, body), owner: owner, route: route, backend: backend, size: size,
		body: buf[:b:b], version: buf[b:v:v], answer: buf[v:n:n], ctype: buf[n:]}
	if bytes.Equal(ctype, strJSON) {
		// The usual type needs no bytes of its own.
		e.ctype = strJSON
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.retired.Load() || c.gen.Load() != gen {
		return false
	}
	e.stored = c.now()
	c.expireOld(e.stored)
	if old := c.byHash[e.hash]; old != nil {
		c.remove(old)
	}
	c.byHash[e.hash] = e
	c.pushRecent(e)
	e.older = c.newest
	if c.newest != nil {
		c.newest.newer = e
	} else {
		c.oldest = e
	}
	c.newest = e
	c.bytes += e.size
	c.n++
	for c.bytes > c.maxBytes && c.lru != nil {
		c.remove(c.lru)
		c.evicted++
	}
	c.flush()
	return true
}

// purge drops every entry and reports how many there were; answers asked for
// before it are not kept (gen).
func (c *answerCache) purge() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen.Add(1)
	n := c.n
	c.clear()
	if !c.retired.Load() {
		c.m.Held(0, 0)
	}
	return n
}

// retire ends the cache: a reload left no runtime that keeps it.
func (c *answerCache) retire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.retired.Store(true)
	c.clear()
}

func (c *answerCache) clear() {
	clear(c.byHash)
	c.mru, c.lru, c.oldest, c.newest = nil, nil, nil, nil
	c.bytes, c.n = 0, 0
}

// still reports whether entry e, found by a lookup made under purge count gen, may
// still be served: the cache not purged nor retired since, the entry within its ttl.
func (c *answerCache) still(e *cacheEntry, gen uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.retired.Load() && c.gen.Load() == gen && c.now().Sub(e.stored) < c.ttl
}

// expireDue drops the entries whose ttl has passed, for a request that neither
// looked up nor kept anything (a stream, no-store, a refusal): the next request on
// the endpoint frees them, whatever it is.
func (c *answerCache) expireDue() {
	if c.remote != nil {
		// Redis expires them.
		return
	}
	c.mu.Lock()
	if !c.retired.Load() && c.oldest != nil {
		c.expireOld(c.now())
		c.flush()
	}
	c.mu.Unlock()
}

// expireOld drops the entries whose ttl has passed at now, oldest first; the caller
// holds mu.
func (c *answerCache) expireOld(now time.Time) {
	for e := c.oldest; e != nil && now.Sub(e.stored) >= c.ttl; e = c.oldest {
		c.remove(e)
		c.expire++
	}
}

// flush hands the counts of what changed to the metrics; the caller holds mu. A
// retired cache's series belong to its successor, if any.
func (c *answerCache) flush() {
	if c.retired.Load() {
		c.evicted, c.expire = 0, 0
		return
	}
	if c.evicted > 0 || c.expire > 0 {
		c.m.Evicted(c.evicted, false)
		c.m.Evicted(c.expire, true)
		c.evicted, c.expire = 0, 0
	}
	c.m.Held(c.bytes, c.n)
}

// remove unlinks e from the cache; the caller holds mu.
func (c *answerCache) remove(e *cacheEntry) {
	if c.byHash[e.hash] == e {
		delete(c.byHash, e.hash)
	}
	c.unlinkRecent(e)
	if e.older != nil {
		e.older.newer = e.newer
	} else {
		c.oldest = e.newer
	}
	if e.newer != nil {
		e.newer.older = e.older
	} else {
		c.newest = e.older
	}
	e.older, e.newer = nil, nil
	c.bytes -= e.size
	c.n--
}

func (c *answerCache) unlinkRecent(e *cacheEntry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		c.mru = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		c.lru = e.prev
	}
	e.prev, e.next = nil, nil
}

func (c *answerCache) pushRecent(e *cacheEntry) {
	e.next = c.mru
	if c.mru != nil {
		c.mru.prev = e
	} else {
		c.lru = e
	}
	c.mru = e
}

// cacheDecide sets what the endpoint's cache does for the request once its call is
// known: a stream, a Responses API call (which creates a stored response), a token
// count or conversion (an answer cheaper than a lookup's bookkeeping) or a request
// with anthropic-beta, or with anthropic-version on two lines, neither reads nor
// fills it; Cache-Control no-store neither, no-cache skips the lookup and keeps the
// fresh answer. The client's anthropic-version is part of the key (cacheVersion). The
// lookup itself waits for the limits (serveCached).
func (r *request) cacheDecide(ctx *fasthttp.RequestCtx) {
	if r.call.Stream || r.call.Kind == providers.Responses || r.call.Kind.Tokenizer() || r.call.Kind.Form() {
		return
	}
	if hasLine(&ctx.Request.Header, hdrAnthropicBeta) {
		// Forwarded upstream, where Anthropic's betas change what the answer holds
		// (interleaved thinking, context management ...): the same body under other
		// betas is another request, which the body alone does not tell apart.
		return
	}
	v, ok := anthropicVersion(&ctx.Request.Header)
	if !ok {
		return
	}
	r.cacheVersion = v
	r.cacheGen = r.ep.cache.gen.Load()
	noCache, noStore := cacheDirectives(&ctx.Request.Header)
	r.cacheLook, r.cacheFill = !noCache && !noStore, !noStore
}

// anthropicVersion is the request's anthropic-version, nil when it sends none: it
// goes upstream (a Messages API call's body is written for it, and Anthropic answers
// in its shape), so an answer is kept and served under it. ok is false for a request
// sending it on two lines or more, which is not looked up: which one the upstream
// reads is its own choice. The value views the request's header.
func anthropicVersion(h *fasthttp.RequestHeader) (v []byte, ok bool) {
	for _, l := range h.PeekAll(hdrAnthropicVersion) {
		if v != nil {
			return nil, false
		}
		v = l
	}
	return v, true
}

// hasLine reports whether the request has a line of header name that is not empty.
func hasLine(h *fasthttp.RequestHeader, name string) bool {
	for _, v := range h.PeekAll(name) {
		if len(bytes.Trim(v, " \t")) > 0 {
			return true
		}
	}
	return false
}

// cacheDirectives reads the request's Cache-Control lines (one list, RFC 9111 5.2)
// for no-cache and no-store, in any case; a directive's argument is ignored.
func cacheDirectives(h *fasthttp.RequestHeader) (noCache, noStore bool) {
	// Every line, an empty first one included (PeekAll reuses the header's buffer).
	for _, v := range h.PeekAll(fasthttp.HeaderCacheControl) {
		for len(v) > 0 {
			d := v
			if i := bytes.IndexByte(v, ','); i >= 0 {
				d, v = v[:i], v[i+1:]
			} else {
				v = nil
			}
			if i := bytes.IndexByte(d, '='); i >= 0 {
				d = d[:i]
			}
			d = bytes.Trim(d, " \t")
			noCache = noCache || bytes.EqualFold(d, strNoCache)
			noStore = noStore || bytes.EqualFold(d, strNoStore)
		}
	}
	return noCache, noStore
}

// cacheOwner is whose entries the request reads and fills: its key's, or everyone's
// with shared: true (or without keys). A score call's entries are kept apart from a
// rerank's on the same endpoint, since a body both APIs take (vLLM ignores members it
// does not know) is answered in two shapes: their owner is the key's name after
// scoreOwnerShared, a byte no key name holds. A Messages API call's are kept apart
// from a chat call's so too (a body may be both), after messagesOwnerShared.
func (r *request) cacheOwner() string {
	shared := r.key == nil || r.ep.cache.shared
	switch r.call.Kind {
	case providers.Score:
		if shared {
			return scoreOwnerShared
		}
		return r.key.scoreOwner
	case providers.Messages:
		if shared {
			return messagesOwnerShared
		}
		return r.key.messagesOwner
	}
	if shared {
		return ""
	}
	return r.key.name
}

// scoreOwnerShared begins the owner of every score answer in an answer cache: 0xff
// begins no UTF-8 string, and key names are UTF-8, as the config is;
// messagesOwnerShared, 0xfe, every Messages API answer's.
const (
	scoreOwnerShared    = "\xff"
	messagesOwnerShared = "\xfe"
)

// lookupCache finds the request's answer in the endpoint's cache, nil (a miss) when
// it holds none.
func (r *request) lookupCache() (*cacheEntry, time.Duration) {
	if r.ep.cache.remote != nil {
		return r.lookupRemote(r.ep.cache)
	}
	e, age := r.ep.cache.get(r.cacheOwner(), r.cacheRoute, r.cacheVersion, r.body)
	if e == nil {
		r.cacheRes = cacheMiss
	}
	return e, age
}

// serveCached answers the request from the entry lookupCache found: the stored bytes
// as they are (not copied), with this request's own headers and the backend that made
// the answer. No upstream is called and no token counted.
func (r *request) serveCached(ctx *fasthttp.RequestCtx) {
	e, age := r.cacheEntry, r.cacheAge
	r.cacheRes, r.cacheFill = cacheHit, false
	r.backend, r.variant = e.backend, ""
	resp := &ctx.Response
	resp.SetStatusCode(fasthttp.StatusOK)
	resp.Header.SetContentTypeBytes(e.ctype)
	resp.SetBodyRaw(e.answer)
	resp.Header.SetCanonical(hdrAge, appendInt(r.out[:0], int64(age/time.Second)))
	r.setHeaders(ctx)
	r.answered = time.Now()
}

// fillCache keeps the answer just given, when it is one to keep: a 200 an upstream
// gave, which holds no error object and no refusal.
func (r *request) fillCache(ctx *fasthttp.RequestCtx) {
	resp := &ctx.Response
	if resp.StatusCode() != fasthttp.StatusOK || r.attempts == 0 || r.be == nil || r.usage.Paused {
		// A paused turn is partial: sent again, the request starts it over.
		return
	}
	answer := resp.Body()
	if !cacheableAnswer(answer) {
		return
	}
	if c := r.ep.cache; c.remote != nil {
		c.putRemote(r.cacheOwner(), r.cacheRoute, r.cacheVersion, r.body, answer, resp.Header.ContentType(), r.backend, r.cacheGen, r.cacheStoreGen)
		return
	}
	r.ep.cache.put(r.cacheOwner(), r.cacheRoute, r.cacheVersion, r.body, answer, resp.Header.ContentType(), r.backend, r.cacheGen)
}

// cacheableAnswer reports whether a 200's body may be served again: one JSON object
// without a non-null "error" (an upstream that answers its failures with a 200), and
// none of whose choices is a refusal (a message's "refusal", or finish_reason
// content_filter: the model declined or its output was filtered, which a retry may
// not repeat; a Messages API answer's stop_reason refusal, or pause_turn) or a failure (a choice's own "error", or finish_reason error: OpenRouter
// reports a generation that failed part way so).
func cacheableAnswer(body []byte) bool {
	var it jsonscan.Iter
	if it.Reset(body) != nil {
		return false
	}
	for {
		k, v, ok := it.Next()
		if !ok {
			return it.Err() == nil && jsonscan.SkipSpace(body, it.End()) == len(body)
		}
		switch string(k) {
		case "error":
			if !jsonscan.IsNull(v) {
				return false
			}
		case "choices":
			if refused(v) {
				return false
			}
		case "stop_reason":
			// A Messages API answer Anthropic paused in a long turn (partial: sent
			// again, the request starts the turn over) or a refusal.
			if string(v) == `"pause_turn"` || string(v) == `"refusal"` {
				return false
			}
		}
	}
}

// refused reports whether a choice of choices is a refusal.
func refused(choices []byte) bool {
	var a jsonscan.Array
	if !a.Reset(choices) {
		return false
	}
	for {
		c, ok := a.Next()
		if !ok {
			return false
		}
		if f, _ := jsonscan.Field(c, "finish_reason"); string(f) == `"content_filter"` || string(f) == `"error"` {
			return true
		}
		if e, ok := jsonscan.Field(c, "error"); ok && !jsonscan.IsNull(e) {
			return true
		}
		if m, ok := jsonscan.Field(c, "message"); ok {
			if rf, ok := jsonscan.Field(m, "refusal"); ok && !jsonscan.IsNull(rf) && string(rf) != `""` {
				return true
			}
		}
	}
}

// setCacheHeader says on the answer what the cache did for it.
func (r *request) setCacheHeader(h *fasthttp.ResponseHeader) {
	if r.cacheRes != cacheNone {
		h.SetCanonical(hdrCache, cacheResultBytes[r.cacheRes])
	}
}

// noteCache counts what the cache did for the request and puts it on its span.
func (r *request) noteCache() {
	if r.cacheRes == cacheNone || r.ep == nil || r.ep.cache == nil {
		return
	}
	if r.cacheRes == cacheBypass {
		r.ep.cache.expireDue()
	}
	r.ep.cache.m.Request(cacheResultStats[r.cacheRes])
	if sp := r.span; sp != nil && sp.IsRecording() {
		sp.SetAttributes(tracing.KeyCache.String(cacheResultNames[r.cacheRes]))
	}
}

// carryCaches gives rt's endpoints their caches as a reload installs it: an endpoint
// whose cache settings, type, backends and their models old had too keeps its cache
// and what it holds; any other with a cache starts one empty. The caches old had
// that rt does not keep are retired first (their last requests on old find nothing
// and keep nothing, so their counts cannot overwrite a successor's), and the series
// of an endpoint left without one are removed.
func carryCaches(old, rt *runtime, m *metrics.Metrics) {
	prevOf := func(name string) *answerCache {
		if old == nil {
			return nil
		}
		if oe := old.endpoints[name]; oe != nil {
			return oe.cache
		}
		return nil
	}
	kept := map[*answerCache]bool{}
	fps := make([]string, len(rt.cfg.Endpoints))
	for i := range rt.cfg.Endpoints {
		ec := &rt.cfg.Endpoints[i]
		if ec.Cache == nil || rt.endpoints[ec.Name] == nil {
			continue
		}
		fps[i] = cacheFingerprint(rt.cfg, ec)
		if prev := prevOf(ec.Name); prev != nil && prev.fingerprint == fps[i] && prev.client() == rt.cacheClient(ec) {
			kept[prev] = true
		}
	}
	if old != nil {
		for name, oe := range old.endpoints {
			if oe.cache == nil || kept[oe.cache] {
				continue
			}
			oe.cache.retire()
			if ne := rt.cfg.endpointConfig(name); ne == nil || ne.Cache == nil {
				m.DropCache(name)
			}
		}
	}
	for i := range rt.cfg.Endpoints {
		ec := &rt.cfg.Endpoints[i]
		ep := rt.endpoints[ec.Name]
		if ec.Cache == nil || ep == nil {
			continue
		}
		switch prev := prevOf(ec.Name); {
		case prev != nil && kept[prev]:
			ep.cache = prev
		case prev != nil:
			ep.cache = rt.newCache(ec, fps[i], prev.m, m)
		default:
			ep.cache = rt.newCache(ec, fps[i], m.Cache(ec.Name), m)
		}
	}
}

// endpointConfig is the config of the endpoint named name, nil when there is none.
func (c *Config) endpointConfig(name string) *EndpointConfig {
	for i := range c.Endpoints {
		if c.Endpoints[i].Name == name {
			return &c.Endpoints[i]
		}
	}
	return nil
}

// cacheFingerprint is what an endpoint's cached answers depend on: its cache settings,
// its type, and the backends its routes, fallbacks and context fallbacks reach with
// their providers, models and what shapes the requests they are sent (their headers
// by a hash: headersDigest). Weights, retries, limits and the rest may change under a
// cache. It is made as a config loads (carryCaches), never per request.
func cacheFingerprint(cfg *Config, ec *EndpointConfig) string {
	var b strings.Builder
	cc := ec.Cache
	b.WriteString(ec.Type)
	b.WriteString("\x00" + cc.TTL.String() + "\x00" + strconv.FormatInt(int64(cc.MaxBytes), 10) + "\x00" +
		strconv.FormatInt(int64(cc.MaxEntryBytes), 10) + "\x00" + strconv.FormatBool(cc.Shared) + "\x00" + cc.Store)
	backend := func(kind, name string) {
		bc := cfg.Backends[name]
		b.WriteString("\x00" + kind + "\x00" + name + "\x00" + bc.Provider + "\x00" + bc.Model)
		// What shapes the request the backend is sent, and so its answers; not its
		// addresses, which a rollout of its pods changes.
		b.WriteString("\x00" + bc.Deployment + "\x00" + strconv.FormatInt(bc.MaxTokens, 10) + "\x00" + bc.Thinking +
			"\x00" + strings.Join(bc.DropParams, ",") + "\x00" + strconv.FormatBool(bc.CompletionsViaChat) +
			"\x00" + strconv.FormatFloat(bc.CompletionsTemperatureScale, 'g', -1, 64) +
			"\x00" + strconv.FormatFloat(bc.ChatTemperatureScale, 'g', -1, 64))
		if bc.DeveloperRole == providers.DeveloperAsSystem {
			// Left out otherwise: developer_role developer is the default.
			b.WriteString("\x00developer_role:system")
		}
		// A Messages API call goes up translated to chat completions, or natively;
		// Azure's api-version and the anthropic-version sent when the client sends
		// none pick the upstream API's version. Each is left out when not set, so
		// that the fingerprints of backends without them stay as they were.
		if bc.MessagesAPI == providers.MessagesChat {
			b.WriteString("\x00messages_api:chat")
		}
		if bc.APIVersion != "" {
			b.WriteString("\x00api_version:" + bc.APIVersion)
		}
		if bc.AnthropicVersion != "" {
			b.WriteString("\x00anthropic_version:" + bc.AnthropicVersion)
		}
		if h := headersDigest(bc.Headers); h != "" {
			b.WriteString("\x00headers:" + h)
		}
	}
	for _, r := range ec.Routes {
		backend("route", r.Backend)
	}
	for _, f := range ec.Fallbacks {
		backend("fallback", f)
	}
	for _, f := range ec.ContextFallbacks {
		backend("context_fallback", f)
	}
	return b.String()
}

// headersDigest is the SHA-256 (hex) of a backend's headers, "" when it has none
// but credentials: they go upstream with every call and may pick what answers (a
// tenant, a model revision). A hash, so that no value (a header may hold a secret)
// is kept in a fingerprint or a Redis key. Names are taken in lower case and in
// order, as they are one header in any case; Authorization, Proxy-Authorization,
// Api-Key and X-Api-Key are left out, as api_key is: a key rotated keeps the cache.
func headersDigest(headers map[string]string) string {
	names := make([]string, 0, len(headers))
	for k := range headers {
		switch strings.ToLower(k) {
		case "authorization", "proxy-authorization", "api-key", "x-api-key":
			continue
		}
		names = append(names, k)
	}
	if len(names) == 0 {
		return ""
	}
	slices.SortFunc(names, func(a, b string) int { return strings.Compare(strings.ToLower(a), strings.ToLower(b)) })
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for _, k := range names {
		for _, s := range [2]string{strings.ToLower(k), headers[k]} {
			h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
			h.Write([]byte(s))
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// cachedLocalCodes are the statuses of the gateway's own answers on an endpoint with
// a cache: its hits (200), besides endpointCodes.
var cachedLocalCodes = [...]int{200, 400, 429, 503}

// localCodes are the statuses whose counters the series of the gateway's own answers
// on the endpoint of ec have from the start.
func localCodes(ec *EndpointConfig) []int {
	if ec.Cache != nil {
		return cachedLocalCodes[:]
	}
	return endpointCodes[:]
}

// strDelete is the one method /admin/endpoints/{name}/cache takes.
var strDelete = []byte("DELETE")

// purgeCache answers DELETE /admin/endpoints/{name}/cache: it empties the endpoint's
// answer cache on this replica and says how many answers it dropped.
func (s *Server) purgeCache(ctx *fasthttp.RequestCtx, rt *runtime, name string) {
	if !ctx.IsDelete() {
		writeError(&ctx.Response, methodNotAllowed(ctx, strDelete))
		return
	}
	ep := rt.endpoints[name]
	if ep == nil {
		writeError(&ctx.Response, &apiError{404, "invalid_request_error", "endpoint_not_found", "", "No endpoint is named `" + name + "`."})
		return
	}
	if ep.cache == nil {
		writeError(&ctx.Response, &apiError{409, "invalid_request_error", "no_cache", "", "Endpoint `" + name + "` has no cache."})
		return
	}
	if ep.cache.remote != nil {
		s.purgeRemote(ctx, ep.cache, name)
		return
	}
	n := ep.cache.purge()
	s.log.Info("answer cache purged", "endpoint", name, "dropped", n)
	writeJSON(ctx, 200, map[string]any{"endpoint": name, "dropped": n})
}
