package limiter

import (
	"context"
	_ "embed"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

//go:embed check.lua
var checkScript string

// heartbeatScript registers one replica until ARGV[2] ms from now (Redis's clock) and
// returns how many replicas are registered and alive, Redis's clock as check.lua
// counts it (microseconds since 1700000000), which the replica's concurrency leases
// are renewed from, and which Redis answered: its process (run_id) and the history
// of its data set (master_replid, new when a replica is promoted), read after the
// writes, which a replica refuses first (resendReleases). An INFO that Redis refuses
// (an ACL without @dangerous) names no server, which then never changes.
const heartbeatScript = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local function info(section, field)
	local r = redis.pcall('INFO', section)
	if type(r) ~= 'string' then return '' end
	return string.match(r, field .. ':(%x+)') or ''
end
local server = info('server', 'run_id') .. ' ' .. info('replication', 'master_replid')
return {redis.call('ZCARD', KEYS[1]), (tonumber(t[1]) - 1700000000) * 1000000 + tonumber(t[2]), server}
`

const (
	keyPrefix    = "tg:{"
	replicasKey  = "tg:{replicas}"
	opTake       = 1
	opAdjust     = 2
	opRelease    = 3
	opIfAdjust   = 4 // an adjustment applied only if a failed call ran (compensate)
	opFence      = 5 // a failed call's marker, fenced so that it never runs later
	bucketRate   = 1
	bucketConc   = 2
	takeRecBytes = 10 // B ok, B refusing bucket, d retry
	bucketBytes  = 24 // d remaining, d reset, d granted
	// maxOpsPerCall bounds one script call: Redis runs a script to the end before
	// serving anything else, so a huge batch would stall other clients.
	maxOpsPerCall = 256
	// settleDelay is how long a settlement may wait for a check to ride along with:
	// nobody waits on a settlement, and sending it alone would put a round trip in
	// front of the next check.
	settleDelay = time.Millisecond
	// maxPendingAdjust bounds settlements queued while Redis is slow, and again those
	// kept to send again after a failed call; past it they are dropped (and counted)
	// rather than held without limit.
	maxPendingAdjust = 1 << 16
	// minMarkTTL is how long, at least, the marker of a call that carried checks
	// outlives it (markTTL): what a failed call charged is compensated only if its
	// marker is still there when Redis answers again (compensate).
	minMarkTTL = 5 * time.Second
)

const (
	statePending int32 = iota
	stateDone
	stateAbandoned
)

// waiter is one check in flight. It belongs to the redis store, not to the Ticket,
// because a check whose request stopped waiting is still finished (and undone) by the
// flusher after the Ticket has been reused.
type waiter struct {
	pol    *Policy
	n      uint8
	bucket [MaxLimits]uint64
	tag    [MaxLimits]uint64
	cost   [MaxLimits]float64
	lease  [MaxLimits]uint64
	// want is how many units of each rate bucket the check asks for ahead (prefetch);
	// refill marks a check no request waits for, sent only to prefetch.
	want   [MaxLimits]float64
	refill bool

	// began is the limiter's recoveries when the check was made (checkFailed).
	began uint64

	// Results, written by the flusher before it moves state on.
	failed    bool
	refused   bool
	parts     uint8
	ref       int
	retry     float64 // microseconds
	remaining [MaxLimits]float64
	reset     [MaxLimits]float64 // microseconds
	granted   [MaxLimits]float64
	err       error
	// unsure are the charges of the check's failed calls that may have run
	// (markUnsure), one per bit of unsureMask.
	unsure     [MaxLimits]unsure
	unsureMask uint8
	// void is set when a bucket the check was refused by was given capacity back
	// during its round (voidRefusals): the refusal is not cached.
	void bool
	// A check whose request stopped waiting is settled by whichever comes last of
	// its round and its request (handOver), which says whether it served the
	// request and with how many tokens; hand counts them.
	hand   atomic.Int32
	served bool
	actual Amounts

	state atomic.Int32
	done  chan struct{}
	timer *time.Timer
}

type adjustOp struct {
	op uint8
	// again marks a release sent again after another Redis answered the heartbeat
	// (resendReleases): sentReleases keeps the first send only.
	again bool
	// at is, for opIfAdjust, the bucket's position among those the failed call
	// checked, its byte in the call's marker.
	at       uint16
	bucket   uint64
	tag      uint64
	interval float64 // microseconds per unit
	// tau is the span in microseconds of the settling rule's bucket (opAdjust,
	// opIfAdjust): a bucket that owes nothing records it with the debt the settlement
	// charges (check.lua, adjust).
	tau   float64
	delta float64
	// member is a release's lease ID, or the failed call's ID (opIfAdjust, opFence).
	member uint64
	// mtag is the hash tag of the failed call's marker (opIfAdjust, opFence).
	mtag uint64
}

// adjustOf is the settlement (opAdjust) of delta units of bucket (tag, bucket) under a
// rule of interval (nanoseconds per unit) and burst.
func adjustOf(tag, bucket uint64, interval, burst, delta float64) adjustOp {
	iv := interval / 1e3
	return adjustOp{op: opAdjust, bucket: bucket, tag: tag, interval: iv, tau: burst * iv, delta: delta}
}

// unsure is one bucket's charge by a check whose call failed in a way that may have
// run it (a timeout): id and mtag name the call's marker in Redis, at the bucket's
// byte in it, and cost is what the check charged.
type unsure struct {
	id, mtag uint64
	at       uint16
	cost     float64
}

// rec is one take operation inside a script call: some or all buckets of a waiter.
type rec struct {
	w   *waiter
	idx [MaxLimits]uint8
	nb  uint8
	ok  bool
}

// call is one script invocation; on Cluster there is one per hash slot of a round.
type call struct {
	args []any
	blob blobArg
	nops int
	keys []*keyArg
	// index maps a bucket already among keys to its 1-based position in KEYS.
	index map[keyID]uint16
	recs  []rec
	// ops are the settlements the call carries, kept to send again if it fails.
	ops []adjustOp
	cmd *redis.Cmd
	// id names a call that carries checks (recs), and its marker: the key, tagged
	// mtag, that the script sets when it runs past the round's markAfter, holding a
	// byte per bucket checked ('1': admitted, '0': refused), so that what the call
	// charged can be taken back if its answer is lost. A call that carries checks
	// without a marker (marked false: splitRefused) refuses to run past markAfter.
	id     uint64
	mtag   uint64
	marked bool
}

type redisStore struct {
	l       *Limiter
	c       redis.UniversalClient
	cluster bool
	sha     any // the script's SHA1, boxed once rather than per call
	hb      *redis.Script
	member  string
	loaded  bool // touched by the prober only
	timeout time.Duration
	round   time.Duration
	leaseUS float64
	pool    sync.Pool

	busy atomic.Bool // a round trip is being built, sent or read
	// lastTakes is how many checks the last round with any carried: above one, a
	// request that sends a round gathers first.
	lastTakes atomic.Int32
	mu        sync.Mutex
	takes     []*waiter
	adjs      []adjustOp
	kick      chan struct{} // a check is queued: send now
	later     chan struct{} // only settlements are queued: send within settleDelay
	// retry holds settlements whose call failed until Redis answers a heartbeat; a
	// limiter built by NewFrom on the same Redis shares its predecessor's.
	retry *retryList
	// sent holds the releases Redis answered lately, to send again when another
	// Redis answers the heartbeat (resendReleases); a limiter built by NewFrom on the
	// same Redis shares its predecessor's, which may have closed before the move.
	sent *sentReleases
	// target names the Redis the store talks to, credentials and pool aside.
	target string
	// markTTL is the lifetime in milliseconds of a call's marker, boxed once; noMark,
	// 0, stands for it in a call without a marker.
	markTTL any
	noMark  any
	// clockOff is Redis's clock (as check.lua counts it) minus clockBase's, both in
	// microseconds, as of the last heartbeat; zero until one is answered.
	clockBase time.Time
	clockOff  atomic.Int64
	// rounds counts the rounds taken out of the queue (flushOnce); under mu.
	rounds uint64

	// Owned by the holder of busy.
	spareTakes []*waiter
	spareAdjs  []adjustOp
	calls      []*call
	ncalls     int
	bySlot     map[int]*call
	adjIndex   map[keyID]int
	// after is the round's markAfter, one argument shared by its calls that carry checks.
	after numArg
	// callID is the ID of the last call sent, from a random start: calls of other
	// replicas, and of this one before a reload, name other markers.
	callID uint64

	checks      atomic.Uint64
	answered    atomic.Uint64 // requests' checks answered by Redis
	roundTrips  atomic.Uint64
	scriptCalls atomic.Uint64
	dropped     atomic.Uint64

	prefetch
	refusals
	leases
}

func newRedisStore(l *Limiter, cfg *Config) (*redisStore, error) {
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	lease := cfg.ConcurrencyLease
	if lease == 0 {
		lease = DefaultConcurrencyLease
	}
	// Heartbeats renew the leases: a lease shorter than a few of them would lapse
	// between two under a live request.
	lease = max(lease, minLeaseBeats*l.opt.heartbeatEvery)
	// A flusher's round trip may outlive the requests that stopped waiting for it;
	// this bounds how long it stays stuck on a Redis that does not answer.
	round := max(10*timeout, 500*time.Millisecond)
	c, cluster, err := newClient(&cfg.Redis, round)
	if err != nil {
		return nil, err
	}
	s := &redisStore{
		l:        l,
		c:        c,
		cluster:  cluster,
		sha:      any(scriptSHA(checkScript)),
		hb:       redis.NewScript(heartbeatScript),
		timeout:  timeout,
		round:    round,
		leaseUS:  float64(lease / time.Microsecond),
		prefetch: newPrefetch(cfg.prefetch()),
		kick:     make(chan struct{}, 1),
		later:    make(chan struct{}, 1),
		bySlot:   make(map[int]*call),
		adjIndex: make(map[keyID]int),
		retry:    &retryList{},
		sent:     &sentReleases{},
		target:   redisTarget(&cfg.Redis),
		// A failed call's marker must outlive the wait for Redis to answer a
		// heartbeat again and the round that then carries its compensation.
		markTTL:   any((minMarkTTL + 2*round).Milliseconds()),
		noMark:    any(int64(0)),
		callID:    rand.Uint64(), //nolint:gosec // unique, not secret
		clockBase: time.Now(),
	}
	s.pool.New = func() any {
		t := time.NewTimer(time.Hour)
		t.Stop()
		return &waiter{done: make(chan struct{}, 1), timer: t}
	}
	// Last, as nothing after it fails: a store that registered releases its member
	// at close.
	s.member = l.members.acquire(s.target)
	return s, nil
}

// members names the process in each Redis its limiters use: New starts a set, and
// every limiter NewFrom builds from it shares it. A limiter retired by a reload lives
// on until the last request it admitted ends (a stream, minutes), heartbeating all the
// while to renew those requests' leases; under a member of its own it would count as
// one more replica, and every replica on that Redis would answer from a smaller share
// while Redis fails. Sharing the member, the process counts once however many
// reloads' limiters still run, also after a move to another Redis and back; the
// member leaves a Redis when the last store using it there closes, so a limiter built
// by a reload that then fails, or retired before the others, removes nothing.
type members struct {
	mu      sync.Mutex
	byRedis map[string]*member
}

type member struct {
	id    string
	users int
}

func newMembers() *members { return &members{byRedis: make(map[string]*member)} }

// acquire returns the member to register under in the Redis target names.
func (ms *members) acquire(target string) string {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	m := ms.byRedis[target]
	if m == nil {
		// A fresh member once the last user released the old one: its removal may
		// still be on its way, and would undo this store's first heartbeat.
		m = &member{id: strconv.FormatUint(rand.Uint64(), 36)} //nolint:gosec // unique, not secret
		ms.byRedis[target] = m
	}
	m.users++
	return m.id
}

// release reports whether the store closing on target was the member's last user
// there, whose close then unregisters it.
func (ms *members) release(target string) bool {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	m := ms.byRedis[target]
	if m == nil {
		return false
	}
	if m.users--; m.users > 0 {
		return false
	}
	delete(ms.byRedis, target)
	return true
}

// newClient speaks RESP2: with RESP3 go-redis peeks at the socket for push messages
// before every command, a system call per round trip for a feature the limiter does
// not use, as are CLIENT SETINFO and maintenance notifications. Its retries are off
// (MaxRetries -1): go-redis retries READONLY, LOADING and MASTERDOWN, refusals that
// outlast a round, after a backoff of 10 ms and up, until the round's deadline, which
// is then the error logged rather than Redis's own; each caller tries again on its
// own schedule (a heartbeat, the next request). A pooled connection Redis closed is
// dropped when it is taken from the pool, not retried: go-redis checks a plain
// socket, and a TLS one through checkedTLS.
func newClient(rc *RedisConfig, round time.Duration) (redis.UniversalClient, bool, error) {
	maint := &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	if rc.URL != "" {
		o, err := redis.ParseURL(rc.URL)
		if err != nil {
			return nil, false, errors.New("limiter: redis.url: " + redisURLProblem(err))
		}
		if rc.Password != "" {
			o.Password = rc.Password
		}
		if rc.DB != 0 {
			o.DB = rc.DB
		}
		if rc.PoolSize != 0 {
			o.PoolSize = rc.PoolSize
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = round, round, round
		if o.TLSConfig != nil {
			// rediss://: a connection Redis closed is dropped before a use, not
			// found by a call that then fails (checkedTLS).
			o.Dialer = dialTLS(o.TLSConfig, round)
		}
		o.MaxRetries = -1
		o.ContextTimeoutEnabled = true
		o.DisableIdentity = true
		o.Protocol = 2
		o.MaintNotificationsConfig = maint
		return redis.NewClient(o), false, nil
	}
	u := &redis.UniversalOptions{
		Password:                 rc.Password,
		DB:                       rc.DB,
		PoolSize:                 rc.PoolSize,
		DialTimeout:              round,
		ReadTimeout:              round,
		WriteTimeout:             round,
		MaxRetries:               -1,
		ContextTimeoutEnabled:    true,
		DisableIdentity:          true,
		Protocol:                 2,
		MaintNotificationsConfig: maint,
	}
	if rc.Sentinel.Master != "" {
		u.MasterName, u.Addrs = rc.Sentinel.Master, rc.Sentinel.Addrs
		return redis.NewUniversalClient(u), false, nil
	}
	u.Addrs, u.IsClusterMode = rc.Addrs, true
	return redis.NewUniversalClient(u), true, nil
}

// redisTarget names the Redis rc points at, leaving out what a reload may change on
// the same Redis: the password (rotated, say, while Redis refuses the old one) and
// the pool. Stores share kept settlements only with the same target: sent to another
// Redis they would free nothing, and be lost to theirs.
func redisTarget(rc *RedisConfig) string {
	db := rc.DB
	if rc.URL != "" {
		o, err := redis.ParseURL(rc.URL)
		if err != nil {
			return ""
		}
		if db == 0 {
			db = o.DB
		}
		return "url " + o.Addr + " " + strconv.Itoa(db)
	}
	if rc.Sentinel.Master != "" {
		return "sentinel " + rc.Sentinel.Master + " " + addrSet(rc.Sentinel.Addrs) + " " + strconv.Itoa(db)
	}
	return "cluster " + addrSet(rc.Addrs)
}

// addrSet writes a list of addresses in one order, each once: Sentinels and cluster
// seeds listed in another order (or twice) still find the same Redis.
func addrSet(addrs []string) string {
	s := slices.Clone(addrs)
	slices.Sort(s)
	return strings.Join(slices.Compact(s), ",")
}

// close sends what is queued and what was kept to send again. What still fails stays
// kept, and a successor built by NewFrom on the same Redis (which shares the list)
// sends it once its heartbeat is answered. Concurrency slots still held go back too
// (releaseHeld). The replica's member leaves Redis with the last store of the process
// that uses it there (members).
func (s *redisStore) close() error {
	// Checks still queued may be granted units ahead: they go first, then everything
	// held goes back.
	s.flush(context.Background())
	s.giveBack(true)
	s.releaseHeld()
	s.resend()
	s.flush(context.Background())
	if s.l.members.release(s.target) {
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		_ = s.c.ZRem(ctx, replicasKey, s.member).Err()
		cancel()
	}
	return s.c.Close()
}

// heartbeat registers this replica for three heartbeat periods, renews the leases of
// the concurrency slots it holds (adding back those Redis lost), and returns the live
// replica count.
func (s *redisStore) heartbeat() (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	ttl := 3 * s.l.opt.heartbeatEvery.Milliseconds()
	r, err := s.hb.Run(ctx, s.c, []string{replicasKey}, s.member, ttl).Slice()
	if err != nil {
		return 0, err
	}
	if len(r) != 3 {
		return 0, errors.New("limiter: heartbeat reply of " + strconv.Itoa(len(r)) + " values, want 3")
	}
	live, okLive := r[0].(int64)
	clock, okClock := r[1].(int64)
	server, okServer := r[2].(string)
	if !okLive || !okClock || !okServer {
		return 0, errors.New("limiter: heartbeat reply not a count, a clock and a server")
	}
	// Redis read its clock before the reply came: the offset is low by at most the
	// round trip, which makes markAfter early, the safe side.
	s.clockOff.Store(clock - time.Since(s.clockBase).Microseconds())
	s.sent.mu.Lock()
	moved := s.sent.server != "" && server != s.sent.server
	s.sent.server = server
	s.sent.mu.Unlock()
	if moved {
		s.resendReleases()
	}
	// Redis answered, so a failed renewal is left to the next heartbeat: the lease
	// outlasts a few of them (minLeaseBeats), and degrading every check for it
	// would cost more than it saves.
	rctx, rcancel := context.WithTimeout(context.Background(), s.timeout)
	_ = s.renewLeases(rctx, clock)
	rcancel()
	return live, nil
}

func (s *redisStore) load() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	return s.c.ScriptLoad(ctx, checkScript).Err()
}

// take sends the ticket's check to the flusher and waits at most the timeout. answered
// is false when Redis failed or was too slow, and the caller falls back.
func (s *redisStore) take(ctx context.Context, t *Ticket) (err error, answered bool) {
	if s.every > 0 && s.takeLocal(t) {
		return nil, true
	}
	if err, ok := s.refusedLocally(t); ok {
		return err, true
	}
	w := s.newWaiter(t)
	for i := range int(t.n) {
		if t.pol.rules[i].kind == kindConcurrency {
			w.lease[i] = rand.Uint64() //nolint:gosec // a lease ID must be unique, not secret
			t.lease[i] = w.lease[i]
		}
	}
	s.askAhead(w)
	s.enqueue(w)

	if s.busy.CompareAndSwap(false, true) {
		// No round trip in flight: this request sends the queue itself rather than
		// paying two goroutine hand-offs through the flusher, which at low load cost
		// more than Redis does. When the last round carried more than one check
		// (load), it first lets the goroutines ready to run go ahead, as the
		// flusher does (run), so that they queue theirs into this round. The
		// round's deadline is this request's.
		if s.lastTakes.Load() > 1 {
			runtime.Gosched()
		}
		rctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		s.flushOnce(rctx)
		cancel()
		s.busy.Store(false)
		s.kickIfQueued()
		// Whichever round carried w (this one, or one that ended just before) has
		// delivered it.
		<-w.done
		return s.result(t, w)
	}
	s.kickNow()

	w.timer.Reset(s.timeout)
	select {
	case <-w.done:
		w.timer.Stop()
	case <-w.timer.C:
		if w.state.CompareAndSwap(statePending, stateAbandoned) {
			// The request is answered without Redis, and hands w over with how
			// (Limiter.compensate, handOver) once that is known.
			t.late = w
			s.l.checkFailed(w.began, errCheckTimeout)
			return nil, false
		}
		<-w.done
	case <-ctx.Done():
		w.timer.Stop()
		if w.state.CompareAndSwap(statePending, stateAbandoned) {
			s.handOver(w, false, Amounts{})
			return ctx.Err(), true
		}
		<-w.done
	}
	return s.result(t, w)
}

// newWaiter takes a waiter from the pool for t's buckets and costs, asking nothing
// ahead, its results cleared.
func (s *redisStore) newWaiter(t *Ticket) *waiter {
	w := s.pool.Get().(*waiter)
	w.pol, w.n, w.refill = t.pol, t.n, false
	w.began = s.l.recoveries.Load()
	w.bucket, w.tag, w.cost = t.bucket, t.tag, t.cost
	w.want, w.granted = [MaxLimits]float64{}, [MaxLimits]float64{}
	w.failed, w.refused, w.parts, w.ref, w.retry, w.err = false, false, 0, 0, 0, nil
	w.unsureMask, w.void, w.served, w.actual = 0, false, false, Amounts{}
	w.hand.Store(0)
	w.state.Store(statePending)
	return w
}

// enqueue queues w for the next round.
func (s *redisStore) enqueue(w *waiter) {
	s.mu.Lock()
	s.takes = append(s.takes, w)
	s.mu.Unlock()
}

// result copies a delivered check into the ticket and returns the waiter to the pool.
func (s *redisStore) result(t *Ticket, w *waiter) (err error, answered bool) {
	defer s.release(w)
	if w.failed {
		// The caller answers without Redis, and settles these there accordingly.
		t.unsure, t.unsureMask = w.unsure, w.unsureMask
		if !slotRefusal(w.err) {
			s.l.checkFailed(w.began, w.err)
		}
		return nil, false
	}
	s.answered.Add(1)
	rules := t.pol.rules
	for i := range int(t.n) {
		t.observe(&rules[i], w.remaining[i], time.Duration(w.reset[i]*float64(time.Microsecond)))
	}
	if w.refused {
		retry := time.Duration(math.Ceil(w.retry)) * time.Microsecond
		if !w.void {
			s.rememberRefusal(t, w, w.ref, retry, time.Duration(w.reset[w.ref]*float64(time.Microsecond)))
		}
		return t.refuse(w.ref, retry), true
	}
	for i := range int(t.n) {
		if rules[i].kind == kindConcurrency {
			t.slot[i] = s.hold(t.tag[i], t.bucket[i], t.lease[i])
		}
	}
	t.src = srcRedis
	return nil, true
}

var errCheckTimeout = errors.New("limit check exceeded the timeout")

// settle queues the true-up of a ticket admitted through Redis to actual amounts,
// counts (Settle resolves KeepEstimate); it never waits.
func (s *redisStore) settle(t *Ticket, actual Amounts) {
	rules := t.pol.rules
	// What to true up in Redis of each metered bucket whose charge was not the true
	// count: what units this replica holds (prefetch) cannot absorb. Held units are
	// already charged in Redis, so moving some between the request and the replica
	// changes nothing there.
	var rest [MaxLimits]float64
	for i := range int(t.n) {
		if rules[i].kind == kindConcurrency {
			s.unhold(t.slot[i], t.lease[i])
		}
		if k := rules[i].kind; k.metered() && float64(actual.of(k)) != t.cost[i] {
			rest[i] = s.settleLocal(keyID{t.tag[i], t.bucket[i]}, &rules[i], float64(actual.of(k))-t.cost[i])
		}
	}
	queued := false
	s.mu.Lock()
	for i := range int(t.n) {
		r := &rules[i]
		switch {
		case rest[i] != 0:
			s.queueAdjustLocked(adjustOf(t.tag[i], t.bucket[i], r.interval, r.burst, rest[i]))
			queued = true
		case r.kind == kindConcurrency:
			s.queueAdjustLocked(adjustOp{op: opRelease, bucket: t.bucket[i], tag: t.tag[i], member: t.lease[i]})
			queued = true
		}
	}
	s.mu.Unlock()
	if queued {
		s.kickLater()
	}
}

func (s *redisStore) kickNow() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *redisStore) kickLater() {
	select {
	case s.later <- struct{}{}:
	default:
	}
}

// queued is how many checks and settlements wait for the next round.
func (s *redisStore) queued() (takes, adjs int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.takes), len(s.adjs)
}

func (s *redisStore) kickIfQueued() {
	switch takes, adjs := s.queued(); {
	case takes > 0:
		s.kickNow()
	case adjs > 0:
		s.kickLater()
	}
}

func (s *redisStore) queueAdjustLocked(a adjustOp) {
	if len(s.adjs) >= maxPendingAdjust {
		s.dropped.Add(1)
		return
	}
	s.adjs = append(s.adjs, a)
}

// undo queues the reverse of what was taken for buckets idx of w: used when a part of
// a request was admitted on one Cluster slot and refused on another, or when the
// request stopped waiting and answered from its local bucket instead.
func (s *redisStore) undoLocked(w *waiter, idx []uint8) {
	rules := w.pol.rules
	for _, i := range idx {
		r := &rules[i]
		if r.kind == kindConcurrency {
			s.queueAdjustLocked(adjustOp{op: opRelease, bucket: w.bucket[i], tag: w.tag[i], member: w.lease[i]})
		} else if w.cost[i] != 0 {
			s.queueAdjustLocked(adjustOf(w.tag[i], w.bucket[i], r.interval, r.burst, -w.cost[i]))
			s.returningLocked(keyID{w.tag[i], w.bucket[i]})
		}
	}
}

// run is the flusher: whatever is queued goes to Redis as soon as the previous round
// trip is back, so batches grow with load and a lone check never waits for a timer.
// Only the holder of busy sends a round, the flusher or a request that found none in
// flight; whoever releases busy with work queued kicks the flusher.
func (s *redisStore) run() {
	defer s.l.wg.Done()
	delay := time.NewTimer(time.Hour)
	delay.Stop()
	defer delay.Stop()
	waiting := false
	for {
		select {
		case <-s.l.stop:
			return
		case <-s.later:
			if !waiting {
				waiting = true
				delay.Reset(settleDelay)
			}
			continue
		case <-delay.C:
		case <-s.kick:
		}
		if waiting {
			waiting = false
			delay.Stop()
		}
		for s.busy.CompareAndSwap(false, true) {
			// Let the goroutines that are ready to run go first: under load they
			// are requests about to queue their checks, which then share this round
			// instead of each paying for the next one. With nothing else to run
			// this returns at once, so a lone check does not wait.
			runtime.Gosched()
			ctx, cancel := context.WithTimeout(context.Background(), s.round)
			s.flushOnce(ctx)
			cancel()
			s.busy.Store(false)
			// Checks queued meanwhile go at once; settlements alone wait for the
			// next check or settleDelay, or back-to-back rounds of them would keep
			// Redis busy while prefetched units answer the checks.
			if takes, adjs := s.queued(); takes == 0 {
				if adjs > 0 {
					s.kickLater()
				}
				break
			}
		}
	}
}

// flush sends what is queued, until nothing is; it is for Close, after the flusher
// has stopped.
func (s *redisStore) flush(ctx context.Context) {
	for !s.busy.CompareAndSwap(false, true) {
		time.Sleep(time.Millisecond)
	}
	for {
		rctx, cancel := context.WithTimeout(ctx, s.round)
		more := s.flushOnce(rctx)
		cancel()
		if !more {
			break
		}
	}
	s.busy.Store(false)
}

// flushOnce sends one round under ctx's deadline; the caller holds busy.
func (s *redisStore) flushOnce(ctx context.Context) bool {
	s.mu.Lock()
	takes, adjs := s.takes, s.adjs
	s.takes, s.adjs = s.spareTakes[:0], s.spareAdjs[:0]
	s.rounds++
	round := s.rounds
	s.mu.Unlock()
	if len(takes) == 0 && len(adjs) == 0 {
		s.spareTakes, s.spareAdjs = takes, adjs
		return false
	}
	if len(takes) > 0 {
		s.lastTakes.Store(int32(min(len(takes), math.MaxInt32)))
	}
	s.roundTrip(ctx, round, takes, adjs)
	clear(takes)
	s.spareTakes, s.spareAdjs = takes[:0], adjs[:0]
	return true
}

func (s *redisStore) newCall() *call {
	if s.ncalls == len(s.calls) {
		s.calls = append(s.calls, &call{})
	}
	c := s.calls[s.ncalls]
	s.ncalls++
	c.nops, c.cmd, c.marked = 0, nil, false
	s.callID++
	c.id = s.callID
	c.args = append(c.args[:0], "evalsha", s.sha, 0)
	c.blob = c.blob[:0]
	clear(c.recs)
	clear(c.index)
	c.recs = c.recs[:0]
	c.ops = c.ops[:0]
	return c
}

// slotOf is the Cluster hash slot of keys tagged with tag; without Cluster every key
// goes into the same calls.
func (s *redisStore) slotOf(tag uint64) int {
	if !s.cluster {
		return -1
	}
	var b [16]byte
	putHex(b[:], tag)
	return int(crc16(b[:]) & 16383)
}

// callFor returns the call that the next operation on slot goes into.
func (s *redisStore) callFor(slot int) *call {
	c := s.bySlot[slot]
	if c == nil || c.nops >= maxOpsPerCall {
		c = s.newCall()
		s.bySlot[slot] = c
	}
	c.nops++
	return c
}

// blobArg is the operations argument of a call, reused from round to round; as a
// pointer it goes into go-redis's arguments without an allocation.
type blobArg []byte

// MarshalBinary is how go-redis writes the argument.
func (b *blobArg) MarshalBinary() ([]byte, error) { return *b, nil }

// markAfter is when, on Redis's clock as check.lua counts it, a call of a round sent
// now under ctx starts setting its marker: half way to ctx's deadline. Run before then,
// a call is answered in time unless its answer is itself held up for that long (a
// gateway stalled for half the timeout), and leaves nothing behind; run later (a
// stalled or overloaded Redis) it may not be, and leaves what it did to be found. Zero
// (always) until a heartbeat has read Redis's clock.
func (s *redisStore) markAfter(ctx context.Context) int64 {
	off := s.clockOff.Load()
	dl, ok := ctx.Deadline()
	if off == 0 || !ok {
		return 0
	}
	now := time.Now()
	return off + now.Add(dl.Sub(now)/2).Sub(s.clockBase).Microseconds()
}

// numArg is an integer argument go-redis writes without an allocation.
type numArg struct {
	b [20]byte
	n uint8
}

func (a *numArg) set(v int64) { a.n = uint8(len(strconv.AppendInt(a.b[:0], v, 10))) }

// MarshalBinary is how go-redis writes the argument.
func (a *numArg) MarshalBinary() ([]byte, error) { return a.b[:a.n], nil }

// keyArg is a key argument go-redis writes without a string being allocated for it:
// the flusher reuses them from round to round. A bucket's key is tg:{TAG}BUCKET, a
// call's marker tg:{TAG}~ID, sixteen hex digits each.
type keyArg struct {
	b [4 + 16 + 1 + 1 + 16]byte
	n uint8
}

// MarshalBinary is how go-redis writes the argument.
func (k *keyArg) MarshalBinary() ([]byte, error) { return k.b[:k.n], nil }

// String is how go-redis finds a Cluster slot from the first key.
func (k *keyArg) String() string { return string(k.b[:k.n]) }

func (k *keyArg) set(tag, bucket uint64) {
	copy(k.b[:], keyPrefix)
	putHex(k.b[4:20], tag)
	k.b[20] = '}'
	putHex(k.b[21:37], bucket)
	k.n = 37
}

func (k *keyArg) setMarker(tag, id uint64) {
	k.set(tag, 0)
	k.b[21] = '~'
	putHex(k.b[22:38], id)
	k.n = 38
}

type keyID struct{ tag, bucket uint64 }

// newKey appends a key argument to the call and returns it, to be set.
func (c *call) newKey() *keyArg {
	n := len(c.args) - 3
	if n == len(c.keys) {
		c.keys = append(c.keys, &keyArg{})
	}
	c.args = append(c.args, c.keys[n])
	return c.keys[n]
}

// appendKey appends the KEYS index of the bucket's key to the blob, adding the key to
// the arguments the first time the call names it: a hot bucket checked a hundred
// times in a batch is one key for Redis to parse and read.
func (c *call) appendKey(tag, bucket uint64) {
	id := keyID{tag, bucket}
	i, ok := c.index[id]
	if !ok {
		c.newKey().set(tag, bucket)
		i = uint16(len(c.args) - 3)
		if c.index == nil {
			c.index = make(map[keyID]uint16)
		}
		c.index[id] = i
	}
	c.blob = binary.LittleEndian.AppendUint16(c.blob, i)
}

// appendMarker appends the KEYS index of a failed call's marker to the blob.
func (c *call) appendMarker(tag, id uint64) {
	c.newKey().setMarker(tag, id)
	c.blob = binary.LittleEndian.AppendUint16(c.blob, uint16(len(c.args)-3))
}

func putHex(dst []byte, v uint64) {
	const digits = "0123456789abcdef"
	for i := 15; i >= 0; i-- {
		dst[i] = digits[v&15]
		v >>= 4
	}
}

// crc16 is the CRC-16/XMODEM checksum Redis Cluster hashes keys with.
func crc16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc ^= uint16(c) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

func appendF64(b []byte, f float64) []byte {
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
}

func (s *redisStore) roundTrip(ctx context.Context, round uint64, takes []*waiter, adjs []adjustOp) {
	s.ncalls = 0
	clear(s.bySlot)
	adjs = s.mergeAdjusts(adjs)
	// Settlements go first: a Settle followed by a Take from the same request sees the
	// settlement, whichever rounds they travel in.
	for i := range adjs {
		s.callFor(s.slotOf(adjs[i].tag)).appendAdjust(&adjs[i])
	}
	for _, w := range takes {
		var done uint8 // buckets already placed, one bit each
		for first := range int(w.n) {
			if done&(1<<first) != 0 {
				continue
			}
			slot := s.slotOf(w.tag[first])
			c := s.callFor(slot)
			c.recs = append(c.recs, rec{w: w})
			rc := &c.recs[len(c.recs)-1]
			nbPos := len(c.blob) + 1
			c.blob = append(c.blob, opTake, 0)
			for i := first; i < int(w.n); i++ {
				if done&(1<<i) != 0 || s.slotOf(w.tag[i]) != slot {
					continue
				}
				done |= 1 << i
				rc.idx[rc.nb] = uint8(i)
				rc.nb++
				s.appendBucket(c, w, i)
			}
			c.blob[nbPos] = rc.nb
			w.parts++
		}
	}
	s.checks.Add(uint64(len(takes)))
	calls := s.calls[:s.ncalls]
	after := s.markAfter(ctx)
	s.after.set(after)
	for _, c := range calls {
		c.marked = len(c.recs) > 0
		if c.marked {
			// The marker is the last key, tagged as the call's first bucket; its
			// lifetime and when to set it follow the operations.
			rc := &c.recs[0]
			c.mtag = rc.w.tag[rc.idx[0]]
			c.newKey().setMarker(c.mtag, c.id)
		}
		s.seal(c)
	}
	s.send(ctx, calls)
	if s.cluster && s.splitRefused(ctx, calls, after) {
		calls = s.calls[:s.ncalls]
	}

	for _, c := range calls {
		s.parse(c)
	}
	if s.every > 0 {
		s.granted(takes)
	}
	s.mu.Lock()
	for _, c := range calls {
		for i := range c.recs {
			rc := &c.recs[i]
			w := rc.w
			// Only a request split over Cluster slots can be admitted in part.
			if rc.ok && w.parts > 1 && (w.refused || w.failed) {
				s.undoLocked(w, rc.idx[:rc.nb])
			}
		}
	}
	s.mu.Unlock()
	// Checks nobody waits for any more are handed over before any check of the round
	// is delivered: what they give back goes before a refusal their charge caused is
	// cached.
	for i, w := range takes {
		if !w.refill && !w.state.CompareAndSwap(statePending, stateDone) {
			s.abandoned(w)
			takes[i] = nil
		}
	}
	s.voidRefusals(round, takes)
	for _, w := range takes {
		switch {
		case w == nil:
		case w.refill:
			s.release(w)
		default:
			w.done <- struct{}{}
		}
	}
}

// appendAdjust appends settlement a to the call.
func (c *call) appendAdjust(a *adjustOp) {
	c.ops = append(c.ops, *a)
	c.blob = append(c.blob, a.op)
	switch a.op {
	case opAdjust:
		c.appendKey(a.tag, a.bucket)
		c.blob = appendF64(appendF64(appendF64(c.blob, a.interval), a.tau), a.delta)
	case opRelease:
		c.appendKey(a.tag, a.bucket)
		c.blob = binary.LittleEndian.AppendUint64(c.blob, a.member)
	case opIfAdjust:
		c.appendMarker(a.mtag, a.member)
		c.blob = binary.LittleEndian.AppendUint16(c.blob, a.at)
		c.appendKey(a.tag, a.bucket)
		c.blob = appendF64(appendF64(appendF64(c.blob, a.interval), a.tau), a.delta)
	case opFence:
		c.appendMarker(a.mtag, a.member)
	}
}

// appendBucket appends bucket i of w's check to a take operation of the call.
func (s *redisStore) appendBucket(c *call, w *waiter, i int) {
	r := &w.pol.rules[i]
	if r.kind == kindConcurrency {
		c.blob = append(c.blob, bucketConc)
		c.appendKey(w.tag[i], w.bucket[i])
		c.blob = appendF64(appendF64(appendF64(c.blob, r.burst), s.leaseUS), 0)
		c.blob = binary.LittleEndian.AppendUint64(c.blob, w.lease[i])
		return
	}
	c.blob = append(c.blob, bucketRate)
	c.appendKey(w.tag[i], w.bucket[i])
	iv := r.interval / 1e3
	c.blob = appendF64(appendF64(appendF64(appendF64(c.blob, iv), r.burst*iv), w.cost[i]), w.want[i])
}

// seal completes the call's arguments once its operations are in: the key count, the
// operations, and for a call that carries checks its marker's lifetime (none for a
// call without one: c.marked false) and s.after.
func (s *redisStore) seal(c *call) {
	c.args[2] = len(c.args) - 3
	c.args = append(c.args, &c.blob)
	switch {
	case c.marked:
		c.args = append(c.args, s.markTTL, &s.after)
	case len(c.recs) > 0:
		c.args = append(c.args, s.noMark, &s.after)
	}
}

// send sends calls in one pipeline and, for those that found the script missing, a
// second one.
func (s *redisStore) send(ctx context.Context, calls []*call) {
	s.exec(ctx, calls, false)
	// A restarted or failed-over Redis, or a Cluster node that never ran the script
	// (one a slot is being migrated to), has lost the script; EVAL loads it again.
	var again []*call
	for _, c := range calls {
		if err := c.cmd.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			again = append(again, c)
		}
	}
	if len(again) > 0 {
		s.exec(ctx, again, true)
	}
}

// splitRefused sends again, at once and under the same deadline, what calls Redis
// refused with TRYAGAIN, and reports whether it sent anything. Redis Cluster refuses
// so a call on a slot being migrated (resharding) unless all its keys are on the node
// it reaches, and a call's marker hardly ever exists: left at that, every check on
// the slot would fail for as long as the migration lasts. TRYAGAIN means the call did
// not run, so its settlements and checks go again, in calls of one key each, which
// either node serves: the owner if the key is there, the node it moves to (ASK)
// otherwise. Such a call has no marker; instead it refuses to run past after, when a
// marked call would set its marker (check.lua), so a lost answer needs no fence: the
// call ran in time or never runs, as a marked call run in time leaves nothing either.
// A check split over keys is all or nothing in effect, as one split over slots
// (roundTrip). Fences and compensations name markers, absent too: they wait for the
// next heartbeat, as after any refused call (sendAgain). Checks are not sent again
// before a heartbeat has read Redis's clock (after is zero), which they could not run
// by.
func (s *redisStore) splitRefused(ctx context.Context, calls []*call, after int64) bool {
	first := s.ncalls
	// The index of merged settlements is free again: it maps a key to its call.
	clear(s.adjIndex)
	for _, c := range calls {
		if err := c.cmd.Err(); err == nil || !redis.HasErrorPrefix(err, "TRYAGAIN") {
			continue
		}
		kept := c.ops[:0]
		for i := range c.ops {
			a := &c.ops[i]
			if a.op == opAdjust || a.op == opRelease {
				s.keyCall(a.tag, a.bucket).appendAdjust(a)
			} else {
				kept = append(kept, *a)
			}
		}
		c.ops = kept
		if after == 0 {
			continue
		}
		for i := range c.recs {
			rc := &c.recs[i]
			w := rc.w
			w.parts-- // rc is replaced by one part per bucket
			for _, b := range rc.idx[:rc.nb] {
				to := s.keyCall(w.tag[b], w.bucket[b])
				to.recs = append(to.recs, rec{w: w, nb: 1})
				to.recs[len(to.recs)-1].idx[0] = b
				to.blob = append(to.blob, opTake, 1)
				s.appendBucket(to, w, int(b))
				w.parts++
			}
		}
		clear(c.recs)
		c.recs = c.recs[:0]
	}
	again := s.calls[first:s.ncalls]
	if len(again) == 0 {
		return false
	}
	for _, c := range again {
		s.seal(c)
	}
	s.send(ctx, again)
	return true
}

// keyCall returns the call of splitRefused that the next operation on key (tag,
// bucket) goes into: one key per call.
func (s *redisStore) keyCall(tag, bucket uint64) *call {
	k := keyID{tag, bucket}
	if i, ok := s.adjIndex[k]; ok && s.calls[i].nops < maxOpsPerCall {
		c := s.calls[i]
		c.nops++
		return c
	}
	c := s.newCall()
	s.adjIndex[k] = s.ncalls - 1
	c.nops++
	return c
}

// mergeAdjusts folds the settlements of one bucket in a round into as few as it can (in
// place): a hot key settles about once per round instead of once per request. Only
// settlements of one sign fold, into the last of the bucket's so far: charges add up
// as they would one by one, and so do refunds, but a refund and a charge do not, once
// a reload lowered the bucket's limit (check.lua's refund takes a refund of a request
// admitted before it off what the lowered burst let go first, and a charge off
// nothing of it), so each run of one sign lands as the settlements would one by one in
// the order they came.
func (s *redisStore) mergeAdjusts(adjs []adjustOp) []adjustOp {
	if len(adjs) < 2 {
		return adjs
	}
	clear(s.adjIndex)
	out := adjs[:0]
	for _, a := range adjs {
		if a.op == opAdjust {
			k := keyID{a.tag, a.bucket}
			if j, ok := s.adjIndex[k]; ok && out[j].interval == a.interval && out[j].tau == a.tau && (out[j].delta < 0) == (a.delta < 0) {
				out[j].delta += a.delta
				continue
			}
			s.adjIndex[k] = len(out)
		}
		out = append(out, a)
	}
	return out
}

// onceCmd is a script call go-redis never sends again: it resends a pipeline whose
// connection broke after it was written (a client up to MaxRetries times, a Cluster
// up to MaxRedirects), and a call that ran before the break would then charge or
// settle twice. A call whose answer is lost is made good through its marker
// (markUnsure) instead. MOVED and ASK still redirect it: Redis did not run it.
type onceCmd struct{ *redis.Cmd }

func (onceCmd) NoRetry() bool { return true }

// failUnsent gives cmd its pipeline's error err when go-redis left it with neither
// a reply nor an error, as it does when Redis refuses the connection itself (AUTH
// failing with WRONGPASS after a password rotation): cmd was never sent, and Redis's
// refusal is what it failed of.
func failUnsent(cmd *redis.Cmd, err error) {
	if cmd.Err() == nil && cmd.Val() == nil {
		cmd.SetErr(err)
	}
}

func (s *redisStore) exec(ctx context.Context, calls []*call, eval bool) {
	pipe := s.c.Pipeline()
	for _, c := range calls {
		if eval {
			c.args[0], c.args[1] = "eval", checkScript
		}
		c.cmd = redis.NewCmd(ctx, c.args...)
		_ = pipe.Process(ctx, onceCmd{c.cmd})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		for _, c := range calls {
			failUnsent(c.cmd, err)
		}
	}
	s.roundTrips.Add(1)
	s.scriptCalls.Add(uint64(len(calls)))
}

func (s *redisStore) parse(c *call) {
	out, err := c.cmd.Text()
	if err != nil {
		s.sendAgain(c.ops, err)
	} else {
		s.sent.add(c.ops, s.l.nanotime())
		need := 0
		for i := range c.recs {
			need += takeRecBytes + int(c.recs[i].nb)*bucketBytes
		}
		if len(out) != need {
			// The script ran, settlements included; only the checks' answers are
			// unreadable.
			err = errors.New("limiter: script reply of " + strconv.Itoa(len(out)) + " bytes, want " + strconv.Itoa(need))
		}
	}
	if err != nil {
		if !scriptNotRun(err) {
			s.keepReleases(c.recs)
			// A call without a marker ran in time or never runs (splitRefused):
			// there is nothing to fence or compensate.
			if c.marked {
				s.markUnsure(c)
			}
		}
		for i := range c.recs {
			w := c.recs[i].w
			w.failed = true
			// A check split over calls degrades the limiter (result) if any of
			// them failed for Redis, not for its slot alone.
			if w.err == nil || slotRefusal(w.err) {
				w.err = err
			}
		}
		return
	}
	p := 0
	for i := range c.recs {
		rc := &c.recs[i]
		w := rc.w
		rc.ok = out[p] == 1
		ref := int(out[p+1])
		retry := math.Float64frombits(leUint64(out[p+2:]))
		p += takeRecBytes
		if !rc.ok {
			w.refused = true
			if retry > w.retry && ref >= 1 && ref <= int(rc.nb) {
				w.retry, w.ref = retry, int(rc.idx[ref-1])
			}
		}
		for j := range int(rc.nb) {
			k := rc.idx[j]
			w.remaining[k] = math.Float64frombits(leUint64(out[p:]))
			w.reset[k] = math.Float64frombits(leUint64(out[p+8:]))
			w.granted[k] = math.Float64frombits(leUint64(out[p+16:]))
			p += bucketBytes
		}
	}
}

// sendAgain keeps the settlements of a failed call to be sent once Redis answers a
// heartbeat again (resend): a concurrency slot released during a blip would
// otherwise stay taken until its lease ends, minutes after the request. A release is
// a ZREM of a unique lease, harmless twice, so it is always kept, and so are a failed
// call's fence and compensations, which Redis applies once however often they come. A
// token adjustment applied twice would refund or charge twice, so it is kept only when
// the call surely did not run (scriptNotRun) and dropped, and counted, otherwise.
func (s *redisStore) sendAgain(ops []adjustOp, err error) {
	if len(ops) == 0 {
		return
	}
	notRun := scriptNotRun(err)
	s.retry.mu.Lock()
	for _, a := range ops {
		if a.op == opAdjust && !notRun {
			s.dropped.Add(1)
			continue
		}
		s.keepLocked(a)
	}
	s.retry.mu.Unlock()
}

// retryList is the settlements kept to be sent again. Stores share one across a
// reload (NewFrom): what the old store could not send, whether from before the reload
// or from its requests that end after it, is sent by whichever store's heartbeat Redis
// answers first, the new one's once the old one has closed, rather than dropped with
// the old store. Its lock is taken after a store's mu, never before.
type retryList struct {
	mu  sync.Mutex
	ops []adjustOp
}

// keepLocked keeps a to be sent again (resend), or drops and counts it when
// maxPendingAdjust are kept already; s.retry.mu must be held.
func (s *redisStore) keepLocked(a adjustOp) {
	if len(s.retry.ops) >= maxPendingAdjust {
		s.dropped.Add(1)
		return
	}
	s.retry.ops = append(s.retry.ops, a)
}

// keepReleases keeps, to be sent with the settlements of sendAgain, a release of each
// concurrency slot the checks of a failed call asked for. The call may have run, or
// may run yet: a stalled Redis runs what it already received when it resumes. Its
// requests were answered without Redis, and settle without it, so nothing else would
// free such a slot before its lease ends. A release of a slot never taken is harmless.
func (s *redisStore) keepReleases(recs []rec) {
	s.retry.mu.Lock()
	defer s.retry.mu.Unlock()
	for i := range recs {
		w := recs[i].w
		for _, k := range recs[i].idx[:recs[i].nb] {
			if w.pol.rules[k].kind == kindConcurrency {
				s.keepLocked(adjustOp{op: opRelease, bucket: w.bucket[k], tag: w.tag[k], member: w.lease[k]})
			}
		}
	}
}

// markUnsure records what each check of c, a call that failed in a way that may have
// run it, may have charged (waiter.unsure), to be compensated according to how its
// request is answered (compensate), and keeps a fence of c's marker to send once Redis
// answers: a call that has not run by then, still on its way or in a stalled Redis's
// input, then never runs (check.lua).
func (s *redisStore) markUnsure(c *call) {
	var at uint16
	for i := range c.recs {
		rc := &c.recs[i]
		w := rc.w
		for _, k := range rc.idx[:rc.nb] {
			at++ // the bucket's byte in the marker, as check.lua writes them
			if w.pol.rules[k].kind != kindConcurrency {
				w.unsure[k] = unsure{id: c.id, mtag: c.mtag, at: at, cost: w.cost[k]}
				w.unsureMask |= 1 << k
			}
		}
	}
	s.retry.mu.Lock()
	s.keepLocked(adjustOp{op: opFence, tag: c.mtag, mtag: c.mtag, member: c.id})
	s.retry.mu.Unlock()
}

// compensate keeps, to be sent once Redis answers a heartbeat, an adjustment of each
// charge in mask that a check on buckets (tag, bucket) of pol may have made before its
// call failed (u): Redis applies it only if the call ran and admitted the check, and
// only once, however often it is sent (check.lua, op 4), so it is kept again whenever
// its own call fails. A request that was not served gives back all it was charged; a
// served one (answered from this replica's share) keeps its request counted and has
// its metered buckets trued up to actual (the estimate for KeepEstimate, resolved by
// Settle).
func (s *redisStore) compensate(pol *Policy, tag, bucket *[MaxLimits]uint64, u *[MaxLimits]unsure, mask uint8, served bool, actual Amounts) {
	rules := pol.rules
	s.retry.mu.Lock()
	defer s.retry.mu.Unlock()
	for i := range u {
		if mask&(1<<i) == 0 {
			continue
		}
		r := &rules[i]
		if delta := answeredDelta(r, u[i].cost, served, actual); delta != 0 {
			a := adjustOf(tag[i], bucket[i], r.interval, r.burst, delta)
			a.op, a.at, a.member, a.mtag = opIfAdjust, u[i].at, u[i].id, u[i].mtag
			s.keepLocked(a)
		}
	}
}

// answeredDelta is the adjustment that settles a charge of cost to bucket r in Redis
// once its request was answered without Redis: all of it back for a request not
// served; for a served one a metered bucket trued up to actual, counts (Settle
// resolves KeepEstimate to the estimate, of which cost may be only the burst), the
// request staying counted. Zero is nothing to send.
func answeredDelta(r *rule, cost float64, served bool, actual Amounts) float64 {
	switch {
	case !served:
		return -cost
	case !r.kind.metered():
		return 0
	}
	return float64(actual.of(r.kind)) - cost
}

// resend queues the settlements kept by sendAgain; the prober calls it when Redis
// answers a heartbeat, so that while Redis fails they are tried once per probe rather
// than in a loop.
func (s *redisStore) resend() {
	s.mu.Lock()
	s.retry.mu.Lock()
	n := len(s.retry.ops)
	for _, a := range s.retry.ops {
		s.queueAdjustLocked(a)
		if a.op == opIfAdjust && a.delta < 0 {
			s.returningLocked(keyID{a.tag, a.bucket})
		}
	}
	s.retry.ops = s.retry.ops[:0]
	s.retry.mu.Unlock()
	s.mu.Unlock()
	if n > 0 {
		s.kickLater()
	}
}

// notRunPrefixes are the Redis errors with which it refuses a script call before
// running it (authentication, ACL, loading, another script running, cluster or
// replication state, missing script), or with which a script's first write fails
// (READONLY, OOM, MISCONF, NOREPLICAS): the script writes nothing before that one,
// and Redis 7 passes these codes through from inside a script; and TGLATE, with which
// check.lua refuses a call without a marker before it writes anything. The space
// keeps BUSY from matching BUSYKEY and the like.
var notRunPrefixes = [...]string{
	"NOAUTH ", "WRONGPASS ", "NOPERM ", "LOADING ", "BUSY ", "MASTERDOWN ", "CLUSTERDOWN ",
	"TRYAGAIN ", "MOVED ", "ASK ", "CROSSSLOT ", "NOSCRIPT ", "READONLY ", "OOM ", "MISCONF ",
	"NOREPLICAS ", "TGLATE ",
}

// slotRefusals are the errors with which Redis Cluster refuses a call for its hash
// slot alone: one being migrated (TRYAGAIN, or a redirection the client could not
// follow), or not served by any node while the cluster still serves the others.
// TGLATE refuses one call that reached Redis late. Redis is not failing: the call's
// requests are answered without it, and the limiter stays undegraded, its other
// checks answered by Redis (result); with the whole limiter degraded until the next
// heartbeat, a reshard would send every request of the replica to its share, or to
// 503 with on_redis_error: deny, each time a slot it touches moves.
var slotRefusals = [...]string{
	"TRYAGAIN ", "MOVED ", "ASK ", "CLUSTERDOWN Hash slot not served", "TGLATE ",
}

// slotRefusal reports whether err refused one call alone (slotRefusals).
func slotRefusal(err error) bool {
	for _, p := range slotRefusals {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}

// scriptNotRun reports whether a failed script call surely did not run: it never
// left this process (no connection could be dialed or had from the pool, the client
// was closed) or Redis refused it (notRunPrefixes). Any other failure, a timeout
// above all, or a connection cut while the reply was awaited, or an error raised
// inside the script, may come after Redis ran it (go-redis never sends a call
// again: onceCmd).
func scriptNotRun(err error) bool {
	if op, ok := errors.AsType[*net.OpError](err); ok && op.Op == "dial" {
		return true
	}
	if errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrClosed) {
		return true
	}
	for _, p := range notRunPrefixes {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}

func leUint64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// abandoned frees the concurrency slots Redis gave a check whose request stopped
// waiting (the request counts its own slot in its local bucket), and hands the check
// over to be settled (handOver). A failed call's slots are released already
// (keepReleases).
func (s *redisStore) abandoned(w *waiter) {
	if !w.failed && !w.refused {
		rules := w.pol.rules
		s.mu.Lock()
		for i := range int(w.n) {
			if rules[i].kind == kindConcurrency {
				s.queueAdjustLocked(adjustOp{op: opRelease, bucket: w.bucket[i], tag: w.tag[i], member: w.lease[i]})
			}
		}
		s.mu.Unlock()
	}
	s.arrive(w)
}

// handOver is the request's side of a check it stopped waiting for: served says
// whether it was answered (from this replica's share), with actual amounts.
func (s *redisStore) handOver(w *waiter, served bool, actual Amounts) {
	w.served, w.actual = served, actual
	s.arrive(w)
}

// arrive counts one of the two sides of a check whose request stopped waiting, the
// round that carried it (abandoned) and the request (handOver); the second settles
// what Redis admitted of it as the request was answered (settleLate) and returns it
// to the pool.
func (s *redisStore) arrive(w *waiter) {
	if w.hand.Add(1) < 2 {
		return
	}
	s.settleLate(w)
	s.release(w)
}

// settleLate settles in Redis a check whose request was answered without it: a
// request served from this replica's share stays counted there and has its tokens
// trued up, as any other; one not served (a 503 with on_redis_error: deny, refused by
// the share, or its client gone) gives back all it was charged. What a failed call may
// have charged is settled alike, if the call ran (compensate).
func (s *redisStore) settleLate(w *waiter) {
	rules := w.pol.rules
	switch {
	case w.failed:
		if w.unsureMask != 0 {
			s.compensate(w.pol, &w.tag, &w.bucket, &w.unsure, w.unsureMask, w.served, w.actual)
		}
		return
	case w.refused:
		return
	}
	queued := false
	s.mu.Lock()
	for i := range int(w.n) {
		r := &rules[i]
		if r.kind == kindConcurrency {
			continue
		}
		if delta := answeredDelta(r, w.cost[i], w.served, w.actual); delta != 0 {
			s.queueAdjustLocked(adjustOf(w.tag[i], w.bucket[i], r.interval, r.burst, delta))
			if delta < 0 {
				s.returningLocked(keyID{w.tag[i], w.bucket[i]})
			}
			queued = true
		}
	}
	s.mu.Unlock()
	if queued {
		s.kickLater()
	}
}

func (s *redisStore) release(w *waiter) {
	w.pol, w.err = nil, nil
	s.pool.Put(w)
}

func scriptSHA(src string) string {
	return redis.NewScript(src).Hash()
}
