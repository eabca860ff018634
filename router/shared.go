package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Shared state in Redis, per endpoint name N under the key prefix P:
//
//	P ep:{N}:leader           string: the ID of the replica that leads N, with an
//	                          expiry (the lease)
//	P ep:{N}                  hash: sig, ver, st, cw, since, ovr, why, pst,
//	                          pcw (the state an override interrupted), at (the
//	                          instant, Unix ms, its weights take effect) and
//	                          fst, fcw, fovr (the state in force until then)
//	P ep:{N}:w:SIG:SINCE      hash: the canary's window, summed over replicas:
//	                          n (requests), e (errors), lI / tI (latency / TTFT
//	                          histogram bucket I)
//	P ep:{N}:w:SIG:SINCE:L:K  the same for slot K of the window alone, its slots
//	                          being L ms long; the leader sums the last two for
//	                          the recent span
//
// Every replica adds what its canary saw to the current window each tick
// (HINCRBY of the deltas since its last flush; a replica not yet in step
// with the hash holds them until it is) and reads the state hash;
// the endpoint's leader alone reads windows and decides. Each endpoint has a
// lease of its own, so gateways with other endpoints on the same Redis, or a
// replica whose config lacks an endpoint, never keep an endpoint's canary from
// being decided. Every write of the state hash
// goes through a compare-and-set on ver, so a decision, an operator's
// command and a reload on another replica never overwrite one another
// unseen. The {N} hash tag keeps an endpoint's keys in one cluster slot.
//
// Every write of the state hash (the leader's step, rollback or reset to its
// config, an operator's operation, a rollback written back) carries at, the
// writer's clock plus switchDelay, and the state in force until then (what the
// hash put in force by the writer's clock: a change still pending is replaced;
// an operator's waits for its instant first, see operate).
// Every replica, the writer included, routes by that state's weights until its
// clock reaches at, so all of them switch at one instant, and a replica that
// starts or comes back meanwhile routes as the others do. A hash without at
// (written by an older build) takes effect at once.
//
// A replica whose routes differ from the hash's sig (mid-rollout of a new
// config) ignores it; the leader resets it to its own config.
//
// A replica whose tick cannot reach Redis holds its weights, but judges its
// canaries on its own traffic and rolls a breaching one back by itself (as an
// operator's rollback sent to it does); poll writes such a rollback to the
// hash once Redis answers again, on top of whatever the hash holds then.

var (
	renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`)
	releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`)
	// casScript writes fields ARGV[3..] if the hash's ver is ARGV[1] (a
	// missing hash has ver 0) and returns the new ver, or 0. The new ver is
	// one more than the old, or ARGV[2] if that is more.
	casScript = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], 'ver') or '0'
if v ~= ARGV[1] then
  return 0
end
local n = math.max(tonumber(v) + 1, tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 'ver', string.format('%d', n), unpack(ARGV, 3))
return n`)
)

type shared struct {
	rdb    redis.UniversalClient
	prefix string
	id     string
	ttl    time.Duration

	// leader is whether this replica leads any endpoint; leading, which ones.
	leader  atomic.Bool
	mu      sync.Mutex
	leading map[string]bool
	failing atomic.Bool
}

func (s *shared) leads(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leading[name]
}

func (s *shared) leaseKey(name string) string { return s.prefix + "ep:{" + name + "}:leader" }
func (s *shared) stateKey(name string) string { return s.prefix + "ep:{" + name + "}" }

func (s *shared) windowKey(name string, sig uint64, since time.Time) string {
	return s.prefix + "ep:{" + name + "}:w:" + strconv.FormatUint(sig, 16) + ":" + strconv.FormatInt(since.UnixMilli(), 10)
}

// slotKey names slot k of a window whose slots are slotLen long. The length is part
// of the name: it follows canary.interval, and a reload that changes the interval
// mid-window would otherwise read, by the new length's indexes, slots written
// under the old one, which hold the traffic of other times.
func slotKey(window string, slotLen time.Duration, k int64) string {
	return window + ":" + strconv.FormatInt(slotLen.Milliseconds(), 10) + ":" + strconv.FormatInt(k, 10)
}

// remoteState is a decoded state hash.
type remoteState struct {
	sig uint64
	ver int64
	ctl ctlState
	// at is when ctl's weights take effect, from's being in force until then;
	// zero, and from nil, for a change in force at once (a hash without at).
	at   time.Time
	from *ctlState
}

// inForce is the state whose weights the hash puts in force at now.
func (rs *remoteState) inForce(now time.Time) ctlState {
	if rs.from != nil && now.Before(rs.at) {
		return *rs.from
	}
	return rs.ctl
}

// parseRemote decodes a state hash; ok is false for a missing or
// unreadable one. ver is returned for any hash that has one, so that a
// replica can overwrite it with a compare-and-set.
func parseRemote(f map[string]string, routes int) (rs remoteState, ok bool) {
	ver, err := strconv.ParseInt(f["ver"], 10, 64)
	if err != nil || ver <= 0 {
		return rs, false
	}
	rs.ver = ver
	sig, err1 := strconv.ParseUint(f["sig"], 16, 64)
	state, ok2 := parseState(f["st"])
	cw, err3 := strconv.ParseInt(f["cw"], 10, 32)
	since, err4 := strconv.ParseInt(f["since"], 10, 64)
	if err1 != nil || !ok2 || err3 != nil || err4 != nil || cw < 0 || cw > Buckets {
		return rs, false
	}
	rs.sig = sig
	rs.ctl = ctlState{state: state, cw: int32(cw), since: time.UnixMilli(since), reason: f["why"]}
	if a := f["at"]; a != "" {
		at, err := strconv.ParseInt(a, 10, 64)
		fst, ok1 := parseState(f["fst"])
		fcw, err2 := strconv.ParseInt(f["fcw"], 10, 32)
		fovr, ok3 := parseOverride(f["fovr"], routes)
		if err != nil || !ok1 || err2 != nil || fcw < 0 || fcw > Buckets || !ok3 {
			return rs, false
		}
		rs.at = time.UnixMilli(at)
		rs.from = &ctlState{state: fst, cw: int32(fcw), override: fovr}
	}
	if p := f["pst"]; p != "" {
		prior, ok := parseState(p)
		pcw, err := strconv.ParseInt(f["pcw"], 10, 32)
		if !ok || prior == StateNone || err != nil || pcw < 0 || pcw > Buckets {
			return rs, false
		}
		rs.ctl.prior, rs.ctl.priorCW = prior, int32(pcw)
	}
	ovr, ok := parseOverride(f["ovr"], routes)
	if !ok {
		return rs, false
	}
	rs.ctl.override = ovr
	return rs, true
}

// parseOverride decodes an override's weights: nil for "", ok false for weights
// that are not one per route adding up to Buckets.
func parseOverride(o string, routes int) ([]int32, bool) {
	if o == "" {
		return nil, true
	}
	parts := strings.Split(o, ",")
	if len(parts) != routes {
		return nil, false
	}
	w := make([]int32, routes)
	var sum int64
	for i, p := range parts {
		x, err := strconv.ParseInt(p, 10, 32)
		if err != nil || x < 0 || x > Buckets {
			return nil, false
		}
		w[i] = int32(x)
		sum += x
	}
	if sum != Buckets {
		return nil, false
	}
	return w, true
}

func encodeOverride(override []int32) string {
	var ovr strings.Builder
	for i, x := range override {
		if i > 0 {
			ovr.WriteByte(',')
		}
		ovr.WriteString(strconv.Itoa(int(x)))
	}
	return ovr.String()
}

// encodeState encodes c, in force from at on, from's weights being in force until
// then; a nil from puts c in force at once.
func encodeState(sig uint64, c *ctlState, from *ctlState, at time.Time) []any {
	fields := []any{
		"sig", strconv.FormatUint(sig, 16),
		"st", c.state.String(),
		"cw", strconv.Itoa(int(c.cw)),
		"since", strconv.FormatInt(c.since.UnixMilli(), 10),
		"ovr", encodeOverride(c.override),
		"why", c.reason,
		"pst", priorName(c.prior),
		"pcw", strconv.Itoa(int(c.priorCW)),
	}
	if from == nil || at.IsZero() {
		return append(fields, "at", "", "fst", "", "fcw", "", "fovr", "")
	}
	return append(fields,
		"at", strconv.FormatInt(at.UnixMilli(), 10),
		"fst", from.state.String(),
		"fcw", strconv.Itoa(int(from.cw)),
		"fovr", encodeOverride(from.override))
}

func priorName(s CanaryState) string {
	if s == StateNone {
		return ""
	}
	return s.String()
}

// cas writes c as the endpoint's state, taking effect at the instant at (from in
// force until then), if the hash is still at version expect; it returns the new
// version (at least floor), or 0 when someone wrote first. A change that moves no
// weight (a pause, an override ended at the weights it held) routes nobody
// differently: it is written in force at once, as every replica applies it, so
// that no later change waits for an instant no view shows. st.mu must be held.
func (s *shared) cas(ctx context.Context, name string, st *state, expect, floor int64, c, from *ctlState, at time.Time) (int64, error) {
	if !st.movesWeights(from, c) {
		from, at = nil, time.Time{}
	}
	args := append([]any{strconv.FormatInt(expect, 10), strconv.FormatInt(floor, 10)}, encodeState(st.sig, c, from, at)...)
	return casScript.Run(ctx, s.rdb, []string{s.stateKey(name)}, args...).Int64()
}

// movesWeights reports whether the change from the state from (nil: none) to c
// moves weights, and so is written to take effect at an instant (see cas).
func (st *state) movesWeights(from, c *ctlState) bool {
	return from != nil && !equalWeights(st.weightsFor(from), st.weightsFor(c))
}

// openAtInstant starts the window that the change c opens (its since is not prev,
// the window of the state it was made from) at the instant at when c moves weights
// and so waits for that instant: every replica routes by the weights before c until
// then, and the canary must not be judged at c's weights on that traffic.
func (st *state) openAtInstant(c, from *ctlState, prev, at time.Time) {
	if !c.since.Equal(prev) && st.movesWeights(from, c) {
		c.since = at
	}
}

// release gives up the leader lease if Redis says this replica holds it, whatever
// the replica last believed: a tick cut short by the cancellation that stops the
// router fails its renewal and drops the flag while the lease it renewed before
// still stands. The script deletes the lease only when it holds this replica's ID.
func (s *shared) release(ctx context.Context, eps []*Endpoint) {
	s.mu.Lock()
	clear(s.leading)
	s.leader.Store(false)
	s.mu.Unlock()
	pipe := s.rdb.Pipeline()
	for _, e := range eps {
		releaseScript.Eval(ctx, pipe, []string{s.leaseKey(e.name)}, s.id)
	}
	_, _ = pipe.Exec(ctx)
}

// operate applies an operator's op to the shared state and then locally. Operations
// made at once on one endpoint (from one replica or several) take turns: each waits
// for the change written before it to take effect, and is written then. Only
// compare-and-sets lost to writes that put nothing to wait for (a pause, a state
// written back) use up its tries; how long it waits in all is bounded by ctx.
func (s *shared) operate(ctx context.Context, r *Router, e *Endpoint, st *state, op opFunc) error {
	for tries := 0; tries < 3; {
		f, err := s.rdb.HGetAll(ctx, s.stateKey(e.name)).Result()
		if err != nil {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		st.mu.Lock()
		rs, ok := parseRemote(f, len(st.lay.home))
		now := r.now()
		if ok && rs.sig == st.sig && rs.from != nil && now.Before(rs.at) {
			// A change waits for its instant. Written now, this one would have the
			// replicas route by the weights before that change until its own
			// instant, and those that read it only after the first instant (a poll
			// comes every half second) would take back a switch they had made:
			// the users it moved would go to one variant and back. It is written
			// once the first is in force, from the weights then in force.
			// A write lost to that change was no failure: the state moved on, and
			// this operation is written from it once it is in force. Only running
			// out of time (ctx) ends the turns.
			st.mu.Unlock()
			if err := r.wait(ctx, rs.at.Sub(now)); err != nil {
				return fmt.Errorf("%w: %w", errContended, err)
			}
			tries = 0
			continue
		}
		// The operation applies to the shared state with what this replica
		// holds that Redis lacks added to it (a rollback made while Redis was
		// unavailable): writing the result shares it too.
		cur, pending := st.ctl, st.unshared
		// from is what every replica routes by until the change's instant: what
		// the shared state has in force now (no change of it waits: see above).
		// This replica keeps what it has in force itself until then, the same but
		// for a rollback of its own that Redis lacks, or a state Redis lacks.
		from, local := st.inForce(now), st.inForce(now)
		if ok && rs.sig == st.sig {
			cur, pending = st.withUnshared(rs.ctl)
			from = rs.inForce(now)
		}
		cur.override = append([]int32(nil), cur.override...)
		prev := cur.since
		ev, err := op(st.cfg, &cur, now)
		if ev == "" && err == nil && pending {
			ev = evRollback
		}
		if err != nil || ev == "" {
			if ok && rs.sig == st.sig && !pending {
				// Nothing to do, or nothing this operation may do: the shared
				// state decided it (another replica may have made the change
				// first). This replica follows that state now, so that the
				// answer, a refusal's included, names the state judged.
				st.unshared = false
				s.adoptLocked(r, e.name, st, rs)
			}
			st.mu.Unlock()
			return err
		}
		// The operation takes effect on every replica at one instant, this one
		// included, a rollback too: a user it moves must not bounce between
		// variants behind a load balancer, and the gates take seconds anyway.
		at := now.Add(r.switchDelay)
		st.openAtInstant(&cur, &from, prev, at)
		ver, err := s.cas(ctx, e.name, st, rs.ver, st.ver+1, &cur, &from, at)
		if err != nil {
			st.mu.Unlock()
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		if ver > 0 {
			if !st.unshared {
				local = from
			}
			r.setLocked(e.name, st, cur, ev, &local, at)
			st.ver, st.unshared = ver, false
			st.mu.Unlock()
			return nil
		}
		st.mu.Unlock()
		tries++
	}
	return errContended
}

// errContended says an operation lost every compare-and-set to other writers, or
// ran out of time waiting for their changes to take effect: Redis answers, so
// nothing is applied on this replica alone.
var errContended = fmt.Errorf("%w: the state kept changing under concurrent updates; try again", ErrUnavailable)

// rollbackHere rolls the canary of e back on this replica alone, for an operator
// whose rollback could not reach the shared state; poll shares it once Redis
// answers again. It takes effect at once: no other replica can learn of it to
// switch at the same instant.
func (s *shared) rollbackHere(r *Router, e *Endpoint, st *state) {
	st.mu.Lock()
	defer st.mu.Unlock()
	c := st.ctl
	c.override = slices.Clone(c.override)
	if ev, err := opRollback(st.cfg, &c, r.now()); err == nil && ev != "" {
		c.reason += unsharedNote
		r.setLocked(e.name, st, c, ev, nil, time.Time{})
		st.unshared = true
	}
}

// unsharedNote ends the reason of a rollback made on one replica while the
// shared state was unavailable; it stays true once the rollback is shared.
const unsharedNote = ", on one replica while the shared state was unavailable"

// judgeHere judges each canary on this replica's own traffic, for a tick that
// could not reach the shared state, and applies rollbacks only. No leader can judge
// the merged windows then, and holding a failing canary until Redis is back would
// send users to it for the whole outage. Rolling back is the safe direction, which
// every replica that sees the breach takes alike; a step waits for the shared state,
// so that replicas never move users to the canary on their own. The rollback takes
// effect at once, there being no replica to agree an instant with. Redis gets the
// rollback once it answers again (see poll).
func (s *shared) judgeHere(r *Router, eps []*Endpoint) {
	now := r.now()
	for _, e := range eps {
		st := e.st.Load()
		if st.canary < 0 {
			continue
		}
		st.mu.Lock()
		whole, recent, from := st.localWindows(now)
		if next, ev := decide(st.cfg, st.ctl, whole, recent, from, now); ev == evRollback {
			next.reason += unsharedNote
			r.setLocked(e.name, st, next, ev, nil, time.Time{})
			st.unshared = true
		}
		st.mu.Unlock()
	}
}

// withUnshared returns the shared state rs with this replica's unshared
// rollback applied to it, and whether that changed it. A canary Redis already
// has at 0 % keeps its own rollback's reason and window; any other state,
// whatever replicas or operators made it meanwhile, is rolled back, as the gate
// or operator here did. st.mu must be held.
func (st *state) withUnshared(rs ctlState) (ctlState, bool) {
	if !st.unshared {
		return rs, false
	}
	next := rs
	next.override = slices.Clone(rs.override)
	if ev, err := opRollback(st.cfg, &next, st.ctl.since); err != nil || ev == "" {
		return rs, false
	}
	next.reason = st.ctl.reason
	return next, true
}

// tick is one round with Redis: flush, lease, read, decide.
func (s *shared) tick(ctx context.Context, r *Router, eps []*Endpoint) {
	ctx, cancel := context.WithTimeout(ctx, max(2*r.tickEvery, time.Second))
	defer cancel()
	ferr := s.flush(ctx, r, eps)
	lerr := s.lease(ctx, r, eps)
	synced, perr := s.poll(ctx, r, eps)
	if msg := oneLine(ferr, lerr, perr, s.decide(ctx, r, eps, synced)); msg != "" {
		if !s.failing.Swap(true) {
			r.log.LogAttrs(ctx, slog.LevelWarn, "router shared state unavailable; weights held as they are, "+
				"except that a canary breaching a gate on this replica's own traffic is rolled back",
				slog.String("error", msg))
		}
		s.judgeHere(r, eps)
	} else if s.failing.Swap(false) {
		r.log.LogAttrs(ctx, slog.LevelInfo, "router shared state available again")
	}
}

// oneLine is the texts of errs that are not nil, each once, joined by "; ": a log
// line's error. errors.Join (as poll and decide join their endpoints' errors) puts a
// line break between texts, and a Redis that is down fails each step of a tick, and
// each endpoint, with the same error.
func oneLine(errs ...error) string {
	var seen []string
	for _, err := range errs {
		if err == nil {
			continue
		}
		for text := range strings.SplitSeq(err.Error(), "\n") {
			if !slices.Contains(seen, text) {
				seen = append(seen, text)
			}
		}
	}
	return strings.Join(seen, "; ")
}

// flush adds what each canary saw since the last flush to its window and
// to the window's current slot.
func (s *shared) flush(ctx context.Context, r *Router, eps []*Endpoint) error {
	type pending struct {
		st  *state
		now *window
	}
	var todo []pending
	pipe := s.rdb.Pipeline()
	now := r.now()
	for _, e := range eps {
		st := e.st.Load()
		if st.canary < 0 {
			continue
		}
		st.mu.Lock()
		// A state not yet in step with Redis (a replica just started, or
		// its routes just changed) has a window of its own that no leader
		// reads; its counts wait and go to the shared window once poll
		// has adopted or published one.
		synced := st.ver != 0
		st.openWindow(now)
		if st.win.opening {
			// The window begins at the instant its change takes effect: what
			// the canary serves until then goes to no window (see openWindow).
			st.mu.Unlock()
			continue
		}
		if st.win.rebase && synced {
			st.win.flushed, st.win.rebase = st.win.start, false
		}
		key := s.windowKey(e.name, st.sig, st.ctl.since)
		slot := slotKey(key, st.cfg.slotLen, st.cfg.slot(st.ctl.since, now))
		// The slots matter for two slot lengths; the whole window for as long as
		// the canary may wait for min_requests in it, so a quiet canary's counts
		// outlive long gaps in its traffic.
		slotTTL := 2*st.cfg.interval + time.Minute
		ttl := slotTTL + 24*time.Hour
		st.mu.Unlock()
		if !synced {
			continue
		}
		cum := new(window)
		cum.copyFrom(&st.stats[st.canary])
		var d window
		d.sub(cum, &st.win.flushed)
		if d.requests == 0 && d.ttft.total() == 0 {
			// Nothing new; a first token whose attempt had no verdict
			// (ObserveTTFT) is new too.
			continue
		}
		for j, k := range [2]string{key, slot} {
			pipe.HIncrBy(ctx, k, "n", int64(d.requests))
			if d.errors > 0 {
				pipe.HIncrBy(ctx, k, "e", int64(d.errors))
			}
			for i := range d.lat {
				if d.lat[i] > 0 {
					pipe.HIncrBy(ctx, k, "l"+strconv.Itoa(i), int64(d.lat[i]))
				}
				if d.ttft[i] > 0 {
					pipe.HIncrBy(ctx, k, "t"+strconv.Itoa(i), int64(d.ttft[i]))
				}
			}
			if j == 0 {
				pipe.PExpire(ctx, k, ttl)
			} else {
				pipe.PExpire(ctx, k, slotTTL)
			}
		}
		todo = append(todo, pending{st, cum})
	}
	if len(todo) == 0 {
		return nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		// The deltas stay unflushed and go out with the next tick.
		return err
	}
	for _, p := range todo {
		p.st.win.flushed = *p.now
	}
	return nil
}

// lease renews or takes the lease of every endpoint: one round trip for the
// renewals, and one more for the leases that lapsed.
func (s *shared) lease(ctx context.Context, r *Router, eps []*Endpoint) error {
	ms := strconv.FormatInt(s.ttl.Milliseconds(), 10)
	now := make(map[string]bool, len(eps))
	pipe := s.rdb.Pipeline()
	renew := make([]*redis.Cmd, len(eps))
	for i, e := range eps {
		renew[i] = renewScript.Eval(ctx, pipe, []string{s.leaseKey(e.name)}, s.id, ms)
	}
	_, err := pipe.Exec(ctx)
	if err == nil {
		var take []string
		var taken []*redis.BoolCmd
		pipe = s.rdb.Pipeline()
		for i, e := range eps {
			if n, _ := renew[i].Int64(); n == 1 {
				now[e.name] = true
			} else {
				take = append(take, e.name)
				taken = append(taken, pipe.SetNX(ctx, s.leaseKey(e.name), s.id, s.ttl))
			}
		}
		if len(take) > 0 {
			if _, err = pipe.Exec(ctx); err == nil {
				for i, name := range take {
					if taken[i].Val() {
						now[name] = true
					}
				}
			}
		}
	}
	if err != nil {
		clear(now)
	}
	s.mu.Lock()
	var gained, lost []string
	for name := range now {
		if !s.leading[name] {
			gained = append(gained, name)
		}
	}
	for name := range s.leading {
		if !now[name] {
			lost = append(lost, name)
		}
	}
	s.leading = now
	s.leader.Store(len(now) > 0)
	s.mu.Unlock()
	if len(gained) > 0 || len(lost) > 0 {
		slices.Sort(gained)
		slices.Sort(lost)
		r.log.LogAttrs(ctx, slog.LevelInfo, "router leadership changed", slog.String("id", s.id),
			slog.Any("leads", gained), slog.Any("no_longer_leads", lost), slog.Int("endpoints_led", len(now)))
	}
	return err
}

// poll reads every endpoint's shared state and follows it. It returns the
// states that are in step with Redis, the only ones the leader may decide
// for.
func (s *shared) poll(ctx context.Context, r *Router, eps []*Endpoint) (map[*state]bool, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(eps))
	for i, e := range eps {
		cmds[i] = pipe.HGetAll(ctx, s.stateKey(e.name))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, err
	}
	synced := make(map[*state]bool, len(eps))
	var errs []error
	for i, e := range eps {
		st := e.st.Load()
		st.mu.Lock()
		rs, ok := parseRemote(cmds[i].Val(), len(st.lay.home))
		var err error
		switch {
		case ok && rs.sig == st.sig && rs.ver < st.ver:
			// Redis went back to an older state (restarted from a snapshot, or
			// failed over to a replica that lagged): the decisions and operations
			// made since would be undone. This replica writes back the state it
			// has, above every version it has seen, and the others follow it.
			now := r.now()
			var ver int64
			from := rs.inForce(now)
			if ver, err = s.cas(ctx, e.name, st, rs.ver, st.ver+1, &st.ctl, &from, now.Add(r.switchDelay)); err == nil && ver > 0 {
				st.ver, st.unshared = ver, false
				r.log.LogAttrs(ctx, slog.LevelWarn, "router shared state in Redis was older than this replica's; wrote it back",
					slog.String("endpoint", e.name), slog.Int64("redis_version", rs.ver), slog.Int64("version", ver))
			}
		case ok && rs.sig == st.sig && st.unshared:
			// This replica rolled the canary back while Redis was unavailable:
			// write the rollback over whatever Redis holds now. It is not
			// written again over a canary Redis has at 0 % already.
			next, rolled := st.withUnshared(rs.ctl)
			if !rolled {
				st.unshared = false
				s.adoptLocked(r, e.name, st, rs)
				synced[st] = true
				break
			}
			// The others switch at the instant, from what Redis has in force;
			// this replica has had the rollback in force since it made it.
			from := rs.inForce(r.now())
			var won bool
			if won, err = s.publish(ctx, r, e.name, st, rs.ver, next, &from, evRollback); won {
				st.unshared = false
				r.log.LogAttrs(ctx, slog.LevelInfo, "router wrote a canary rollback made while the shared state was unavailable",
					slog.String("endpoint", e.name), slog.String("reason", next.reason))
			}
		case ok && rs.sig == st.sig:
			s.adoptLocked(r, e.name, st, rs)
			synced[st] = true
		case rs.ver == 0 || s.leads(e.name):
			// Nothing shared yet, or another config's state: the leader
			// replaces it with this config's.
			from := st.inForce(r.now())
			var won bool
			if won, err = s.publish(ctx, r, e.name, st, rs.ver, st.ctl, &from, "publish"); won {
				st.unshared = false
			}
		}
		st.mu.Unlock()
		if err != nil {
			errs = append(errs, err)
		}
	}
	return synced, errors.Join(errs...)
}

// adoptLocked makes the shared state rs, read for this config, the local one when
// it is newer; st.mu must be held.
func (s *shared) adoptLocked(r *Router, name string, st *state, rs remoteState) {
	if rs.ver == st.ver {
		return
	}
	if st.ver == 0 && st.win != nil && rs.ctl.since.After(st.ctl.since) {
		// The counts this replica held while out of step began before the
		// cluster's window did, some in windows the cluster has closed, at
		// other weights: they cannot be told apart, so none go to the window
		// being judged.
		st.win.flushed.copyFrom(&st.stats[st.canary])
	}
	r.setLocked(name, st, rs.ctl, "sync", rs.from, rs.at)
	st.ver = rs.ver
}

// publish writes next with a compare-and-set and applies it locally when
// the write wins, which it reports; st.mu must be held. The new version is
// above every one this replica has seen: over a Redis that came back empty,
// a low one would have the other replicas write their older state back over
// this one. next takes effect switchDelay from now on every replica, from being
// in force until then: the leader's steps and rollbacks alike, so that no user
// bounces between variants while the replicas learn of it. This replica keeps
// what it has in force until then too, which is from but for a rollback it made
// alone (unshared), in force here already.
func (s *shared) publish(ctx context.Context, r *Router, name string, st *state, expect int64, next ctlState, from *ctlState, event string) (bool, error) {
	now := r.now()
	at := now.Add(r.switchDelay)
	st.openAtInstant(&next, from, st.ctl.since, at)
	ver, err := s.cas(ctx, name, st, expect, st.ver+1, &next, from, at)
	if err != nil || ver == 0 {
		return false, err
	}
	local := from
	if st.unshared {
		in := st.inForce(now)
		local = &in
	}
	r.setLocked(name, st, next, event, local, at)
	st.ver = ver
	return true, nil
}

// decide runs the controllers of the endpoints in step with Redis on the
// windows merged from every replica.
func (s *shared) decide(ctx context.Context, r *Router, eps []*Endpoint, synced map[*state]bool) error {
	type job struct {
		e                *Endpoint
		st               *state
		whole, prev, cur *redis.MapStringStringCmd
		from, since      time.Time
	}
	var jobs []job
	now := r.now()
	pipe := s.rdb.Pipeline()
	for _, e := range eps {
		st := e.st.Load()
		if st.canary < 0 || !synced[st] || !s.leads(e.name) {
			continue
		}
		st.mu.Lock()
		active := st.ctl.state == StateStepping || st.ctl.state == StatePaused
		key := s.windowKey(e.name, st.sig, st.ctl.since)
		k := st.cfg.slot(st.ctl.since, now)
		slotLen := st.cfg.slotLen
		from := st.ctl.since.Add(time.Duration(max(k-1, 0)) * slotLen)
		since := st.ctl.since
		st.mu.Unlock()
		if active {
			jobs = append(jobs, job{e: e, st: st, from: from, since: since,
				whole: pipe.HGetAll(ctx, key),
				prev:  pipe.HGetAll(ctx, slotKey(key, slotLen, k-1)),
				cur:   pipe.HGetAll(ctx, slotKey(key, slotLen, k)),
			})
		}
	}
	if len(jobs) == 0 {
		return nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	windowsRead()
	var errs []error
	for _, j := range jobs {
		whole, recent := parseWindow(j.whole.Val()), parseWindow(j.cur.Val())
		recent.add(parseWindow(j.prev.Val()))
		j.st.mu.Lock()
		if !j.st.ctl.since.Equal(j.since) {
			// A new window began while this one was read (an operator's resume, a
			// step another replica published): its counts judge nothing now.
			j.st.mu.Unlock()
			continue
		}
		j.st.cluster, j.st.clusterRecent, j.st.hasCluster = whole.summary(), recent.summary(), true
		next, ev := decide(j.st.cfg, j.st.ctl, whole, recent, j.from, now)
		if (ev == evStep || ev == evPromote) && j.st.tabs.Load().pending(now) {
			// The last change has not taken effect yet: a step now would be judged
			// on traffic at the weights before it, and would replace it before any
			// user reached its weights. A rollback goes ahead, replacing it.
			ev = ""
		}
		if ev != "" {
			from := j.st.inForce(now)
			if _, err := s.publish(ctx, r, j.e.name, j.st, j.st.ver, next, &from, ev); err != nil {
				errs = append(errs, err)
			}
		}
		j.st.mu.Unlock()
	}
	return errors.Join(errs...)
}

// windowsRead runs in decide between reading the windows and judging them; tests
// change state there.
var windowsRead = func() {}

func parseWindow(f map[string]string) *window {
	w := new(window)
	for k, v := range f {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || k == "" {
			continue
		}
		switch k[0] {
		case 'n':
			w.requests = n
		case 'e':
			w.errors = n
		case 'l', 't':
			i, err := strconv.Atoi(k[1:])
			if err != nil || i < 0 || i >= histBuckets {
				continue
			}
			if k[0] == 'l' {
				w.lat[i] = n
			} else {
				w.ttft[i] = n
			}
		}
	}
	return w
}
