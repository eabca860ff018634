package limiter

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cached refusals: when Redis refuses a request because a requests bucket is empty, it
// says when the next request fits (retry). Until then every request on that bucket
// would be refused too (a requests bucket only refills with time), so this replica
// answers them without a round trip. A client hammering past its limit then costs
// Redis one check per refill instead of one per request. Token buckets are not
// cached: a smaller request, or a settlement's refund, may fit sooner.
//
// Which limit a refusal names, and its retry, are those of the bucket that refuses
// for longest (check.lua), and another limit of the request may refuse it for longer
// than the requests bucket: a tokens bucket spent for half an hour. So the replica
// answers a request from the cache only when Redis has answered the same check (the
// same policy and buckets) under the refusal, asking no more of any tokens bucket than
// it asks now: every other bucket then had room by the retry Redis gave (vouch).
// Another check on the refused bucket (another user's tokens bucket, a larger
// estimate) is asked in Redis once, and is answered from the cache after that; one on
// the requests bucket alone needs no vouching.

// maxRefusalCache bounds how long a refusal is answered locally: an undone check (a
// request that gave up waiting for Redis) can return capacity earlier than retry.
const maxRefusalCache = 10 * time.Second

// refusal is what a replica knows of a requests bucket Redis refused.
type refusal struct {
	// until is when the entry stops answering, retryAt when Redis said the bucket
	// admits a request again: a requests bucket refused for six minutes is still
	// refused for six minutes when the entry says so ten seconds before it expires.
	until, retryAt, resetAt int64 // limiter nanotime
	// The rule's parameters when Redis refused: a reload that changes them makes the
	// entry void.
	interval, burst float64
	// gen numbers the entry. A refusal by Redis while the entry answers keeps it (the
	// bucket stayed refused, and what was vouched for under it still holds); one
	// after the entry was voided or expired starts a new one.
	gen uint64
	// seq is refusals.seqs when Redis last refused the bucket: a read of the bucket
	// begun after it says whether capacity came back since (recheckRefusals).
	seq uint64
}

// vouch is a check Redis refused for want of requests bucket at (rule ref of pol),
// under entry gen of it. Redis names the bucket that refuses for longest, so each
// other bucket of the check had room for its cost by retryAt: until then the same
// check, or one asking no more of any tokens bucket, is refused by at as this one was,
// and gets its header values, counting down from seenAt.
type vouch struct {
	at                     keyID
	gen                    uint64
	ref                    int
	until, retryAt, seenAt int64 // limiter nanotime
	pol                    *Policy
	n                      uint8
	tag, bucket            [MaxLimits]uint64
	cost                   [MaxLimits]float64
	requests, tokens, usd  Quota
}

// covers reports whether v vouches for t: the same policy and buckets, asking no
// more of any metered (tokens, usd) bucket.
func (v *vouch) covers(t *Ticket) bool {
	if v.pol != t.pol || v.n != t.n {
		return false
	}
	rules := t.pol.rules
	for i := range int(t.n) {
		if v.tag[i] != t.tag[i] || v.bucket[i] != t.bucket[i] ||
			(rules[i].kind.metered() && t.cost[i] > v.cost[i]) {
			return false
		}
	}
	return true
}

// checkID names a check by its buckets, the key of its vouch.
func checkID(n uint8, tag, bucket *[MaxLimits]uint64) uint64 {
	h := uint64(n)
	for i := range int(n) {
		h = mix64(h^tag[i], bucket[i])
	}
	return h
}

type refusals struct {
	rmu     sync.Mutex
	refused map[keyID]refusal
	vouched map[uint64]vouch // by checkID
	gens    uint64           // refusal.gen of the last entry made
	seqs    uint64           // refusal.seq of the last refusal remembered
	n       atomic.Int32     // len(refused), read without the lock
	hits    atomic.Uint64    // requests refused from the cache
	// returned maps a bucket that capacity is on its way back to (an undo, a give-back
	// of prefetched units, a compensation) to the last round taken out of the queue
	// when that was queued: a check of that round or an earlier one may have been
	// refused for want of what comes back, and is not cached (voidRefusals).
	returned map[keyID]uint64
	nret     atomic.Int32 // len(returned), read without the lock
}

// refusedLocally refuses t when a check like it was refused by Redis for want of a
// requests bucket whose retry time has not come (vouch), or when that bucket is all
// of t's.
func (s *redisStore) refusedLocally(t *Ticket) (error, bool) {
	if s.refusals.n.Load() == 0 {
		return nil, false
	}
	now := s.l.nanotime()
	id := checkID(t.n, &t.tag, &t.bucket)
	s.rmu.Lock()
	if v, ok := s.vouched[id]; ok && now < v.until && v.covers(t) {
		if e, ok := s.refused[v.at]; ok && e.gen == v.gen && now < e.until {
			s.rmu.Unlock()
			since := time.Duration(now - v.seenAt)
			t.Requests, t.Tokens, t.USD = v.requests, v.tokens, v.usd
			t.Requests.Reset = max(t.Requests.Reset-since, 0)
			t.Tokens.Reset = max(t.Tokens.Reset-since, 0)
			t.USD.Reset = max(t.USD.Reset-since, 0)
			s.refusals.hits.Add(1)
			// A later refusal of the bucket may have moved its retry (another
			// replica's requests); the other buckets had room by v's.
			return t.refuse(v.ref, time.Duration(max(e.retryAt, v.retryAt)-now)), true
		}
	}
	// A check on one requests bucket alone is refused by it alone, whatever vouched.
	if t.n == 1 {
		r := &t.pol.rules[0]
		e, ok := s.refused[keyID{t.tag[0], t.bucket[0]}]
		if ok && r.kind == kindRequests && now < e.until && e.interval == r.interval && e.burst == r.burst {
			s.rmu.Unlock()
			t.observe(r, 0, time.Duration(e.resetAt-now))
			s.refusals.hits.Add(1)
			return t.refuse(0, time.Duration(e.retryAt-now)), true
		}
	}
	s.rmu.Unlock()
	return nil, false
}

// rememberRefusal caches a refusal by Redis of rule i of w's policy, t holding the
// refusal's header values, and vouches for t's check under it.
func (s *redisStore) rememberRefusal(t *Ticket, w *waiter, i int, retry, reset time.Duration) {
	r := &w.pol.rules[i]
	if r.kind != kindRequests || retry <= 0 {
		return
	}
	now := s.l.nanotime()
	k := keyID{w.tag[i], w.bucket[i]}
	v := vouch{at: k, ref: i, until: now + int64(min(retry, maxRefusalCache)), retryAt: now + int64(retry),
		seenAt: now, pol: w.pol, n: t.n, tag: t.tag, bucket: t.bucket, cost: t.cost,
		requests: t.Requests, tokens: t.Tokens, usd: t.USD}
	id := checkID(t.n, &t.tag, &t.bucket)
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if s.refused == nil {
		s.refused = make(map[keyID]refusal)
		s.vouched = make(map[uint64]vouch)
	}
	e, ok := s.refused[k]
	if !ok && len(s.refused) >= maxHeld {
		return
	}
	if !ok || now >= e.until || e.interval != r.interval || e.burst != r.burst {
		s.gens++
		e = refusal{interval: r.interval, burst: r.burst, gen: s.gens}
	}
	s.seqs++
	e.until, e.retryAt, e.resetAt, e.seq = v.until, v.retryAt, now+int64(reset), s.seqs
	s.refused[k] = e
	s.refusals.n.Store(int32(len(s.refused)))
	if _, ok := s.vouched[id]; ok || len(s.vouched) < maxHeld {
		v.gen = e.gen
		s.vouched[id] = v
	}
}

// returningLocked notes that capacity is on its way back to bucket k, queued for the
// next round: what was cached of a refusal by k is void, and so is a refusal by k
// answered in a round that left before it (a Cluster request's brief charge on one
// slot, given back because another slot refused it, is seen by the other requests of
// its round). s.mu must be held.
func (s *redisStore) returningLocked(k keyID) {
	s.rmu.Lock()
	if _, ok := s.refused[k]; ok {
		delete(s.refused, k)
		s.refusals.n.Store(int32(len(s.refused)))
	}
	if s.returned == nil {
		s.returned = make(map[keyID]uint64)
	}
	s.returned[k] = s.rounds
	s.nret.Store(int32(len(s.returned)))
	s.rmu.Unlock()
}

// voidRefusals marks the refused checks of round (takes, nil for those handed over
// already) whose refusing bucket has had capacity queued back since round left
// (returningLocked), so that result does not cache them, and forgets what no later
// round needs.
func (s *redisStore) voidRefusals(round uint64, takes []*waiter) {
	if s.nret.Load() == 0 {
		return
	}
	s.rmu.Lock()
	defer s.rmu.Unlock()
	for _, w := range takes {
		if w != nil && w.refused && !w.failed {
			if r, ok := s.returned[keyID{w.tag[w.ref], w.bucket[w.ref]}]; ok && r >= round {
				w.void = true
			}
		}
	}
	// What was queued before this round left travelled in it, ahead of its checks:
	// later rounds' refusals count it.
	for k, r := range s.returned {
		if r < round {
			delete(s.returned, k)
		}
	}
	s.nret.Store(int32(len(s.returned)))
}

// sweepRefusals forgets refusals whose retry time has come, and what was vouched for
// under entries that expired or were voided.
func (s *redisStore) sweepRefusals() {
	now := s.l.nanotime()
	s.rmu.Lock()
	defer s.rmu.Unlock()
	for k, e := range s.refused {
		if now >= e.until {
			delete(s.refused, k)
		}
	}
	s.refusals.n.Store(int32(len(s.refused)))
	for id, v := range s.vouched {
		if e, ok := s.refused[v.at]; !ok || e.gen != v.gen || now >= v.until {
			delete(s.vouched, id)
		}
	}
}

// Capacity can come back to a refused bucket before the retry Redis gave: another
// replica's check undone (its request gave up waiting), its prefetched units given
// back, a compensation. Only refunds on this replica void its cache as they are queued
// (returningLocked), so while a replica holds refusals, it reads their buckets in Redis
// every recheckEvery, one pipelined call of at most maxRecheck GETs, and voids each
// entry whose bucket admits a request again: the next request on it goes to Redis. A
// client hammering past its limit thus costs Redis at most four such reads a second
// per replica, not a check per request, and a refund elsewhere is seen within about
// recheckEvery rather than the cache's 10 s.
const (
	recheckEvery = 250 * time.Millisecond
	maxRecheck   = 1024
)

// recheck is a refused bucket read by recheckRefusals: its key and its rule's
// interval and span in microseconds, as check.lua counts them.
type recheck struct {
	k       keyID
	iv, tau float64
}

// recheckRefusals reads the buckets of the refusals held (up to maxRecheck of them,
// which ones left to map order) and voids each entry whose bucket admits a request
// again by Redis's clock, as last seen by the heartbeat (clockOff), and that Redis has
// not refused again since the read began. A failed read, or a Redis whose clock the
// replica has not seen yet, voids nothing: the entries stand as they would without
// the read, and the limiter's heartbeat alone decides whether Redis is down.
func (s *redisStore) recheckRefusals(buf []recheck) []recheck {
	off := s.clockOff.Load()
	if s.refusals.n.Load() == 0 || off == 0 || s.l.degraded.Load() {
		return buf
	}
	now := s.l.nanotime()
	buf = buf[:0]
	s.rmu.Lock()
	seq := s.seqs
	for k, e := range s.refused {
		if len(buf) == maxRecheck {
			break
		}
		if now < e.until {
			iv := e.interval / 1e3
			buf = append(buf, recheck{k: k, iv: iv, tau: e.burst * iv})
		}
	}
	s.rmu.Unlock()
	if len(buf) == 0 {
		return buf
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	cmds, _ := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range buf {
			var k keyArg
			k.set(buf[i].k.tag, buf[i].k.bucket)
			p.Get(ctx, k.String())
		}
		return nil
	})
	if len(cmds) != len(buf) {
		return buf
	}
	// Redis's clock now, low by up to the heartbeat's round trip: a bucket reads as
	// owing that much more, the side that voids nothing it should not.
	at := float64(time.Since(s.clockBase).Microseconds() + off)
	s.rmu.Lock()
	defer s.rmu.Unlock()
	for i, c := range cmds {
		r := &buf[i]
		v, err := c.(*redis.StringCmd).Result()
		switch {
		case errors.Is(err, redis.Nil):
			// Gone: full.
		case err != nil:
			continue
		default:
			num, _, _ := strings.Cut(v, "\x00")
			tat, perr := strconv.ParseFloat(num, 64)
			if perr != nil || tat-at+r.iv-r.tau > at*0x1p-49+r.tau*0x1p-44 {
				continue
			}
		}
		if e, ok := s.refused[r.k]; ok && e.seq <= seq {
			delete(s.refused, r.k)
		}
	}
	s.refusals.n.Store(int32(len(s.refused)))
	return buf
}
