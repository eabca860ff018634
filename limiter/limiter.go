// Package limiter enforces request, token and concurrency limits.
//
// Limits are token buckets (capacity burst, refilled per window) kept either in this
// process (store: memory) or in Redis (store: redis), where one Lua script takes all of
// a request's buckets atomically by Redis's own clock so that every replica shares one
// global bucket. Checks from concurrent requests travel to Redis together in one script
// call, so under load a check costs a fraction of a round trip. When Redis fails or is
// slower than the per-check timeout, a replica answers from a local bucket sized as its
// share of each limit (or refuses, with on_redis_error: deny) until Redis answers again.
//
// On Redis Cluster a key's hash tag is its policy's scope and the subject it counts, so
// the limits of one scope that count the same subject share a slot and one script call;
// different subjects spread over the cluster. A request whose limits span slots (say
// per-key and per-endpoint limits) is checked on each slot in the same round trip and,
// when one slot refuses, what the others admitted is given back in the next round: all
// or nothing in effect, though another request may see the brief charge.
//
// The request path is:
//
//	err := l.Take(ctx, pol, &subj, estimate, t) // before calling the upstream
//	...
//	l.Settle(t, usage) // after the response: true-up tokens, free concurrency slots
//
// A policy with a spend budget (usd, CountsUSD) takes the request's cost too:
// TakeAmounts with its token and cost estimates, SettleAmounts with the actual ones.
package limiter

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// ErrUnavailable is returned by Take when Redis cannot answer within the timeout and
// on_redis_error is deny; the gateway answers 503.
var ErrUnavailable = errors.New("limiter: limit store unavailable")

// KeepEstimate passed to Settle as the actual token count charges the request its
// whole estimate, for requests whose usage is unknown: what Take charged, and the part
// of an estimate above a bucket's burst (or this replica's share) that it could not.
// As a field of Amounts passed to SettleAmounts it keeps that field's estimate.
const KeepEstimate = -1

// Amounts are what a request counts against the metered limits: its tokens (tokens
// limits) and its cost in nano-dollars, billionths of a US dollar (usd limits). Take
// charges estimates of them, Settle trues them up to the actual ones.
type Amounts struct {
	Tokens  int64
	NanoUSD int64
}

// of is the amount a metered bucket of kind k counts.
func (a Amounts) of(k kind) int64 {
	if k == kindUSD {
		return a.NanoUSD
	}
	return a.Tokens
}

// maxNanoUSD bounds a cost in nano-dollars (2^62, $4.6 billion), so that whatever a
// price list and a token count make of it stays an int64.
const maxNanoUSD = 1 << 62

// NanoUSD is usd dollars (a cost, as the cost counter adds it) in whole nano-dollars,
// the nearest, for SettleAmounts: 0 for a negative or NaN cost, at most 2^62.
func NanoUSD(usd float64) int64 {
	n := math.Round(usd * NanoPerUSD)
	if !(n > 0) {
		return 0
	}
	return int64(min(n, maxNanoUSD))
}

// NanoUSDUp is NanoUSD rounded up, for an estimate: a request is never charged less
// than a cost it could reach.
func NanoUSDUp(usd float64) int64 { return NanoUp(usd * NanoPerUSD) }

// NanoUp is nano, an amount in nano-dollars, rounded up to a whole one, for an
// estimate made in nano-dollars (where prices times counts in whole numbers stay
// whole, which a detour through dollars would round): 0 for a negative or NaN
// amount, at most 2^62.
func NanoUp(nano float64) int64 {
	n := math.Ceil(nano)
	if !(n > 0) {
		return 0
	}
	return int64(min(n, maxNanoUSD))
}

// Refused is the error Take returns when a limit has no room for the request; nothing
// was charged. It lives inside the Ticket, so refusing allocates nothing: it is valid
// until the Ticket is reused.
type Refused struct {
	// Limit is the configured limit that refused.
	Limit Limit
	// Policy is the scope name of the policy the limit belongs to.
	Policy string
	// RetryAfter is when the limit would admit the request, if nothing else is taken
	// meanwhile; AppendRetryAfter turns it into the header value.
	RetryAfter time.Duration
	msg        string
}

// Error says which limit refused, without any subject value.
func (e *Refused) Error() string { return e.msg }

// Quota is one bucket's state for the x-ratelimit-* headers.
type Quota struct {
	// Limit is the bucket's capacity, the larger of the per-window amount and the
	// burst, so that Remaining never exceeds it; zero when no limit of the kind applies.
	Limit int64
	// Remaining is what the bucket could still admit now.
	Remaining int64
	// Reset is how long until the bucket is full again.
	Reset time.Duration
}

type source uint8

const (
	srcNone source = iota
	srcMemory
	srcFallback
	srcRedis
)

// Ticket carries one request from Take to Settle and the values of its rate-limit
// headers. The caller owns it and may pool it: Take overwrites it completely.
type Ticket struct {
	// Requests is the tightest requests bucket of the policy after this check.
	Requests Quota
	// Tokens is the tightest tokens bucket of the policy after this check.
	Tokens Quota
	// USD is the tightest usd bucket of the policy after this check, in nano-dollars
	// (AppendUSD writes them as dollars).
	USD Quota
	// RetryAfter is set when Take refused.
	RetryAfter time.Duration

	refused Refused
	pol     *Policy
	src     source
	n       uint8
	share   float64
	bucket  [MaxLimits]uint64
	tag     [MaxLimits]uint64
	cost    [MaxLimits]float64
	lease   [MaxLimits]uint64
	slot    [MaxLimits]int32 // where the redis store keeps each lease to renew it
	// est are the estimates Take was given, uncapped: what KeepEstimate settles at,
	// where cost may hold only a bucket's burst of them (locate, memStore.take).
	est Amounts
	// unsure are the charges in Redis of a check whose call failed in a way that may
	// have run it, one per bit of unsureMask; the request answered without Redis
	// settles them there too (Limiter.Take, Limiter.Settle).
	unsure     [MaxLimits]unsure
	unsureMask uint8
	// late is a check the request stopped waiting for, still on its way: how the
	// request is answered is handed over to settle it in Redis (Limiter.compensate).
	late *waiter
}

func (t *Ticket) clear() {
	t.Requests, t.Tokens, t.USD, t.RetryAfter = Quota{}, Quota{}, Quota{}, 0
	t.pol, t.src, t.n, t.unsureMask, t.late = nil, srcNone, 0, 0, nil
}

// observe keeps the tightest bucket of each kind for the headers.
func (t *Ticket) observe(r *rule, remaining float64, reset time.Duration) {
	var q *Quota
	switch r.kind {
	case kindRequests:
		q = &t.Requests
	case kindTokens:
		q = &t.Tokens
	case kindUSD:
		q = &t.USD
	default:
		return
	}
	limit := max(r.amount, int64(r.burst))
	var rem int64
	if remaining > 0 {
		// Truncation is floor for positive values; never above the bucket (units
		// this replica holds ahead, Redis's rounding slack).
		rem = min(int64(remaining), int64(r.burst))
	}
	if reset < 0 {
		reset = 0
	}
	if q.Limit == 0 || rem < q.Remaining || (rem == q.Remaining && reset > q.Reset) {
		*q = Quota{Limit: limit, Remaining: rem, Reset: reset}
	}
}

func (t *Ticket) refuse(i int, retry time.Duration) error {
	r := &t.pol.rules[i]
	t.RetryAfter = retry
	t.refused = Refused{Limit: r.lim, Policy: r.scope, RetryAfter: retry, msg: r.msg}
	t.src = srcNone
	return &t.refused
}

// Stats are counters for the metrics package; all but Degraded and Replicas only grow.
type Stats struct {
	// Degraded is true while Redis is failing and checks are answered locally.
	Degraded bool
	// Replicas is the replica count the fallback share is computed from.
	Replicas int
	// Refused counts checks refused by a limit.
	Refused uint64
	// Fallbacks counts checks answered from a local share bucket because Redis failed.
	Fallbacks uint64
	// Unavailable counts checks answered with ErrUnavailable (on_redis_error: deny).
	Unavailable uint64
	// RedisChecks counts checks sent to Redis, prefetch refills included.
	RedisChecks uint64
	// RedisAnswered counts requests' checks that Redis answered (admitted or refused).
	RedisAnswered uint64
	// RoundTrips counts pipelines sent to Redis; RedisChecks/RoundTrips is the batching.
	RoundTrips uint64
	// ScriptCalls counts script invocations (one per pipeline and Cluster slot).
	ScriptCalls uint64
	// DroppedSettles counts settlements lost: token adjustments whose call failed in a
	// way that may have applied them (a timeout), and any past the queue's bound.
	// Releases, and adjustments Redis surely did not run, are sent again once it
	// answers.
	DroppedSettles uint64
	// LocalChecks counts checks answered from units prefetched from Redis (prefetch).
	LocalChecks uint64
	// RefusedLocally counts requests refused without a round trip because Redis had
	// refused their requests bucket until a retry time not yet come.
	RefusedLocally uint64
	// ReturnedUnits counts prefetched units given back to Redis unspent.
	ReturnedUnits uint64
}

type options struct {
	now            func() time.Time
	heartbeatEvery time.Duration
	probeEvery     time.Duration
	sweepEvery     time.Duration
}

func defaultOptions() options {
	return options{
		now:            nil, // time.Now, read as cheaply as possible
		heartbeatEvery: time.Second,
		probeEvery:     250 * time.Millisecond,
		sweepEvery:     time.Minute,
	}
}

// Limiter checks requests against policies. It is safe for concurrent use and meant to
// live across configuration reloads (its buckets do); Close it once.
type Limiter struct {
	log   *slog.Logger
	opt   options
	epoch time.Time
	mem   *memStore // the memory store, or the redis store's local fallback
	rs    *redisStore
	deny  bool
	// replicas is the configured replica count; zero means use live.
	replicas int
	live     atomic.Int64
	// members is shared by every limiter of the process's chain of reloads.
	members *members

	degraded atomic.Bool
	// recoveries counts the limiter's recoveries, so that a check's failure can tell
	// whether it began before the last one (checkFailed).
	recoveries  atomic.Uint64
	refused     atomic.Uint64
	fallbacks   atomic.Uint64
	unavailable atomic.Uint64

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New validates cfg and starts a limiter. With the redis store it connects in the
// background: an unreachable Redis at start is not an error, the limiter starts
// degraded and recovers when Redis answers.
func New(cfg Config, logger *slog.Logger) (*Limiter, error) {
	return newLimiter(cfg, logger, defaultOptions(), nil)
}

// NewFrom is New for a config that replaces prev's (a reload): the new limiter takes
// over prev's in-process buckets, the memory store's and the redis store's fallback
// ones, with their clock, so that a reload that touches the limiter section does not
// refill every bucket and forget the requests in flight. A request's concurrency slot
// carries over where it is kept: in Redis for a request Redis admitted (counted by the
// new limiter on the same Redis only; such a slot is counted in the in-process buckets
// too, for the fallback share, so a memory store after it counts it), in the
// in-process buckets for one the memory store or the fallback admitted; a switch to
// another Redis leaves the slots the old one held uncounted by the new one until their
// requests end. On the same Redis it also shares prev's settlements kept to send again
// after a failed call (a release during a Redis blip), and the releases Redis answered
// lately, sent again once another Redis answers the heartbeat (resendReleases), by
// whichever limiter notices first. prev goes on settling its own tickets into the same
// buckets and list until it is closed; closing it leaves them to the new limiter, which
// sends what is kept once Redis answers its heartbeat. Both register in Redis as the
// same replica, as do all limiters of a chain of reloads in each Redis they use: the
// live replica count, which sets the share each replica answers from while Redis fails,
// counts the process once while prev still runs requests.
func NewFrom(cfg Config, logger *slog.Logger, prev *Limiter) (*Limiter, error) {
	return newLimiter(cfg, logger, defaultOptions(), prev)
}

func newLimiter(cfg Config, logger *slog.Logger, o options, prev *Limiter) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	l := &Limiter{
		log:      logger,
		opt:      o,
		epoch:    time.Now(),
		mem:      newMemStore(),
		deny:     cfg.OnRedisError == "deny",
		replicas: cfg.Replicas,
		members:  newMembers(),
		stop:     make(chan struct{}),
	}
	if o.now != nil {
		l.epoch = o.now()
	}
	l.live.Store(1)
	if prev != nil {
		// The buckets hold times on prev's clock.
		l.mem, l.epoch = prev.mem, prev.epoch
		// The replicas Redis last reported: this process has reached it, and a reload
		// during an outage must not make it answer from the whole of every limit.
		l.live.Store(prev.live.Load())
		// One process, one replica: prev may run requests (and heartbeat) for
		// minutes yet.
		l.members = prev.members
	}
	if cfg.Store == "redis" {
		logRedisTo(logger)
		rs, err := newRedisStore(l, &cfg)
		if err != nil {
			return nil, err
		}
		l.rs = rs
		if prev != nil && prev.rs != nil && prev.rs.target == rs.target {
			rs.retry = prev.rs.retry
			rs.sent = prev.rs.sent
		}
		// One bounded probe up front, so a limiter whose Redis is down starts degraded
		// instead of making its first requests wait for the timeout.
		l.probeOnce()
		l.wg.Add(2)
		go rs.run()
		go l.probe()
	}
	l.wg.Add(1)
	go l.sweep()
	return l, nil
}

// Close stops the background work (the heartbeat that renews leases with it), sends
// settlements still queued, gives back the Redis concurrency slots of requests still
// in flight and closes the Redis connections. Those requests may still Settle after
// it, harmlessly.
func (l *Limiter) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.stop)
		l.wg.Wait()
		if l.rs != nil {
			err = l.rs.close()
			// The client's messages held back in the current window are counted
			// now: the process may exit before the window's timer runs.
			flushRedisLogs()
		}
	})
	return err
}

// Degraded reports whether checks are currently answered without Redis.
func (l *Limiter) Degraded() bool { return l.degraded.Load() }

// Stats returns the limiter's counters.
func (l *Limiter) Stats() Stats {
	s := Stats{
		Degraded:    l.degraded.Load(),
		Replicas:    int(l.share()),
		Refused:     l.refused.Load(),
		Fallbacks:   l.fallbacks.Load(),
		Unavailable: l.unavailable.Load(),
	}
	if l.rs != nil {
		s.RedisChecks = l.rs.checks.Load()
		s.RedisAnswered = l.rs.answered.Load()
		s.RoundTrips = l.rs.roundTrips.Load()
		s.ScriptCalls = l.rs.scriptCalls.Load()
		s.DroppedSettles = l.rs.dropped.Load()
		s.LocalChecks = l.rs.prefetch.hits.Load()
		s.RefusedLocally = l.rs.refusals.hits.Load()
		s.ReturnedUnits = l.rs.back.Load()
	}
	return s
}

// nanotime is the limiter's clock for the memory store. time.Since reads only the
// monotonic clock, half the cost of time.Now, which matters at a 200ns budget.
func (l *Limiter) nanotime() int64 {
	if l.opt.now == nil {
		return int64(time.Since(l.epoch))
	}
	return int64(l.opt.now().Sub(l.epoch))
}

func (l *Limiter) share() float64 {
	if l.replicas > 0 {
		return float64(l.replicas)
	}
	return float64(max(l.live.Load(), 1))
}

// Take charges one request to every limit of pol, all or none: one unit of each
// requests bucket, estTokens of each tokens bucket (at most its burst, or this
// replica's share of it while Redis fails; Settle charges the rest) and one slot of
// each concurrency limit. It fills t with the header values and returns nil, a
// *Refused, ErrUnavailable, or the context's error if ctx ends first. Every admitted
// Take must be followed by one Settle with the same ticket. A nil or empty policy
// admits at once. A usd bucket is charged nothing: TakeAmounts gives it the cost.
func (l *Limiter) Take(ctx context.Context, pol *Policy, subj *Subject, estTokens int64, t *Ticket) error {
	return l.TakeAmounts(ctx, pol, subj, Amounts{Tokens: estTokens}, t)
}

// TakeAmounts is Take with the request's estimates of every metered amount: est.Tokens
// for each tokens bucket, est.NanoUSD for each usd bucket, each at most the bucket's
// burst (or this replica's share of it) with the rest charged by the settlement.
func (l *Limiter) TakeAmounts(ctx context.Context, pol *Policy, subj *Subject, est Amounts, t *Ticket) error {
	t.clear()
	if pol == nil || len(pol.rules) == 0 {
		return nil
	}
	pol.locateAmounts(subj, est, t)
	t.pol = pol
	var err error
	switch {
	case l.rs == nil:
		t.src, t.share = srcMemory, 1
		err = l.mem.take(t, 1, l.nanotime())
	case !l.degraded.Load():
		var answered bool
		if err, answered = l.rs.take(ctx, t); answered {
			if err == nil && t.src == srcRedis {
				l.mem.holdSlots(t)
			}
			break
		}
		fallthrough
	default:
		if l.deny {
			// What the check charged in Redis, or may have before it failed, goes
			// back there: the request is not served.
			l.compensate(t, false, Amounts{})
			l.unavailable.Add(1)
			return ErrUnavailable
		}
		l.fallbacks.Add(1)
		t.src, t.share = srcFallback, l.share()
		if err = l.mem.take(t, t.share, l.nanotime()); err != nil {
			l.compensate(t, false, Amounts{})
		} else {
			l.rs.holdShared(t)
		}
	}
	if err != nil && t.RetryAfter > 0 { // only a refusal sets RetryAfter
		l.refused.Add(1)
	}
	return err
}

// Settle ends a request admitted by Take: token buckets are charged actualTokens
// instead of what Take charged (a refund, or an overdraft the next requests wait for),
// or the whole estimate when actualTokens is KeepEstimate, and concurrency slots are
// released; usd buckets keep their estimate (SettleAmounts settles them). It never
// blocks on Redis. Settling a refused, empty or already settled ticket does nothing.
func (l *Limiter) Settle(t *Ticket, actualTokens int64) {
	l.SettleAmounts(t, Amounts{Tokens: actualTokens, NanoUSD: KeepEstimate})
}

// SettleAmounts is Settle with every metered amount: tokens buckets are trued up to
// actual.Tokens, usd buckets to actual.NanoUSD, each to its estimate where it is
// KeepEstimate (any negative value).
func (l *Limiter) SettleAmounts(t *Ticket, actual Amounts) {
	src := t.src
	t.src = srcNone
	// Take charged at most a bucket's burst (or share) of an estimate above it; the
	// stores true up to the estimate as to any count, which charges the rest.
	if actual.Tokens < 0 {
		actual.Tokens = t.est.Tokens
	}
	if actual.NanoUSD < 0 {
		actual.NanoUSD = t.est.NanoUSD
	}
	switch src {
	case srcMemory:
		l.mem.settle(t, actual, t.share, l.nanotime())
	case srcFallback:
		l.mem.settle(t, actual, t.share, l.nanotime())
		l.compensate(t, true, actual)
		l.rs.releaseShared(t)
	case srcRedis:
		l.mem.releaseSlots(t)
		l.rs.settle(t, actual)
	}
}

// compensate settles in Redis what t's check charged there although the request was
// answered without Redis: all of it for a request not served; for one served from this
// replica's share (served, with its actual amounts) the true-up of its metered
// buckets, which keeps its request counted. A check still on its way (t.late) is
// settled once Redis answers it; what a failed call may have charged (t.unsure), once
// Redis answers again and only if the call ran.
func (l *Limiter) compensate(t *Ticket, served bool, actual Amounts) {
	if t.unsureMask != 0 {
		l.rs.compensate(t.pol, &t.tag, &t.bucket, &t.unsure, t.unsureMask, served, actual)
		t.unsureMask = 0
	}
	if t.late != nil {
		l.rs.handOver(t.late, served, actual)
		t.late = nil
	}
}

// checkFailed marks Redis down for a check that failed, unless the limiter has
// recovered since the check began (began is recoveries then): a check sent as Redis
// went away fails only once its client's retries or its timeout run out, which a
// brief outage may outlast, and a failure from before the recovery says nothing of
// Redis now (it flapped the limiter back to degraded, and with deny refused the
// requests of the next heartbeat interval, on a Redis that answered).
func (l *Limiter) checkFailed(began uint64, cause error) {
	if l.recoveries.Load() != began {
		return
	}
	l.setDegraded(true, cause)
}

func (l *Limiter) setDegraded(on bool, cause error) {
	if !l.degraded.CompareAndSwap(!on, on) {
		return
	}
	switch {
	case !on:
		l.recoveries.Add(1)
		l.log.Info("limiter: redis answers again, limits are global again")
	case l.deny:
		l.log.Warn("limiter: redis unavailable, refusing limited requests (on_redis_error: deny)", "error", cause.Error())
	default:
		l.log.Warn("limiter: redis unavailable, answering from this replica's share of each limit (on_redis_error: allow)",
			"error", cause.Error(), "replicas", int(l.share()))
	}
}

// probe refreshes this replica's heartbeat in Redis, which also counts the live
// replicas, and is what brings a degraded limiter back.
func (l *Limiter) probe() {
	defer l.wg.Done()
	t := time.NewTimer(l.opt.heartbeatEvery)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		l.probeOnce()
		l.rs.giveBack(false)
		l.rs.sweepRefusals()
		if l.degraded.Load() {
			t.Reset(l.opt.probeEvery)
		} else {
			t.Reset(l.opt.heartbeatEvery)
		}
	}
}

func (l *Limiter) probeOnce() {
	n, err := l.rs.heartbeat()
	if err != nil {
		l.setDegraded(true, err)
		return
	}
	l.live.Store(n)
	if l.degraded.Load() || !l.rs.loaded {
		// A Redis that comes back may be a new process without the script; loading it
		// here spares the first batch a NOSCRIPT round trip.
		l.rs.loaded = l.rs.load() == nil
	}
	// Before the limiter counts as recovered, so that a check it then sends travels
	// after them.
	l.rs.resend()
	l.setDegraded(false, nil)
}

func (l *Limiter) sweep() {
	defer l.wg.Done()
	t := time.NewTicker(l.opt.sweepEvery)
	defer t.Stop()
	// The redis store's cached refusals are read back in Redis (recheckRefusals).
	var refusals <-chan time.Time
	var buf []recheck
	if l.rs != nil {
		r := time.NewTicker(recheckEvery)
		defer r.Stop()
		refusals = r.C
	}
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.mem.sweep(l.nanotime())
		case <-refusals:
			buf = l.rs.recheckRefusals(buf)
		}
	}
}
