package limiter

import (
	"math"
	"sync"
	"time"
)

// The memory store is GCRA arithmetic rather than golang.org/x/time/rate: settling a
// token estimate must be able to push a bucket below zero by any amount (so the next
// request waits for the overdraft), and rate.Limiter can only borrow up to its burst
// through reservations that must be kept or cancelled one by one. A bucket here is one
// number, the theoretical arrival time: the instant at which it would be full again. It
// is the same arithmetic as the Redis script, so both stores answer alike.

const memShardBits = 8

type memStore struct {
	shards [1 << memShardBits]memShard
}

type memShard struct {
	mu sync.Mutex
	m  map[uint64]*memEntry
	// Padding keeps neighbouring shards' locks off one cache line.
	_ [48]byte
}

type memEntry struct {
	// tat is in nanoseconds on the limiter's clock, as a float so that charges
	// smaller than a nanosecond (limits of millions of tokens per second) add up.
	tat float64
	// iv is the rule's interval (nanoseconds per unit, before any share) that the
	// debt tat - now was charged at, and tau the span of the bucket (after any
	// share) it was charged under, 0 where unknown; both zero until a rule first
	// charges it (see at).
	iv, tau float64
	conc    int64
	// let is what a conversion that capped the debt let go, zero when nothing: its
	// fields are numbers only, so the shards' maps of entries hold no pointers for
	// the collector to scan.
	let letGo
}

// letGo is what a conversion of a bucket's debt to a smaller bucket (a reload that
// lowered its limit) let go, as check.lua records it (lets): the units of the spent
// bucket beyond the new one, and the units of the overdraft at the conversion (owed
// beyond the old bucket, which a lowered rate keeps in time, so fewer of them), and
// the rule whose take converted it. A request admitted before the reload settles
// under its own rule, and its refund must leave the bucket as it would have left it
// settled before the reload (refund). It only ever shrinks after the conversion and
// goes when the bucket is full: a full bucket owes nothing a refund could take back.
type letGo struct {
	units, over float64
	// iv and tau are the converting rule's interval (before any share) and bucket
	// span: refunds under it are of requests admitted after the conversion.
	iv, tau float64
}

// refund is the part of a refund of u units (u > 0), settled under a rule of interval
// iv other than l's, that comes off the bucket, in units of the bucket: the
// overdraft's units first, each worth what the conversion kept of it (less than one
// under a lowered rate), then the units the cap let go, worth nothing to the bucket,
// then the rest, whole. Taken off the capped debt alone, 3000 of 6000 tokens refunded
// after a reload to 600/hour freed the whole spent bucket.
func (l *letGo) refund(u, iv float64) float64 {
	var cut float64
	if l.over > 0 {
		a := min(u, l.over)
		l.over -= a
		u -= a
		cut = a * min(iv/l.iv, 1)
	}
	if l.units > 0 {
		b := min(u, l.units)
		l.units -= b
		u -= b
	}
	return cut + u
}

// at converts e's debt to the bucket a take charges: interval iv, span tau. A reload
// that changes a limit's amount or burst keeps its bucket (policy.go), and the bucket
// keeps the units it owes, up to the new bucket's span: a debt read in time at the new
// rate would refill a spent bucket when the rate is lowered (6 s owed at 100 ms a
// request is 60 requests, at 1 s only 6) and hold a client back for longer than either
// limit would when it is raised, and one kept in units past the new span would hold
// a client that spent 600/hour for ten hours at 60/hour. What the debt owes beyond the
// old span (an overdraft) carries over in units, but for no longer than the old rule
// would have held the client. The fallback's share scales the debt and its bucket's
// span alike, so a change of share keeps the debt in time, as before. What a cap lets
// go is kept (letGo) for the refunds of requests admitted before it: unit is the time
// a unit of the bucket takes to refill (iv times the share).
func (e *memEntry) at(iv, unit, tau, now float64) {
	if e.let.iv != 0 && e.tat <= now {
		// Refilled since: what was let go is worth nothing.
		e.let = letGo{}
	}
	if e.iv == iv && e.tau == tau {
		return
	}
	if e.iv > 0 && e.tat > now {
		debt, r := e.tat-now, iv/e.iv
		spent := min(debt, e.tau)
		if let := spent*r - tau; let > 0 {
			// One process converts a bucket only at a reload, but one lowered,
			// raised, spent again and lowered again before it refills lets go at
			// each lowering: for the refunds of the requests admitted before
			// either, what it let go adds up, to at most the old bucket (no
			// refund takes back more of it) and a ten years' overdraft.
			e.let = letGo{
				units: min(e.let.units+let/unit, e.tau*r/unit),
				over:  min(e.let.over+(debt-spent)*r/unit, maxDebt*r/unit),
				iv:    iv, tau: tau,
			}
		}
		e.tat = now + rescale(debt, e.tau, r, tau)
	}
	e.iv, e.tau = iv, tau
}

// rescale is a debt owed under a bucket spanning span, converted to a bucket spanning
// tau whose interval is r times the old one (check.lua's rescale): the spent part of
// the old bucket at most empties the new one, an overdraft is kept in units or in time,
// whichever is shorter.
func rescale(debt, span, r, tau float64) float64 {
	spent := min(debt, span)
	return min(min(spent*r, tau)+(debt-spent)*min(r, 1), maxDebt)
}

// rescaleCapped is rescale for a debt in Redis that a conversion capped to its
// bucket's span (check.lua's rescale): its bucket keeps the units it had free, at
// most the new bucket, so that a limit other than the one that capped it cannot spend
// again what the cap let go. The memory store needs no such mark: one process counts
// a bucket under one limit at a time.
func rescaleCapped(debt, span, r, tau float64) float64 {
	spent := min(debt, span)
	return min(max(tau-(span-spent)*r, 0)+(debt-spent)*min(r, 1), maxDebt)
}

// settleOn is debt d, owed on a bucket spanning tau at cur a unit, after a settlement
// of delta units under a rule of unit time iv and bucket span other than the one that
// converted the bucket (a request admitted before a reload that changed the limit,
// settled after a check under the new one), as check.lua's adjust counts it; held is
// what the conversion let go (letGo.units). The bucket stays on the rule that
// converted it, so that what it owes refills at that rule's rate, as it does when the
// request settled before the check: converted back to the settling rule, a spent
// bucket lowered from 6000/hour to 600/hour refilled at 6000/hour until its next
// check. A refund gives back units of the bucket. A charge is counted as settled
// before the check and then converted (rescale): it fills the bucket in units, the
// units the settling rule's bucket still had room for past that are let go (let), and
// only those past it, an overdraft of the old bucket (over), are kept in units or in
// time, whichever is shorter: never longer than the old rule would have held the
// client. Counted all as overdraft, 10000 tokens used of a 100 estimated under
// 6000/hour held a client lowered to 600/hour 94 minutes past a spent bucket, not 40.
func settleOn(d, tau, cur, iv, span, held, delta float64) (debt, let, over float64) {
	if delta < 0 {
		return d + delta*cur, 0, 0
	}
	in := min(delta, max(tau-d, 0)/cur)
	// What the old bucket owed: the units of the new one, what the conversion let
	// go, and an overdraft past the new bucket, kept at the old rate.
	owed := min(d, tau)/cur + held + max(d-tau, 0)/iv
	fit := max(min(delta, span/iv-owed), in)
	return d + in*cur + (delta-fit)*min(iv, cur), fit - in, delta - fit
}

func newMemStore() *memStore {
	m := &memStore{}
	for i := range m.shards {
		m.shards[i].m = make(map[uint64]*memEntry)
	}
	return m
}

func shardOf(bucket uint64) int { return int(bucket >> (64 - memShardBits)) }

// lockAll locks the shards of the ticket's buckets in ascending order, so that two
// requests sharing buckets cannot deadlock, and returns the distinct shards locked.
func (m *memStore) lockAll(t *Ticket, order *[MaxLimits]uint16) int {
	if t.n == 1 {
		order[0] = uint16(shardOf(t.bucket[0]))
		m.shards[order[0]].mu.Lock()
		return 1
	}
	n := 0
	for i := 0; i < int(t.n); i++ {
		s := uint16(shardOf(t.bucket[i]))
		j := n
		dup := false
		for j > 0 && order[j-1] >= s {
			if order[j-1] == s {
				dup = true
				break
			}
			j--
		}
		if dup {
			continue
		}
		copy(order[j+1:n+1], order[j:n])
		order[j] = s
		n++
	}
	for i := range n {
		m.shards[order[i]].mu.Lock()
	}
	return n
}

func (m *memStore) unlockAll(order *[MaxLimits]uint16, n int) {
	for i := range n {
		m.shards[order[i]].mu.Unlock()
	}
}

func (m *memStore) entry(bucket uint64) *memEntry {
	sh := &m.shards[shardOf(bucket)]
	e := sh.m[bucket]
	if e == nil {
		e = &memEntry{}
		sh.m[bucket] = e
	}
	return e
}

// slack is how far over its bucket a charge may come out and still be admitted, and
// how much a bucket's remaining is rounded up by: the rounding of float arithmetic on
// a TAT of magnitude now and a bucket spanning tau (both in the clock's unit), two
// rounding steps of now and 2^8 of tau. Without it a bucket filled to exactly its
// burst comes out a rounding step over it and refuses what it should admit. check.lua
// allows the same.
func slack(now, tau float64) float64 { return now*0x1p-49 + tau*0x1p-44 }

// shareOf scales a rule down to one replica's share: the refill slows by share and the
// capacity shrinks by it, never below one unit.
func shareOf(r *rule, share float64) (interval, burst float64) {
	if share == 1 {
		return r.interval, r.burst
	}
	return r.interval * share, math.Max(1, math.Floor(r.burst/share))
}

// take charges all of the ticket's buckets or none; share is 1 for the memory store
// and the replica count for the fallback of the redis store.
func (m *memStore) take(t *Ticket, share float64, now int64) error {
	rules := t.pol.rules
	n := int(t.n)
	var order [MaxLimits]uint16
	var ents [MaxLimits]*memEntry
	// debts are TAT - now, what each bucket owes: computed from now rather than
	// summed onto the TAT, they round once, when stored (see check.lua).
	var debts, ivs, taus, slacks [MaxLimits]float64
	nowf := float64(now)
	nl := m.lockAll(t, &order)
	refuse := -1
	var retry float64
	for i := range n {
		r := &rules[i]
		e := m.entry(t.bucket[i])
		ents[i] = e
		iv, burst := shareOf(r, share)
		if r.kind == kindConcurrency {
			if float64(e.conc)+1 > burst && retry < float64(time.Second) {
				refuse, retry = i, float64(time.Second)
			}
			continue
		}
		tau := burst * iv
		e.at(r.interval, iv, tau, nowf)
		if r.kind.metered() && t.cost[i] > burst {
			// locate caps an estimate at the full burst, but a replica's share
			// holds only burst/share: a larger charge could never fit and would be
			// refused for as long as Redis is down. Charging the share's whole
			// burst admits it once the share is full, and settle, which trues up by
			// actual minus t.cost, takes the rest.
			t.cost[i] = burst
		}
		sl := slack(nowf, tau)
		next := max(e.tat-nowf, 0) + t.cost[i]*iv
		// A charge of nothing fits even a bucket in debt: a spend budget overdrawn
		// (usage above its estimate) still lets a call to a free backend through.
		if over := next - tau; t.cost[i] > 0 && over > sl && over > retry {
			refuse, retry = i, over
		}
		debts[i], ivs[i], taus[i], slacks[i] = next, iv, tau, sl
	}
	for i := range n {
		r := &rules[i]
		e := ents[i]
		if r.kind == kindConcurrency {
			if refuse < 0 {
				e.conc++
			}
			continue
		}
		if refuse < 0 {
			debts[i] = min(debts[i], maxDebt)
			e.tat = nowf + debts[i]
		} else {
			debts[i] = max(e.tat-nowf, 0)
		}
		t.observe(r, (taus[i]-debts[i]+slacks[i])/ivs[i], time.Duration(debts[i]))
	}
	m.unlockAll(&order, nl)
	if refuse >= 0 {
		// Up: a refusal says to wait, however little (and only a refusal sets
		// RetryAfter, which is how Take counts it).
		return t.refuse(refuse, time.Duration(math.Ceil(min(retry, maxDebt))))
	}
	return nil
}

// holdSlots counts in this replica's buckets the concurrency slots Redis gave t, with
// no check, until releaseSlots. Should Redis fail while its request runs, the fallback
// share (take) counts it: a replica running more than its share of a cap when Redis
// goes down admits nothing more until it is back under it, so the replicas together
// stay within the cap, where counting only what the share itself admitted would let
// each admit a whole share on top of what Redis had admitted.
func (m *memStore) holdSlots(t *Ticket) { m.countSlots(t, 1) }

// releaseSlots gives back what holdSlots counted.
func (m *memStore) releaseSlots(t *Ticket) { m.countSlots(t, -1) }

func (m *memStore) countSlots(t *Ticket, d int) {
	rules := t.pol.rules
	for i := range int(t.n) {
		if rules[i].kind != kindConcurrency {
			continue
		}
		sh := &m.shards[shardOf(t.bucket[i])]
		sh.mu.Lock()
		switch e := sh.m[t.bucket[i]]; {
		case d > 0:
			m.entry(t.bucket[i]).conc++
		case e != nil && e.conc > 0:
			e.conc--
		}
		sh.mu.Unlock()
	}
}

// maxDebt is the longest a bucket is held behind, in nanoseconds (ten years), as
// check.lua holds it: one so far behind takes nothing for as long as matters, and a
// longer one would overflow the durations of its Retry-After and reset.
const maxDebt = float64(10 * 365.25 * 24 * float64(time.Hour))

// settle trues up metered buckets by actual-charged (a refund or an overdraft) and
// releases concurrency slots; actual are counts (Settle resolves KeepEstimate to the
// estimate, which charges what take capped at the burst or the share).
func (m *memStore) settle(t *Ticket, actual Amounts, share float64, now int64) {
	rules := t.pol.rules
	for i := range int(t.n) {
		r := &rules[i]
		var delta float64
		switch r.kind {
		case kindRequests:
			continue
		case kindTokens, kindUSD:
			if delta = float64(actual.of(r.kind)) - t.cost[i]; delta == 0 {
				continue
			}
		}
		sh := &m.shards[shardOf(t.bucket[i])]
		sh.mu.Lock()
		e := sh.m[t.bucket[i]]
		switch {
		case r.kind == kindConcurrency:
			if e != nil && e.conc > 0 {
				e.conc--
			}
		case e == nil && delta < 0:
			// Evicted as full: a refund cannot make it fuller.
		default:
			if e == nil {
				e = &memEntry{}
				sh.m[t.bucket[i]] = e
			}
			iv, burst := shareOf(r, share)
			nowf := float64(now)
			if e.tat <= nowf {
				// A bucket that owes nothing (full, or forgotten as full by the
				// sweep: a long request settles after its charge refilled) owes
				// it under no rule: what the settlement charges is charged under
				// its own bucket, whose span a reload rescales the debt by (at),
				// as a take's debt is. Without it the whole debt would read as
				// overdraft, and a lowered rate would keep it in time.
				e.iv, e.tau, e.let = r.interval, burst*iv, letGo{}
			} else {
				// A request admitted before a reload settles under its own rule,
				// its refund first off what the reload's conversion let go; one
				// admitted under the converting rule, after it, off the bucket.
				if l := &e.let; delta < 0 && (l.units > 0 || l.over > 0) && (r.interval != l.iv || burst*iv != l.tau) {
					if delta = -l.refund(-delta, r.interval); l.units <= 0 && l.over <= 0 {
						e.let = letGo{}
					}
				}
				if e.iv > 0 && e.iv != r.interval {
					// Settled on the bucket as the rule that converted it
					// holds it, which it stays on (settleOn).
					d, let, over := settleOn(e.tat-nowf, e.tau, e.iv*(iv/r.interval), iv, burst*iv, e.let.units, delta)
					e.tat, delta = nowf+d, 0
					if let > 0 || (over > 0 && r.interval < e.iv) {
						// Kept for the refunds of the other requests admitted
						// before the reload, as a conversion keeps what it lets go.
						if e.let.iv == 0 {
							e.let.iv, e.let.tau = e.iv, e.tau
						}
						e.let.units += let
						e.let.over += over
					}
				}
			}
			e.tat = min(max(max(e.tat, nowf)+delta*iv, nowf), nowf+maxDebt)
		}
		sh.mu.Unlock()
	}
}

// sweep forgets buckets that are full and hold no slot: such a bucket is exactly what
// a missing entry means, so eviction loses nothing.
func (m *memStore) sweep(now int64) int {
	n := 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		for k, e := range sh.m {
			if e.tat <= float64(now) && e.conc <= 0 {
				delete(sh.m, k)
				n++
			}
		}
		sh.mu.Unlock()
	}
	return n
}
