package limiter

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Prefetch: with the redis store, a check that Redis admits may also take a few units
// of each rate bucket ahead, which this replica then spends on its next requests
// without a round trip. It is safe for the global limit because
//   - the units are taken out of the bucket in Redis when they are granted, so every
//     replica together never admits more than the bucket allows;
//   - Redis grants them only out of the upper half of a bucket: near its limit there
//     is nothing to prefetch and every request is decided in Redis, one by one, which
//     is where exactness matters;
//   - a replica asks for at most Prefetch's worth of the bucket's rate and an eighth
//     of its burst, and only when that covers at least two requests like the one
//     asking, so small limits never prefetch, and only for a bucket it checked within
//     prefetchHold before, so quiet subjects never do;
//   - units of a bucket this replica has not used for prefetchHold go back to it, and
//     so do those of a bucket a request sent to Redis needs more of than Redis has
//     left: the headers count them as free (lendBackLocked);
//   - units are spent only under the rule (interval and burst) they were granted
//     under: a reload that lowers a limit keeps the bucket, but what a replica took
//     at the old, faster rate goes back rather than being spent at the new one.
// Units held by a replica that dies are lost to the bucket once, like that many
// requests. Concurrency limits are never prefetched: a policy with one always asks
// Redis.

// DefaultPrefetch is the share of a limit's rate, in time, that a replica may hold.
const DefaultPrefetch = 100 * time.Millisecond

const (
	// prefetchHold is how long prefetched units stay with a replica that does not use
	// them.
	prefetchHold = time.Second
	// prefetchBurstShare bounds what one replica holds to this fraction of the burst.
	prefetchBurstShare = 8
	// maxHeld bounds the buckets a replica tracks for prefetch (per-ip limits see many
	// subjects); past it, new buckets are checked in Redis one request at a time.
	maxHeld = 1 << 16
)

// held is what this replica holds of one bucket.
type held struct {
	avail     float64 // units granted and not spent
	target    float64 // units the replica asks for
	idleUntil int64   // limiter nanotime after which, unused, the rest goes back
	remaining float64 // the bucket's remaining in Redis at its last answer
	seenAt    int64   // nanotime of that answer
	resetAt   int64   // nanotime the bucket is full again, as of that answer
	// interval (nanoseconds per unit) and burst are the rule's when the entry was
	// given its target: the units go back at that interval, and a rule that differs
	// (a reload changed the limit) voids the entry (voidLocked). Set with target.
	interval float64
	burst    float64
	// asking is set, only together with a check's want > 0, while that check is on
	// its way; granted clears it whatever the answer.
	asking bool
	// overdrawn is set when a settlement overdrew the entry (settleLocal) while a check
	// asking for it was on its way: what that check is granted may have been taken
	// before the debt reached Redis, and goes back rather than admit requests the debt
	// should make wait.
	overdrawn bool
}

// of reports whether h's units were taken under r.
func (h *held) of(r *rule) bool { return h.interval == r.interval && h.burst == r.burst }

type prefetch struct {
	every time.Duration // zero: off
	pmu   sync.Mutex
	held  map[keyID]*held
	hits  atomic.Uint64 // checks answered from held units
	back  atomic.Uint64 // units given back unspent
}

func newPrefetch(every time.Duration) prefetch {
	return prefetch{every: every, held: make(map[keyID]*held)}
}

// units is how many units of r a replica asks for ahead, or zero when prefetching
// would not cover two requests of this cost.
func (p *prefetch) units(r *rule, cost float64) float64 {
	if r.kind == kindConcurrency || r.interval <= 0 {
		return 0
	}
	u := math.Floor(min(float64(p.every)/r.interval, r.burst/prefetchBurstShare))
	if u < 2 || u < 2*cost {
		return 0
	}
	return u
}

// takeLocal admits t from held units when every bucket of it has enough, all or none.
func (s *redisStore) takeLocal(t *Ticket) bool {
	rules := t.pol.rules
	n := int(t.n)
	var hs [MaxLimits]*held
	now := s.l.nanotime()
	s.pmu.Lock()
	for i := range n {
		k := keyID{t.tag[i], t.bucket[i]}
		h := s.held[k]
		if h != nil && h.avail > 0 && !h.of(&rules[i]) {
			// A reload changed the limit: the units were taken at the old rate, and a
			// lowered limit would otherwise admit them all at the new one.
			s.voidLocked(k, h)
			s.pmu.Unlock()
			s.kickLater()
			return false
		}
		// Concurrency buckets are never held, so a policy with one never gets here.
		if h == nil || h.avail <= 0 || h.avail < t.cost[i] {
			s.pmu.Unlock()
			return false
		}
		hs[i] = h
	}
	refill := false
	var want, rem [MaxLimits]float64
	var reset [MaxLimits]int64
	for i := range n {
		h := hs[i]
		r := &rules[i]
		h.avail -= t.cost[i]
		h.idleUntil = now + int64(prefetchHold)
		// A request too large to prefetch for asks for nothing, and leaves asking to
		// the next one that is not.
		if !h.asking && h.avail < h.target/2 {
			if want[i] = s.units(r, t.cost[i]); want[i] > 0 {
				h.asking, refill = true, true
			}
		}
		// What Redis said last, refilled since, and what this replica holds; the
		// reset is what the bucket owes without the held units, which Redis counts
		// as spent and the remaining counts as free.
		rem[i] = min(h.remaining+float64(now-h.seenAt)/r.interval+h.avail, r.burst)
		reset[i] = h.resetAt - now - int64(h.avail*r.interval)
	}
	s.pmu.Unlock()
	for i := range n {
		t.observe(&rules[i], rem[i], time.Duration(reset[i]))
	}
	t.src = srcRedis
	s.prefetch.hits.Add(1)
	if refill {
		s.refill(t, &want)
	}
	return true
}

// voidLocked queues what h holds for return to Redis, at the interval it was taken
// at, and empties h of it and of its rule, as a reload voids a cached refusal
// (refusedLocally). s.pmu must be held.
func (s *redisStore) voidLocked(k keyID, h *held) {
	if h.avail > 0 {
		s.mu.Lock()
		s.giveBackLocked(k, h)
		s.mu.Unlock()
	}
	h.avail, h.target, h.interval, h.burst = 0, 0, 0, 0
	h.remaining, h.seenAt, h.resetAt = 0, 0, 0
}

// giveBackLocked queues h's unspent units for return to Redis and reports whether
// there were any; s.pmu and s.mu must be held.
func (s *redisStore) giveBackLocked(k keyID, h *held) bool {
	// An entry without a rule holds nothing: units and refunds come only with one.
	if h.avail <= 0 || h.interval <= 0 {
		return false
	}
	s.queueAdjustLocked(adjustOf(k.tag, k.bucket, h.interval, h.burst, -h.avail))
	s.returningLocked(k)
	s.back.Add(uint64(h.avail))
	return true
}

// askAhead readies w, a check takeLocal could not answer, for Redis: it gives back
// ahead of w the units held of a bucket w might not fit in Redis without
// (lendBackLocked), and sets what w asks for ahead. Every bucket of its policy must
// qualify, because held units only answer a request when all its buckets have them,
// and every bucket must have been checked within prefetchHold before: a bucket checked
// less often than that (a quiet API key) would have its units handed back unused
// every time.
func (s *redisStore) askAhead(w *waiter) {
	if s.every == 0 {
		return
	}
	rules := w.pol.rules
	n := int(w.n)
	now := s.l.nanotime()
	s.pmu.Lock()
	defer s.pmu.Unlock()
	s.lendBackLocked(w, now)
	var want [MaxLimits]float64
	for i := range n {
		if want[i] = s.units(&rules[i], w.cost[i]); want[i] == 0 {
			return
		}
	}
	fresh := false
	for i := range n {
		k := keyID{w.tag[i], w.bucket[i]}
		if h := s.held[k]; h == nil {
			if len(s.held) < maxHeld {
				s.held[k] = &held{idleUntil: now + int64(prefetchHold)}
			}
			fresh = true
		} else {
			h.idleUntil = now + int64(prefetchHold)
		}
	}
	if fresh {
		return
	}
	for i := range n {
		k := keyID{w.tag[i], w.bucket[i]}
		h := s.held[k]
		r := &rules[i]
		if h.asking {
			continue
		}
		if !h.of(r) {
			// Units taken under the rule before a reload go back ahead of w, which
			// travels after them (settlements go first).
			s.voidLocked(k, h)
		} else if h.avail >= want[i]/2 {
			continue
		}
		// The rule goes with the target: a refund settled into the entry
		// (settleLocal) before Redis grants it anything must be given back too.
		h.asking, h.target = true, want[i]
		h.interval, h.burst = r.interval, r.burst
		w.want[i] = want[i]
	}
}

// lendBackLocked queues for return to Redis, ahead of w (settlements go first), what
// this replica holds of each bucket whose cost in w is more than Redis had left of it
// at its last answer, refilled since: Redis counts held units as spent, while the
// remaining headers count them as free, so without them Redis could refuse a request
// the headers said fits, and its retry-after would count them as owed. A request that
// fits in what Redis has left keeps the units held: a large request, or one on a new
// subject sharing a held bucket (an endpoint's), does not drain them. Units held under
// another rule (a reload) go back too, as takeLocal would send them. s.pmu must be
// held.
func (s *redisStore) lendBackLocked(w *waiter, now int64) {
	rules := w.pol.rules
	for i := range int(w.n) {
		k := keyID{w.tag[i], w.bucket[i]}
		h := s.held[k]
		if h == nil || h.avail <= 0 {
			continue
		}
		r := &rules[i]
		if !h.of(r) {
			s.voidLocked(k, h)
			continue
		}
		if w.cost[i] <= min(h.remaining+float64(now-h.seenAt)/r.interval, r.burst) {
			continue
		}
		s.mu.Lock()
		s.giveBackLocked(k, h)
		s.mu.Unlock()
		h.avail = 0
	}
}

// refill queues a check no request waits for, asking for want more of t's buckets.
func (s *redisStore) refill(t *Ticket, want *[MaxLimits]float64) {
	w := s.newWaiter(t)
	w.refill, w.cost, w.want = true, [MaxLimits]float64{}, *want
	s.enqueue(w)
	s.kickNow()
}

// granted books the units a round's checks were granted; a check that failed or was
// refused was granted none, and whatever it asked may be asked again: every bucket a
// check asked for stops asking, whatever the answer. Every answer from Redis also
// refreshes what a held bucket reports as remaining, and the remaining its request
// sees counts what this replica holds, still the callers' to spend, as free; its
// reset, which Redis counted the held units in, no longer owes them.
func (s *redisStore) granted(takes []*waiter) {
	now := s.l.nanotime()
	s.pmu.Lock()
	defer s.pmu.Unlock()
	for _, w := range takes {
		for i := range int(w.n) {
			k := keyID{w.tag[i], w.bucket[i]}
			h := s.held[k]
			r := &w.pol.rules[i]
			if w.want[i] > 0 {
				if h == nil {
					h = &held{target: w.want[i], interval: r.interval, burst: r.burst}
					s.held[k] = h
				}
				h.asking = false
				if h.overdrawn {
					h.overdrawn = false
					if g := w.granted[i]; g > 0 && !w.failed {
						s.mu.Lock()
						s.queueAdjustLocked(adjustOf(k.tag, k.bucket, r.interval, r.burst, -g))
						s.returningLocked(k)
						s.mu.Unlock()
						s.back.Add(uint64(g))
						w.granted[i] = 0
						s.kickLater()
					}
				}
			}
			// Concurrency buckets are never held.
			if h == nil || w.failed {
				continue
			}
			g := w.granted[i]
			if g > 0 && !h.of(r) {
				// Asked for before a reload that changed the rule, or the entry
				// holds units from before it: one entry holds units of one rule.
				s.voidLocked(k, h)
				h.target, h.interval, h.burst = w.want[i], r.interval, r.burst
			}
			h.remaining = max(w.remaining[i], 0)
			h.seenAt, h.resetAt = now, now+int64(w.reset[i]*float64(time.Microsecond))
			if g > 0 {
				h.avail += g
				h.idleUntil = now + int64(prefetchHold)
			}
			w.remaining[i] = h.remaining + h.avail
			w.reset[i] = max(w.reset[i]-h.avail*r.interval/1e3, 0)
		}
	}
}

// settleLocal charges delta more units (a refund when negative) of a bucket of rule r
// to what this replica holds, and returns what is left to charge in Redis: nothing
// when the held units absorb it; all of delta when the replica does not hold the
// bucket under r, or for a refund that would leave it holding more than twice the
// units asked for. A charge beyond the held units spends them and leaves the rest for
// Redis, and voids the entry: its units would admit the next requests without Redis,
// and its remaining is from before the debt, which they must wait for (README: a
// request that overdraws makes the next ones wait).
func (s *redisStore) settleLocal(k keyID, r *rule, delta float64) float64 {
	if s.every == 0 {
		return delta
	}
	s.pmu.Lock()
	defer s.pmu.Unlock()
	h := s.held[k]
	// An entry without a rule could not give back what it keeps; one under another
	// rule (a reload came between the request's check and its settlement) would give
	// it back at the wrong interval.
	if h == nil || !h.of(r) {
		return delta
	}
	after := h.avail - delta
	if after < 0 {
		h.avail = 0
		s.voidLocked(k, h)
		h.overdrawn = h.asking
		return -after
	}
	if after <= 2*h.target {
		h.avail = after
		return 0
	}
	return delta
}

// giveBack queues the unspent units of held buckets for return to Redis: those not
// used for prefetchHold, or all of them when the store closes.
func (s *redisStore) giveBack(all bool) {
	if s.every == 0 {
		return
	}
	now := s.l.nanotime()
	queued := false
	s.pmu.Lock()
	s.mu.Lock()
	for k, h := range s.held {
		if !all && (h.asking || now < h.idleUntil) {
			continue
		}
		if s.giveBackLocked(k, h) {
			queued = true
		}
		delete(s.held, k)
	}
	s.mu.Unlock()
	s.pmu.Unlock()
	if queued {
		s.kickLater()
	}
}
