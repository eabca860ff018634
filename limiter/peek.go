package limiter

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/redis/go-redis/v9"
)

// Probe names one bucket for Peek: limit Limit (its index in the policy, as in the
// limits list it was built from) of Policy, counted for Subject.
type Probe struct {
	Policy  *Policy
	Limit   int
	Subject Subject
}

// Source says where a Reading's figures come from.
type Source uint8

// The sources of a Reading.
const (
	// FromMemory is this process's bucket (store: memory): this replica's figures.
	FromMemory Source = iota + 1
	// FromRedis is the bucket in Redis that every replica shares, with the units this
	// replica holds of it (prefetch) counted as free, as its headers count them.
	FromRedis
	// Unavailable says Redis did not answer: the Reading has no figures.
	Unavailable
)

// String is the source's name: memory, redis or unavailable.
func (s Source) String() string {
	switch s {
	case FromMemory:
		return "memory"
	case FromRedis:
		return "redis"
	case Unavailable:
		return "unavailable"
	}
	return "none"
}

// Reading is one bucket as Peek found it.
type Reading struct {
	Source Source
	// Quota is the bucket as the x-ratelimit-* headers give it (nano-dollars for a
	// usd limit): its capacity, what it could admit now and how long until it is full.
	// For a concurrency limit: the cap, the slots free, and no reset.
	Quota Quota
	// InUse is the slots of a concurrency limit taken now.
	InUse int64
	// Err is why an Unavailable reading has none: Redis's error (WRONGPASS, a
	// connection refused, a timeout), for the admin API's log. Nil otherwise.
	Err error
}

// peekScript reads buckets without changing them: Redis's clock as check.lua counts
// it, then for each key a rate bucket's value (GET; nil for a full bucket) or, where
// ARGV[1] has a 'c' at the key's place, the leases of a concurrency bucket that have
// not expired (check.lua drops those before it counts). It writes nothing, so Redis
// replicates nothing of it. The bound is formatted whole: Lua's tostring writes a
// number of 15 digits or more (the clock from 2027) with an exponent, rounded.
const peekScript = `
local t = redis.call('TIME')
local now = (tonumber(t[1]) - 1700000000) * 1000000 + tonumber(t[2])
local above = string.format('(%.17g', now)
local out = {now}
for i = 1, #KEYS do
  if string.byte(ARGV[1], i) == 99 then
    out[i + 1] = redis.call('ZCOUNT', KEYS[i], above, '+inf')
  else
    out[i + 1] = redis.call('GET', KEYS[i])
  end
end
return out
`

// Peek reads the buckets probes name, one Reading each: what a check would find in
// them now, charging nothing and changing nothing (a bucket never used reads full).
// With the redis store it reads Redis in one round trip (a call per Cluster slot);
// buckets whose call fails read Unavailable, the others still read. It is for the
// admin API, not the request path: it allocates.
func (l *Limiter) Peek(ctx context.Context, probes []Probe) []Reading {
	out := make([]Reading, len(probes))
	if l.rs == nil {
		now := l.nanotime()
		for i := range probes {
			p := &probes[i]
			r := &p.Policy.rules[p.Limit]
			bucket, _ := p.Policy.bucketOf(p.Limit, &p.Subject)
			out[i] = l.mem.peek(r, bucket, now)
		}
		return out
	}
	l.rs.peek(ctx, probes, out)
	return out
}

// bucketOf is the bucket identity and Redis hash tag of limit i of p for subj, as
// locate finds them for a check.
func (p *Policy) bucketOf(i int, subj *Subject) (bucket, tag uint64) {
	r := &p.rules[i]
	h := xxhash.Sum64(subj.value(r.per))
	return mix64(r.id, h), mix64(r.tagSeed, h)
}

// quotaOf is a bucket's Quota as Ticket.observe writes it for the headers: the
// capacity, the remaining floored, never negative nor above the capacity, and a reset
// never negative.
func quotaOf(r *rule, remaining float64, reset time.Duration) Quota {
	limit := max(r.amount, int64(r.burst))
	var rem int64
	if remaining > 0 {
		// Never above the bucket: units this replica holds ahead and Redis's
		// rounding slack count only up to it, as in the headers.
		rem = min(int64(remaining), int64(r.burst))
	}
	return Quota{Limit: limit, Remaining: rem, Reset: max(reset, 0)}
}

// concurrencyReading is a concurrency bucket with inUse slots taken.
func concurrencyReading(src Source, r *rule, inUse int64) Reading {
	return Reading{Source: src, Quota: Quota{Limit: r.amount, Remaining: max(r.amount-inUse, 0)}, InUse: inUse}
}

// peek reads bucket of rule r at now as take would see it (share 1: the memory store),
// without creating or changing its entry.
func (m *memStore) peek(r *rule, bucket uint64, now int64) Reading {
	sh := &m.shards[shardOf(bucket)]
	var e memEntry
	sh.mu.Lock()
	if p := sh.m[bucket]; p != nil {
		e = *p
	}
	sh.mu.Unlock()
	if r.kind == kindConcurrency {
		return concurrencyReading(FromMemory, r, e.conc)
	}
	nowf := float64(now)
	tau := r.burst * r.interval
	// On the copy: the debt converted to the rule's bucket, as take converts it
	// (a reload that changed the limit).
	e.at(r.interval, r.interval, tau, nowf)
	debt := max(e.tat-nowf, 0)
	return Reading{Source: FromMemory, Quota: quotaOf(r, (tau-debt+slack(nowf, tau))/r.interval, time.Duration(debt))}
}

// peek reads the probes' buckets from Redis into out: one script call per Cluster
// slot (and per maxOpsPerCall keys), all in one pipeline, under s.round at most.
func (s *redisStore) peek(ctx context.Context, probes []Probe, out []Reading) {
	type group struct {
		keys  []string
		kinds []byte
		at    []int // the probe of each key
	}
	var groups []*group
	bySlot := map[int]*group{}
	for i := range probes {
		p := &probes[i]
		bucket, tag := p.Policy.bucketOf(p.Limit, &p.Subject)
		slot := s.slotOf(tag)
		g := bySlot[slot]
		if g == nil || len(g.keys) >= maxOpsPerCall {
			g = &group{}
			bySlot[slot] = g
			groups = append(groups, g)
		}
		var k keyArg
		k.set(tag, bucket)
		kind := byte('r')
		if p.Policy.rules[p.Limit].kind == kindConcurrency {
			kind = 'c'
		}
		g.keys = append(g.keys, k.String())
		g.kinds = append(g.kinds, kind)
		g.at = append(g.at, i)
	}
	if len(groups) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, s.round)
	defer cancel()
	pipe := s.c.Pipeline()
	cmds := make([]*redis.Cmd, len(groups))
	for i, g := range groups {
		cmds[i] = pipe.Eval(ctx, peekScript, g.keys, string(g.kinds))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		for _, c := range cmds {
			failUnsent(c, err)
		}
	}
	for gi, g := range groups {
		vals, err := cmds[gi].Slice()
		if err == nil && len(vals) != len(g.keys)+1 {
			err = errors.New("limiter: peek reply of " + strconv.Itoa(len(vals)) + " values, want " + strconv.Itoa(len(g.keys)+1))
		}
		var clock int64
		if err == nil {
			var ok bool
			if clock, ok = vals[0].(int64); !ok {
				err = errors.New("limiter: peek reply without Redis's clock")
			}
		}
		for j, pi := range g.at {
			if err != nil {
				out[pi] = Reading{Source: Unavailable, Err: err}
				continue
			}
			p := &probes[pi]
			r := &p.Policy.rules[p.Limit]
			if r.kind == kindConcurrency {
				n, _ := vals[j+1].(int64)
				out[pi] = concurrencyReading(FromRedis, r, n)
				continue
			}
			v, _ := vals[j+1].(string)
			bucket, tag := p.Policy.bucketOf(p.Limit, &p.Subject)
			out[pi] = s.rateReading(r, keyID{tag, bucket}, v, float64(clock))
		}
	}
}

// rateReading is a rate bucket of rule r whose value in Redis is v ("" for none) at
// Redis's clock now (microseconds, as check.lua counts it): the remaining and reset
// check.lua would answer a check of nothing, with the units this replica holds of the
// bucket counted as free, as granted counts them for the headers.
func (s *redisStore) rateReading(r *rule, k keyID, v string, now float64) Reading {
	iv := r.interval / 1e3
	tau := r.burst * iv
	debt := rateDebt(v, now, iv, tau)
	remaining := math.Floor((tau - debt + now*0x1p-49 + tau*0x1p-44) / iv)
	reset := debt
	remaining = max(remaining, 0)
	if s.every > 0 {
		s.pmu.Lock()
		if h := s.held[k]; h != nil && h.avail > 0 && h.of(r) {
			remaining += h.avail
			reset = max(reset-h.avail*iv, 0)
		}
		s.pmu.Unlock()
	}
	return Reading{Source: FromRedis, Quota: quotaOf(r, remaining, time.Duration(reset*float64(time.Microsecond)))}
}

// rateDebt is what a rate bucket whose value is v owes at now, in microseconds,
// converted to the bucket of interval iv and span tau as check.lua's rescale converts
// it before a check: the value is the TAT as text, then a NUL, the span its debt was
// charged under and a NUL, and the interval (or only a NUL and the interval, as an
// earlier version wrote it, or the TAT alone); a NUL and 'c' before the span mark a
// debt a conversion capped, which converts keeping its free units (rescaleCapped).
// What the cap let go, before the mark, is for settlements: a check reads past it.
func rateDebt(v string, now, iv, tau float64) float64 {
	text, _, _ := strings.Cut(v, "\x00")
	tat, err := strconv.ParseFloat(text, 64)
	if err != nil || !(tat > now) {
		return 0
	}
	debt := tat - now
	n := len(v)
	if n < 9 || v[n-9] != 0 {
		// Charged at an interval unknown: read as charged at iv.
		return debt
	}
	scale := math.Float64frombits(binary.LittleEndian.Uint64([]byte(v[n-8:])))
	span, spanKnown := 0.0, false
	if n >= 18 && v[n-18] == 0 {
		span, spanKnown = math.Float64frombits(binary.LittleEndian.Uint64([]byte(v[n-17:n-9]))), true
	}
	if scale == iv && spanKnown && span == tau {
		return debt
	}
	if spanKnown && n >= 20 && v[n-19] == 'c' && v[n-20] == 0 {
		return min(rescaleCapped(debt, span, iv/scale, tau), maxDebt/1e3)
	}
	return min(rescale(debt, span, iv/scale, tau), maxDebt/1e3)
}
