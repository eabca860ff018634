package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash"
	"log/slog"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"
	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/limiter"
	"github.com/tollgate/tollgate/metrics"
)

// An endpoint's answer cache with `store: redis` keeps its entries in the limiter's
// Redis (limiter.redis), shared by every replica. Its keys, all hash-tagged with the
// endpoint's name so that a Cluster keeps them in one slot (the lookup script reads
// two of them), start with tollgate:cache:, which neither the limiter (tg:{...}) nor
// the router (tollgate:router:) uses:
//
//	tollgate:cache:{ENDPOINT}:gen                   the endpoint's generation (INCR by a purge)
//	tollgate:cache:{ENDPOINT}:FP:GEN:SHA256         one entry, expiring at the cache's ttl (PX)
//
// FP is a hash of the cache's fingerprint (cacheFingerprint): replicas on other
// settings, during a rolling reload, never read each other's entries. SHA256 is that
// of the owner (the caller's key name, or none), the backend of the route the request
// was planned on, the client's anthropic-version (or none) and the body as sent; the
// value holds them whole and they are compared on a hit, so a collision never serves
// another request's answer.
const (
	cacheKeyPrefix = "tollgate:cache:{"
	// cacheStoreWorkers write the queued stores; cacheQueueLen and cacheQueueBytes
	// bound what waits for them (a store past either is dropped, and counted).
	cacheStoreWorkers = 4
	cacheQueueLen     = 1024
	cacheQueueBytes   = 64 << 20
	// cacheDrainBound is how long a closing client (the last config using it
	// retired, or the process stopping) writes what is queued; the rest is dropped.
	cacheDrainBound = 2 * time.Second
	// cacheDownFor is how long lookups and stores skip Redis after a lookup failed:
	// while Redis is down or stalled, a replica pays the timeout about once in that
	// time, not once per request.
	cacheDownFor = time.Second
	// cacheLogEvery bounds the gateway's lines about failed lookups and stores: one
	// per interval and kind, counting those it stands for.
	cacheLogEvery = 10 * time.Second
	// cacheValueVersion is the first byte of every value (appendCacheValue): 2 since
	// the value holds the route, 3 since it holds the anthropic-version.
	cacheValueVersion = 3
)

// cacheLookupLua reads the endpoint's generation and the entry under it in one
// round trip: "GEN" when there is none, else "GEN PTTL VALUE" (one bulk string,
// which go-redis reads without an interface per element). KEYS[2] is the prefix of
// the entry's key, under the same hash tag as KEYS[1].
const cacheLookupLua = `
local g = redis.call('GET', KEYS[1]) or '0'
local k = KEYS[2] .. g .. ':' .. ARGV[1]
local v = redis.call('GET', k)
if not v then return g end
return g .. ' ' .. redis.call('PTTL', k) .. ' ' .. v
`

// cacheStoreLua writes an entry under the endpoint's generation, unless the request
// was looked up under another (ARGV[2], empty when it was not looked up): an answer
// asked for before a purge is not kept after it. 1 stored, 0 not.
const cacheStoreLua = `
local g = redis.call('GET', KEYS[1]) or '0'
if ARGV[2] ~= '' and ARGV[2] ~= g then return 0 end
redis.call('SET', KEYS[2] .. g .. ':' .. ARGV[1], ARGV[4], 'PX', ARGV[3])
return 1
`

// The scripts' SHA1s and sources as arguments, boxed once rather than per call:
// EVALSHA, and EVAL when Redis lost the script (a restart, a failover).
var (
	cacheLookupSHA, cacheLookupSrc any = redis.NewScript(cacheLookupLua).Hash(), cacheLookupLua
	cacheStoreSHA, cacheStoreSrc   any = redis.NewScript(cacheStoreLua).Hash(), cacheStoreLua
)

// redisCache is the Redis client shared by every endpoint whose cache says store:
// redis, with the queue their stores go through and the fixed workers that write
// them: no goroutine per request, and a store never delays its client's answer. A
// runtime holds it through rcacheRef; a reload that leaves limiter.redis and
// limiter.timeout as they were shares it, and the last runtime to close it closes it
// (close), writing what is queued first.
type redisCache struct {
	c       redis.UniversalClient
	conf    limiter.RedisConfig
	timeout time.Duration
	log     *slog.Logger

	queue chan *cacheStoreJob
	// queued is the room the stores in queue take, in bytes (cacheQueueBytes).
	queued atomic.Int64
	stop   chan struct{}
	wg     sync.WaitGroup
	closed atomic.Bool
	once   sync.Once

	// downUntil is when (UnixNano) lookups and stores go to Redis again after a
	// failed lookup; 0 while it answers.
	downUntil atomic.Int64
	// lookFail and storeFail throttle the log lines about failures.
	lookFail, storeFail failLog
}

// cacheTimeout bounds each round trip of the Redis answer caches: limiter.timeout,
// as the limit checks that share the Redis.
func cacheTimeout(cfg *Config) time.Duration {
	if cfg.Limiter.Timeout > 0 {
		return cfg.Limiter.Timeout
	}
	return limiter.DefaultTimeout
}

// cachesInRedis reports whether an endpoint of cfg keeps its cache in Redis.
func (c *Config) cachesInRedis() bool {
	for i := range c.Endpoints {
		if cc := c.Endpoints[i].Cache; cc != nil && cc.Store == cacheStoreRedis {
			return true
		}
	}
	return false
}

// newRedisCache opens the client for rc and starts workers store workers behind a
// queue of queueLen answers.
func newRedisCache(rc *limiter.RedisConfig, timeout time.Duration, log *slog.Logger, workers, queueLen int) (*redisCache, error) {
	c, err := rc.Client(timeout)
	if err != nil {
		return nil, err
	}
	q := &redisCache{c: c, conf: *rc, timeout: timeout, log: log,
		queue: make(chan *cacheStoreJob, queueLen), stop: make(chan struct{})}
	if q.log == nil {
		q.log = slog.New(slog.DiscardHandler)
	}
	q.wg.Add(workers)
	for range workers {
		go q.work()
	}
	return q, nil
}

// attachCacheRedis gives rt the Redis answer caches' client when an endpoint of its
// config needs one: cur's when limiter.redis and limiter.timeout are the same, else a
// new one (the old one closes when the last runtime using it does).
func (s *Server) attachCacheRedis(rt, cur *runtime) error {
	cfg := rt.cfg
	if !cfg.cachesInRedis() {
		return nil
	}
	timeout := cacheTimeout(cfg)
	if cur != nil && cur.rcache != nil && cur.rcache.timeout == timeout && reflect.DeepEqual(cur.rcache.conf, cfg.Limiter.Redis) {
		rt.rcache, rt.rcacheRef = cur.rcache, cur.rcacheRef.hold()
		return nil
	}
	q, err := newRedisCache(&cfg.Limiter.Redis, timeout, s.log, cacheStoreWorkers, cacheQueueLen)
	if err != nil {
		return err
	}
	rt.rcache, rt.rcacheRef = q, (&sharedRef{close: q.close}).hold()
	return nil
}

// close stops taking stores, writes those queued (within cacheDrainBound; the rest
// are dropped and counted), stops the workers and closes the client.
func (q *redisCache) close() {
	q.once.Do(func() {
		q.closed.Store(true)
		close(q.stop)
		q.wg.Wait()
		// A store that slipped in past closed (none should: a runtime holds the
		// client while its requests run) is dropped.
		for {
			select {
			case j := <-q.queue:
				q.finish(j, metrics.CacheDropped)
				continue
			default:
			}
			break
		}
		if err := q.c.Close(); err != nil {
			q.log.Warn("answer cache: closing the redis client", "error", err.Error())
		}
	})
}

// up reports whether lookups and stores go to Redis now: not within cacheDownFor of
// a failed lookup.
func (q *redisCache) up() bool {
	d := q.downUntil.Load()
	return d == 0 || time.Now().UnixNano() >= d
}

// lookupFailed notes a failed lookup on endpoint: Redis is skipped for a while, and
// the failure logged unless one was within cacheLogEvery.
func (q *redisCache) lookupFailed(endpoint string, err error) {
	q.downUntil.Store(time.Now().Add(cacheDownFor).UnixNano())
	q.lookFail.fail(q.log, "answer cache: redis lookup failed; answered by the upstream", endpoint, err)
}

// answered notes a lookup Redis answered.
func (q *redisCache) answered() {
	if q.downUntil.Load() != 0 {
		q.downUntil.Store(0)
	}
	q.lookFail.ok(q.log, "answer cache: redis lookups answered again")
}

// failLog logs one kind of failure at most once per cacheLogEvery, saying how many
// it left out, and the first success after a failure it logged. A Redis that fails
// now and then (a lookup timing out each second) logs a failure and a recovery at
// most once per cacheLogEvery.
type failLog struct {
	failing atomic.Bool
	mu      sync.Mutex
	next    time.Time
	omitted int
	// logged is set once a failure line went out, until the recovery line does.
	logged bool
}

func (f *failLog) fail(log *slog.Logger, msg, endpoint string, err error) {
	now := time.Now()
	f.mu.Lock()
	f.failing.Store(true)
	if now.Before(f.next) {
		f.omitted++
		f.mu.Unlock()
		return
	}
	n := f.omitted
	f.omitted, f.next, f.logged = 0, now.Add(cacheLogEvery), true
	f.mu.Unlock()
	log.Warn(msg, "endpoint", endpoint, "error", err.Error(), "omitted", n, "interval", cacheLogEvery.String())
}

// ok notes a success: the first after a failure line is logged, with the failures
// left out of the log since that line. The throttle's interval runs on: the next
// failure within it is counted, not logged.
func (f *failLog) ok(log *slog.Logger, msg string) {
	if !f.failing.Load() {
		return
	}
	f.mu.Lock()
	if !f.failing.Load() {
		f.mu.Unlock()
		return
	}
	f.failing.Store(false)
	if !f.logged {
		f.mu.Unlock()
		return
	}
	n := f.omitted
	f.omitted, f.logged = 0, false
	f.mu.Unlock()
	log.Info(msg, "failures_not_logged", n)
}

// remoteCache is one endpoint's keys in the shared Redis, with the client.
type remoteCache struct {
	rc       *redisCache
	endpoint string
	// genKey and prefix are the keys of the lookup and store scripts, boxed once.
	genKey         string
	genArg, prefix any
	// ttlMS is the entries' expiry in milliseconds, boxed once.
	ttlMS any
	m     *metrics.Cache
}

// fingerprintTag is the part of an endpoint's entry keys its cache settings make: a
// hash of its fingerprint, the same on every replica with the same settings.
func fingerprintTag(fp string) string {
	sum := sha256.Sum256([]byte(fp))
	return hex.EncodeToString(sum[:8])
}

func newRemoteCache(rc *redisCache, endpoint, fp string, ttl time.Duration, m *metrics.Cache) *remoteCache {
	genKey := cacheKeyPrefix + endpoint + "}:gen"
	return &remoteCache{rc: rc, endpoint: endpoint, genKey: genKey, genArg: genKey,
		prefix: cacheKeyPrefix + endpoint + "}:" + fingerprintTag(fp) + ":",
		ttlMS:  strconv.FormatInt(ttl.Milliseconds(), 10), m: m}
}

// hexKey is an entry's hash as a script argument, written by go-redis without a
// string made for it.
type hexKey [2 * sha256.Size]byte

// MarshalBinary is how go-redis writes the argument.
func (k *hexKey) MarshalBinary() ([]byte, error) { return k[:], nil }

// remoteLookup is what one lookup needs besides the request, pooled.
type remoteLookup struct {
	args [6]any
	key  hexKey
	h    hash.Hash
	sum  [sha256.Size]byte
	vlen [binary.MaxVarintLen64]byte
	ctx  deadlineCtx
}

var lookupPool = sync.Pool{New: func() any {
	lk := &remoteLookup{h: sha256.New()}
	lk.ctx.done = make(chan struct{})
	lk.ctx.timer = time.AfterFunc(time.Hour, lk.ctx.expire)
	lk.ctx.timer.Stop()
	return lk
}}

// deadlineCtx is a lookup's context, bounding its round trip as
// context.WithTimeout does, but reused by the next lookup unless its deadline
// passed: WithTimeout costs 5 of a hit's allocations (its context, timer and
// channel). go-redis sets its connection's deadlines from Deadline and gives up a
// wait for a pooled connection, or a retry's pause, on Done.
type deadlineCtx struct {
	deadline time.Time
	done     chan struct{}
	timer    *time.Timer
	expired  atomic.Bool
}

func (c *deadlineCtx) Deadline() (time.Time, bool) { return c.deadline, true }
func (c *deadlineCtx) Done() <-chan struct{}       { return c.done }
func (c *deadlineCtx) Value(any) any               { return nil }

func (c *deadlineCtx) Err() error {
	if c.expired.Load() {
		return context.DeadlineExceeded
	}
	return nil
}

func (c *deadlineCtx) expire() {
	c.expired.Store(true)
	close(c.done)
}

// start arms the context for d from now.
func (c *deadlineCtx) start(d time.Duration) {
	c.deadline = time.Now().Add(d)
	c.timer.Reset(d)
}

// stop disarms it, and reports whether it may be armed again: not once its
// deadline has passed (its channel closed, or about to be).
func (c *deadlineCtx) stop() bool { return c.timer.Stop() }

// entryHash is the SHA-256 of owner's length, owner, route's length, route,
// version's length, version and body: what a value ends with (appendCacheValue), so
// that the store hashes it in place.
func (lk *remoteLookup) entryHash(owner, route string, version, body []byte) {
	lk.h.Reset()
	for _, s := range [2]string{owner, route} {
		n := binary.PutUvarint(lk.vlen[:], uint64(len(s)))
		lk.h.Write(lk.vlen[:n])
		lk.h.Write(unsafe.Slice(unsafe.StringData(s), len(s)))
	}
	n := binary.PutUvarint(lk.vlen[:], uint64(len(version)))
	lk.h.Write(lk.vlen[:n])
	lk.h.Write(version)
	lk.h.Write(body)
	hex.Encode(lk.key[:], lk.h.Sum(lk.sum[:0]))
}

// lookupRemote looks the request up in its endpoint's Redis entries: the entry and
// its age when one holds this owner's body, nil on a miss. A failure (Redis down,
// slow past the timeout, skipped for a while after one) is a miss to the client,
// counted as an error, whose answer is not kept: the generation it was asked under is
// unknown, and kept under a later one it would undo a purge made meanwhile.
func (r *request) lookupRemote(c *answerCache) (*cacheEntry, time.Duration) {
	rm := c.remote
	q := rm.rc
	if c.retired.Load() {
		r.cacheRes = cacheMiss
		return nil, 0
	}
	if !q.up() {
		r.cacheRes, r.cacheFill = cacheError, false
		return nil, 0
	}
	owner, route, version := r.cacheOwner(), r.cacheRoute, r.cacheVersion
	if int64(len(owner)+len(version)+len(r.body)) > c.maxEntry {
		// No entry this large is ever kept: no round trip to find none.
		r.cacheRes = cacheMiss
		return nil, 0
	}
	lk := lookupPool.Get().(*remoteLookup)
	lk.entryHash(owner, route, version, r.body)
	lk.args = [6]any{"evalsha", cacheLookupSHA, 2, rm.genArg, rm.prefix, &lk.key}
	ctx := &lk.ctx
	ctx.start(q.timeout)
	cmd := redis.NewStringCmd(ctx, lk.args[:]...)
	_ = q.c.Process(ctx, cmd)
	if err := cmd.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		// A restarted or failed-over Redis has lost the script: EVAL loads it.
		lk.args[0], lk.args[1] = "eval", cacheLookupSrc
		cmd = redis.NewStringCmd(ctx, lk.args[:]...)
		_ = q.c.Process(ctx, cmd)
	}
	lk.args = [6]any{}
	if ctx.stop() {
		lookupPool.Put(lk)
	}
	reply, err := cmd.Result()
	if err != nil {
		r.cacheRes, r.cacheFill = cacheError, false
		q.lookupFailed(rm.endpoint, err)
		return nil, 0
	}
	q.answered()
	gen, rest, ok := cutNumber(reply)
	if !ok || gen < 0 {
		r.cacheRes, r.cacheFill = cacheError, false
		q.lookupFailed(rm.endpoint, errCacheReply)
		return nil, 0
	}
	// The store keeps the answer under this generation, or not at all.
	r.cacheStoreGen = uint64(gen) + 1
	if rest == "" {
		r.cacheRes = cacheMiss
		return nil, 0
	}
	pttl, value, ok := cutNumber(rest[1:])
	if !ok || len(value) == 0 {
		r.cacheRes, r.cacheFill = cacheError, false
		q.lookupFailed(rm.endpoint, errCacheReply)
		return nil, 0
	}
	e := decodeCacheValue(value[1:])
	if e == nil || e.owner != owner || e.route != route || !bytes.Equal(e.version, version) || !bytes.Equal(e.body, r.body) {
		// Another request's answer under this hash (a collision), or a value this
		// gateway cannot read: never served.
		r.cacheRes = cacheMiss
		return nil, 0
	}
	age := c.ttl - time.Duration(pttl)*time.Millisecond
	if pttl < 0 || age < 0 {
		age = 0
	}
	// still() checks the entry's ttl against this: it is served only while Redis
	// would serve it.
	e.stored = time.Now().Add(-age)
	return e, age
}

var errCacheReply = errors.New("unreadable reply to the lookup script")

// remoteGen reads the endpoint's generation for a request that keeps its answer
// without looking it up (Cache-Control: no-cache), for the store to keep it under that
// generation or not at all, as a looked-up one is: on any replica, a purge after it
// was asked for keeps it out. When Redis does not answer it is not kept.
func (r *request) remoteGen(c *answerCache) {
	rm := c.remote
	q := rm.rc
	if !q.up() {
		r.cacheFill = false
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), q.timeout)
	gen, err := q.c.Get(ctx, rm.genKey).Int64()
	cancel()
	switch {
	case errors.Is(err, redis.Nil):
		gen = 0
	case err != nil || gen < 0:
		if err == nil {
			err = errCacheReply
		}
		r.cacheFill = false
		q.lookupFailed(rm.endpoint, err)
		return
	}
	r.cacheStoreGen = uint64(gen) + 1
}

// cutNumber reads the decimal number s starts with, up to a space or its end, and
// returns the rest from that space.
func cutNumber(s string) (int64, string, bool) {
	i := 0
	for i < len(s) && s[i] != ' ' {
		i++
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	return n, s[i:], err == nil
}

// appendCacheValue appends an entry's value to dst and returns it with where the
// bytes the key hashes begin. A value holds, in order: cacheValueVersion, the time it
// was stored (Unix milliseconds, 8 bytes big-endian), then each as a uvarint length
// and its bytes: the backend that made the answer, its content type, the answer, the
// owner (the caller's key name, empty when shared), the route's backend, the client's
// anthropic-version (empty without one); last the request body, to the end. What
// follows the answer is what the key's hash is of.
func appendCacheValue(dst []byte, stored time.Time, backend string, ctype, answer []byte, owner, route string, version, body []byte) ([]byte, int) {
	dst = append(dst, cacheValueVersion)
	dst = binary.BigEndian.AppendUint64(dst, uint64(stored.UnixMilli()))
	dst = binary.AppendUvarint(dst, uint64(len(backend)))
	dst = append(dst, backend...)
	dst = binary.AppendUvarint(dst, uint64(len(ctype)))
	dst = append(dst, ctype...)
	dst = binary.AppendUvarint(dst, uint64(len(answer)))
	dst = append(dst, answer...)
	from := len(dst)
	dst = binary.AppendUvarint(dst, uint64(len(owner)))
	dst = append(dst, owner...)
	dst = binary.AppendUvarint(dst, uint64(len(route)))
	dst = append(dst, route...)
	dst = binary.AppendUvarint(dst, uint64(len(version)))
	dst = append(dst, version...)
	dst = append(dst, body...)
	return dst, from
}

// cacheValueSize is the length of the value appendCacheValue makes, near enough to
// size its buffer and bound it by max_entry_bytes.
func cacheValueSize(backend string, ctype, answer []byte, owner, route string, version, body []byte) int {
	return 1 + 8 + 6*binary.MaxVarintLen32 + len(backend) + len(ctype) + len(answer) + len(owner) + len(route) + len(version) + len(body)
}

// decodeCacheValue reads the value s (its version byte read) as an entry that views
// its bytes; nil when it is not one this gateway writes.
func decodeCacheValue(s string) *cacheEntry {
	if len(s) < 9 || s[0] != cacheValueVersion {
		return nil
	}
	b := unsafe.Slice(unsafe.StringData(s), len(s))
	p := 9
	field := func() ([]byte, bool) {
		n, k := binary.Uvarint(b[p:])
		if k <= 0 || n > uint64(len(b)-p-k) {
			return nil, false
		}
		f := b[p+k : p+k+int(n) : p+k+int(n)]
		p += k + int(n)
		return f, true
	}
	backend, ok1 := field()
	ctype, ok2 := field()
	answer, ok3 := field()
	owner, ok4 := field()
	route, ok5 := field()
	version, ok6 := field()
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 {
		return nil
	}
	e := &cacheEntry{backend: unsafe.String(unsafe.SliceData(backend), len(backend)), ctype: ctype, answer: answer,
		owner: unsafe.String(unsafe.SliceData(owner), len(owner)), route: unsafe.String(unsafe.SliceData(route), len(route)),
		version: version, body: b[p:len(b):len(b)]}
	if bytes.Equal(ctype, strJSON) {
		e.ctype = strJSON
	}
	return e
}

// cacheStoreJob is one answer queued for Redis.
type cacheStoreJob struct {
	rm    *remoteCache
	value blobArg
	// hashFrom is where in value the bytes the key hashes begin.
	hashFrom int
	// gen is the generation the request was looked up under plus one; 0 when it
	// was not looked up (Cache-Control: no-cache), stored under the one current.
	gen uint64
	key hexKey
}

// putRemote queues answer (to body from owner on route, sent with version) for its
// endpoint's Redis entries, unless it would be over
// max_entry_bytes or the cache was purged on this replica since the request was
// looked up. A full queue drops it, counted.
func (c *answerCache) putRemote(owner, route string, version, body, answer, ctype []byte, backend string, gen, storeGen uint64) {
	rm := c.remote
	size := cacheValueSize(backend, ctype, answer, owner, route, version, body)
	if int64(size) > c.maxEntry || c.retired.Load() {
		return
	}
	if c.gen.Load() != gen {
		rm.m.Store(metrics.CacheStale)
		return
	}
	q := rm.rc
	if q.closed.Load() {
		rm.m.Store(metrics.CacheDropped)
		return
	}
	if q.queued.Add(int64(size)) > cacheQueueBytes {
		q.queued.Add(-int64(size))
		q.dropped(rm)
		return
	}
	j := &cacheStoreJob{rm: rm, gen: storeGen}
	j.value, j.hashFrom = appendCacheValue(make([]byte, 0, size), time.Now(), backend, ctype, answer, owner, route, version, body)
	select {
	case q.queue <- j:
	default:
		q.queued.Add(-int64(size))
		q.dropped(rm)
	}
}

// hashKey sets j's key from its value's tail: what a lookup hashes (entryHash).
func (j *cacheStoreJob) hashKey() {
	sum := sha256.Sum256(j.value[j.hashFrom:])
	hex.Encode(j.key[:], sum[:])
}

// dropped counts a store the queue had no room for.
func (q *redisCache) dropped(rm *remoteCache) {
	rm.m.Store(metrics.CacheDropped)
	q.storeFail.fail(q.log, "answer cache: answer not kept: the redis store queue is full", rm.endpoint, errQueueFull)
}

var errQueueFull = errors.New("the stores queued wait for a Redis that is slow or down, or come faster than it takes them")

// work writes queued stores until the client closes, then what is left within
// cacheDrainBound.
func (q *redisCache) work() {
	defer q.wg.Done()
	for {
		select {
		case j := <-q.queue:
			q.write(j)
		case <-q.stop:
			end := time.Now().Add(cacheDrainBound)
			for {
				select {
				case j := <-q.queue:
					if time.Now().After(end) {
						q.finish(j, metrics.CacheDropped)
					} else {
						q.write(j)
					}
				default:
					return
				}
			}
		}
	}
}

// finish counts what became of j and gives back its room in the queue.
func (q *redisCache) finish(j *cacheStoreJob, res metrics.CacheStore) {
	q.queued.Add(-int64(cap(j.value)))
	j.rm.m.Store(res)
}

// write sends j to Redis in one round trip (two when Redis lost the script).
func (q *redisCache) write(j *cacheStoreJob) {
	if !q.up() {
		q.finish(j, metrics.CacheFailed)
		return
	}
	j.hashKey()
	var gen any = ""
	if j.gen > 0 {
		gen = strconv.FormatUint(j.gen-1, 10)
	}
	args := []any{"evalsha", cacheStoreSHA, 2, j.rm.genArg, j.rm.prefix, &j.key, gen, j.rm.ttlMS, &j.value}
	ctx, cancel := context.WithTimeout(context.Background(), q.timeout)
	defer cancel()
	cmd := redis.NewIntCmd(ctx, args...)
	_ = q.c.Process(ctx, cmd)
	if err := cmd.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		args[0], args[1] = "eval", cacheStoreSrc
		cmd = redis.NewIntCmd(ctx, args...)
		_ = q.c.Process(ctx, cmd)
	}
	n, err := cmd.Result()
	switch {
	case err != nil:
		q.finish(j, metrics.CacheFailed)
		q.storeFail.fail(q.log, "answer cache: redis store failed; answer not kept", j.rm.endpoint, err)
	case n == 1:
		q.finish(j, metrics.CacheStored)
		q.storeFail.ok(q.log, "answer cache: redis stores written again")
	default:
		q.finish(j, metrics.CacheStale)
	}
}

// blobArg is bytes go-redis writes as they are.
type blobArg []byte

// MarshalBinary is how go-redis writes the argument.
func (b *blobArg) MarshalBinary() ([]byte, error) { return *b, nil }

// purgeRemote answers DELETE /admin/endpoints/{name}/cache for a Redis store: the
// endpoint's generation goes up, so that no replica serves an entry made before
// (they expire at their ttl), and this replica keeps no answer asked for before.
// The entries are not counted (that would take a scan of the keyspace): the answer
// says the new generation.
func (s *Server) purgeRemote(ctx *fasthttp.RequestCtx, c *answerCache, name string) {
	c.gen.Add(1)
	rm := c.remote
	rctx, cancel := context.WithTimeout(context.Background(), rm.rc.timeout)
	gen, err := rm.rc.c.Incr(rctx, rm.genKey).Result()
	cancel()
	if err != nil {
		s.log.Warn("answer cache purge failed: redis did not take it", "endpoint", name, "error", err.Error())
		writeError(&ctx.Response, &apiError{503, "server_error", "cache_unavailable", "",
			"The answer cache's Redis did not take the purge (it did not answer, or refused it): the other replicas may still serve its entries. Try again."})
		return
	}
	s.log.Info("answer cache purged", "endpoint", name, "store", cacheStoreRedis, "generation", gen)
	writeJSON(ctx, 200, map[string]any{"endpoint": name, "store": cacheStoreRedis, "generation": gen})
}

// client is the Redis client c keeps its entries through; nil for memory.
func (c *answerCache) client() *redisCache {
	if c.remote == nil {
		return nil
	}
	return c.remote.rc
}

// cacheClient is the Redis client the cache of the endpoint of ec uses on rt; nil
// for memory.
func (rt *runtime) cacheClient(ec *EndpointConfig) *redisCache {
	if ec.Cache.Store != cacheStoreRedis {
		return nil
	}
	return rt.rcache
}

// newCache makes the cache of the endpoint of ec on rt, empty (memory) or over its
// Redis entries, its series mc.
func (rt *runtime) newCache(ec *EndpointConfig, fp string, mc *metrics.Cache, m *metrics.Metrics) *answerCache {
	c := newAnswerCache(ec.Cache, fp, mc)
	if q := rt.cacheClient(ec); q != nil {
		m.CacheRemote(mc)
		c.remote = newRemoteCache(q, ec.Name, fp, ec.Cache.TTL, mc)
	}
	return c
}
