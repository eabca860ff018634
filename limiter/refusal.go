package limiter

import (
	"sync"
	"sync/atomic"
	"time"
)

// Cached refusals: when Redis refuses a request because a requests bucket is empty, it
// says when the next request fits (retry). Until then every request on that bucket
// would be refused too (a requests bucket only refills with time), so this replica
// answers them without a round trip. A client hammering past its limit then costs
// Redis one check per refill instead of one per request. Token buckets are not
// cached: a smaller request, or a settlement's refund, may fit sooner.

// maxRefusalCache bounds how long a refusal is answered locally: an undone check (a
// request that gave up waiting for Redis) can return capacity earlier than retry.
const maxRefusalCache = 10 * time.Second

type refusal struct {
	// until is when the entry stops answering, retryAt when Redis said the bucket
	// admits a request again: a requests bucket refused for six minutes is still
	// refused for six minutes when the entry says so ten seconds before it expires.
	until, retryAt, resetAt int64 // limiter nanotime
	// The rule's parameters when Redis refused: a reload that changes them makes the
	// entry void.
	interval, burst float64
	// The refusal's header values as of seenAt, given to the requests the entry
	// refuses that have the same policy and the same buckets (tag, bucket), so that
	// they carry the x-ratelimit-*-tokens headers too; others sharing the requests
	// bucket (the same API key, another user's tokens bucket) get its values alone.
	pol              *Policy
	tag, bucket      [MaxLimits]uint64
	requests, tokens Quota
	seenAt           int64
}

type refusals struct {
	rmu     sync.Mutex
	refused map[keyID]refusal
	n       atomic.Int32  // len(refused), read without the lock
	hits    atomic.Uint64 // requests refused from the cache
	// returned maps a bucket that capacity is on its way back to (an undo, a give-back
	// of prefetched units, a compensation) to the last round taken out of the queue
	// when that was queued: a check of that round or an earlier one may have been
	// refused for want of what comes back, and is not cached (voidRefusals).
	returned map[keyID]uint64
	nret     atomic.Int32 // len(returned), read without the lock
}

// refusedLocally refuses t when one of its requests buckets was refused by Redis and
// its retry time has not come.
func (s *redisStore) refusedLocally(t *Ticket) (error, bool) {
	if s.refusals.n.Load() == 0 {
		return nil, false
	}
	rules := t.pol.rules
	now := s.l.nanotime()
	s.rmu.Lock()
	for i := range int(t.n) {
		r := &rules[i]
		if r.kind != kindRequests {
			continue
		}
		e, ok := s.refused[keyID{t.tag[i], t.bucket[i]}]
		if !ok || now >= e.until || e.interval != r.interval || e.burst != r.burst {
			continue
		}
		s.rmu.Unlock()
		if e.pol == t.pol && e.tag == t.tag && e.bucket == t.bucket {
			since := time.Duration(now - e.seenAt)
			t.Requests, t.Tokens = e.requests, e.tokens
			t.Requests.Reset = max(t.Requests.Reset-since, 0)
			t.Tokens.Reset = max(t.Tokens.Reset-since, 0)
		} else {
			t.observe(r, 0, time.Duration(e.resetAt-now))
		}
		s.refusals.hits.Add(1)
		return t.refuse(i, time.Duration(e.retryAt-now)), true
	}
	s.rmu.Unlock()
	return nil, false
}

// rememberRefusal caches a refusal by Redis of rule i of w's policy, t holding the
// refusal's header values.
func (s *redisStore) rememberRefusal(t *Ticket, w *waiter, i int, retry, reset time.Duration) {
	r := &w.pol.rules[i]
	if r.kind != kindRequests || retry <= 0 {
		return
	}
	now := s.l.nanotime()
	e := refusal{until: now + int64(min(retry, maxRefusalCache)), retryAt: now + int64(retry),
		resetAt: now + int64(reset), interval: r.interval, burst: r.burst,
		pol: w.pol, tag: t.tag, bucket: t.bucket, requests: t.Requests, tokens: t.Tokens, seenAt: now}
	s.rmu.Lock()
	if s.refused == nil {
		s.refused = make(map[keyID]refusal)
	}
	if len(s.refused) < maxHeld {
		s.refused[keyID{w.tag[i], w.bucket[i]}] = e
		s.refusals.n.Store(int32(len(s.refused)))
	}
	s.rmu.Unlock()
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

// sweepRefusals forgets refusals whose retry time has come.
func (s *redisStore) sweepRefusals() {
	if s.refusals.n.Load() == 0 {
		return
	}
	now := s.l.nanotime()
	s.rmu.Lock()
	for k, e := range s.refused {
		if now >= e.until {
			delete(s.refused, k)
		}
	}
	s.refusals.n.Store(int32(len(s.refused)))
	s.rmu.Unlock()
}
