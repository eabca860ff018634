package router

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
)

// Target is one backend a request may be sent to.
type Target struct {
	// Backend is the backend's index in the names given to NewEndpoint.
	Backend int
	// Name is the backend's name.
	Name string
	// Variant is the chosen route's variant, also on fallbacks (Route -1),
	// where the gateway labels nothing with it: a fallback serves no route.
	Variant string
	// Route is the index of the route this target is, for Observe; -1 for
	// a fallback or a context fallback, whose attempts do not count toward
	// any route's gates.
	Route int
}

// Plan is the routing decision for one request. The caller owns it and may
// reuse it; Targets points into the endpoint's immutable tables and must
// not be modified.
type Plan struct {
	// Route is the chosen route's index.
	Route int
	// Variant is the chosen route's variant, for x-tollgate-variant.
	Variant string
	// Weight is the chosen route's live weight in percent.
	Weight float64
	// Sticky is true when the choice came from a sticky key rather than
	// weighted random.
	Sticky bool
	// Retries is how many times a failed attempt may be retried before
	// the first byte reaches the client.
	Retries int
	// Targets are the chosen route's backend, then the fallbacks in order,
	// without the chosen backend repeated. Replica choice and health are
	// per backend and happen after the plan, by Target.Backend.
	Targets []Target
	// ContextTargets are the context fallbacks in order (Route -1, no
	// variant): where a request goes when a backend answers that it does not
	// fit the model's context window. The caller skips those it already
	// tried. Empty without context_fallbacks; never to be modified.
	ContextTargets []Target
}

// Endpoint is the routing of one endpoint for one config snapshot. Its
// configuration is immutable; its live weights and canary state sit in a
// state shared with the endpoint of the same name in later snapshots for
// as long as its routes do not change. Plan and Observe are safe for
// concurrent use and lock-free.
type Endpoint struct {
	name    string
	seed    uint64
	cfg     Config
	sig     uint64
	home    []int32 // configured weights in buckets
	backend []string
	variant []string
	targets [][]Target // per route
	// ctxTargets are the context fallbacks, the same for every route.
	ctxTargets []Target
	canary     *canaryCfg // nil without a canary
	st         atomic.Pointer[state]
}

// NewEndpoint validates cfg, checks that every backend it names is one of
// backends, and builds the endpoint's tables. It runs Config.Validate
// itself: callers need not call both. Errors are an errors.Join of
// *FieldError with keys relative to cfg. The endpoint routes by its
// configured weights until Router.Apply attaches the live state.
func NewEndpoint(name string, cfg Config, backends []string) (*Endpoint, error) {
	var fe fieldErrors
	cfg.validate(&fe)
	index := make(map[string]int, len(backends))
	for i, b := range backends {
		index[b] = i
	}
	for i, r := range cfg.Routes {
		if _, ok := index[r.Backend]; !ok && r.Backend != "" {
			fe.add(idx("routes", i)+".backend", "unknown backend "+strconv.Quote(r.Backend))
		}
	}
	for i, f := range cfg.Fallbacks {
		if _, ok := index[f]; !ok && f != "" {
			fe.add(idx("fallbacks", i), "unknown backend "+strconv.Quote(f))
		}
	}
	for i, f := range cfg.ContextFallbacks {
		if _, ok := index[f]; !ok && f != "" {
			fe.add(idx("context_fallbacks", i), "unknown backend "+strconv.Quote(f))
		}
	}
	if len(fe) > 0 {
		return nil, errors.Join(fe...)
	}
	e := &Endpoint{
		name: name,
		seed: xxhash.Sum64String(name),
		cfg:  cfg,
	}
	n := len(cfg.Routes)
	e.home = make([]int32, n)
	e.backend = make([]string, n)
	e.variant = make([]string, n)
	e.targets = make([][]Target, n)
	canary := -1
	for i := range cfg.Routes {
		r := &cfg.Routes[i]
		e.home[i] = int32(r.Weight) * Buckets / 100
		e.backend[i] = r.Backend
		e.variant[i] = r.variant()
		if cfg.Canary != nil && r.Backend == cfg.Canary.Backend {
			canary = i
		}
	}
	for i := range cfg.Routes {
		ts := make([]Target, 0, 1+len(cfg.Fallbacks))
		ts = append(ts, Target{Backend: index[e.backend[i]], Name: e.backend[i], Variant: e.variant[i], Route: i})
		for _, f := range cfg.Fallbacks {
			if f != e.backend[i] {
				ts = append(ts, Target{Backend: index[f], Name: f, Variant: e.variant[i], Route: -1})
			}
		}
		e.targets[i] = ts
	}
	for _, f := range cfg.ContextFallbacks {
		e.ctxTargets = append(e.ctxTargets, Target{Backend: index[f], Name: f, Route: -1})
	}
	if canary >= 0 {
		e.canary = newCanaryCfg(cfg.Canary, canary, e.home[canary])
		e.canary.order = identityOrder(e.backend)
	}
	e.sig = e.signature()
	e.st.Store(newState(e))
	return e, nil
}

// signature identifies what live state may be carried over from: the
// same routes (backend, weight, variant, order) and the same canary route.
func (e *Endpoint) signature() uint64 {
	d := xxhash.New()
	var b [8]byte
	_, _ = d.WriteString(e.name)
	for i := range e.home {
		_, _ = d.WriteString("\x00")
		_, _ = d.WriteString(e.backend[i])
		_, _ = d.WriteString("\x00")
		_, _ = d.WriteString(e.variant[i])
		binary.LittleEndian.PutUint64(b[:], uint64(e.home[i]))
		_, _ = d.Write(b[:])
	}
	c := int64(-1)
	if e.canary != nil {
		c = int64(e.canary.route)
	}
	binary.LittleEndian.PutUint64(b[:], uint64(c))
	_, _ = d.Write(b[:])
	return d.Sum64()
}

// Name is the endpoint's name.
func (e *Endpoint) Name() string { return e.name }

// Config is the endpoint's routing configuration as given to NewEndpoint.
func (e *Endpoint) Config() *Config { return &e.cfg }

// Sticky returns where the endpoint's sticky key comes from, or nil when
// requests are spread by weighted random.
func (e *Endpoint) Sticky() *Sticky { return e.cfg.Sticky }

// Plan fills p for a request whose sticky key is key and which arrived at now;
// an empty key picks a route by weighted random. now picks the weights in force:
// a change shared through Redis takes effect at one instant on every replica
// (switchDelay), and a request is routed by the weights in force when it arrived,
// so that every replica routes alike what arrived alike. The request path passes
// the arrival time it has already read; Plan reads no clock. It does not allocate.
func (e *Endpoint) Plan(key []byte, now time.Time, p *Plan) {
	t := e.st.Load().tabs.Load().in(now)
	var b uint32
	if len(key) > 0 {
		var d xxhash.Digest
		d.ResetWithSeed(e.seed)
		_, _ = d.Write(key)
		b = bucketOf(d.Sum64())
		p.Sticky = true
	} else {
		// math/rand/v2's top-level source is per-thread and lock-free.
		b = bucketOf(rand.Uint64())
		p.Sticky = false
	}
	r := int(t.route[b])
	p.Route = r
	p.Variant = e.variant[r]
	p.Weight = t.pct[r]
	p.Retries = e.cfg.Retries
	p.Targets = e.targets[r]
	p.ContextTargets = e.ctxTargets
}

// PlanFor plans the route whose own backend is backend (its index in the names given
// to NewEndpoint), for a call that must reach that backend whatever its caller's
// bucket (a response stored there); now is the request's arrival, as for Plan. It
// reports false, p untouched, when no route's backend is.
func (e *Endpoint) PlanFor(backend int, now time.Time, p *Plan) bool {
	for r, ts := range e.targets {
		if len(ts) > 0 && ts[0].Backend == backend {
			t := e.st.Load().tabs.Load().in(now)
			p.Route, p.Variant, p.Weight = r, e.variant[r], t.pct[r]
			p.Retries, p.Targets, p.ContextTargets = e.cfg.Retries, ts, e.ctxTargets
			return true
		}
	}
	return false
}

// bucketOf maps a 64-bit hash onto [0, Buckets) by multiply-shift, which
// avoids a division and whose bias (10,000 / 2^32) is far below the 0.01 %
// a bucket is worth.
func bucketOf(h uint64) uint32 {
	return uint32((uint64(uint32(h^(h>>32))) * Buckets) >> 32)
}

// Observe records one attempt on route (Target.Route) of a request that arrived at
// arrival (the time given to Plan): its latency, its time to first token (0 when
// not streamed) and whether it failed with a 5xx or a timeout. An attempt on the
// canary counts toward its window only if its request arrived once the window had
// opened: one that arrived before was routed at the weights before the window's
// change, however late it ends, and counts in the route's totals alone. Fallback
// attempts (route -1) are ignored. It does not allocate or lock.
func (e *Endpoint) Observe(route int, arrival time.Time, latency, ttft time.Duration, failed bool) {
	st := e.st.Load()
	if route < 0 || route >= len(st.stats) {
		return
	}
	if st.before(route, arrival) {
		st.stats[route].observeBefore(failed)
		return
	}
	st.stats[route].observe(latency, ttft, failed)
}

// ObserveUnserved records an attempt on route, of a request that arrived at arrival,
// that its backend could not send upstream because every one of its targets was out
// of service (none free for a last-resort trial either): a failed attempt for the
// error-rate gate and min_requests, with no latency or TTFT. A canary whose replicas
// are all ejected fails its users, whether or not a fallback then serves them, and is
// judged so; as in Observe, only on requests that arrived once its window opened.
// Fallback attempts (route -1) are ignored. It does not allocate or lock.
func (e *Endpoint) ObserveUnserved(route int, arrival time.Time) {
	st := e.st.Load()
	if route < 0 || route >= len(st.stats) {
		return
	}
	if st.before(route, arrival) {
		st.stats[route].observeBefore(true)
		return
	}
	st.stats[route].refuse()
}

// ObserveTTFT records the time to first token of a streamed attempt on route that has
// no verdict: its client went away after the first token, so whether the upstream
// would have finished well is unknown, while how long the first token took is the
// upstream's. It feeds the TTFT gate only and counts as no attempt (neither error nor
// success), as the target's health takes no verdict of such a stream either; a request
// that arrived before the canary's window opened (arrival, as in Observe) feeds none.
// Fallback attempts (route -1) are ignored. It does not allocate or lock.
func (e *Endpoint) ObserveTTFT(route int, arrival time.Time, ttft time.Duration) {
	st := e.st.Load()
	if route < 0 || route >= len(st.stats) || ttft <= 0 || st.before(route, arrival) {
		return
	}
	st.stats[route].ttft[histIndex(ttft)].Add(1)
}

// table is an immutable bucket layout for one set of live weights.
type table struct {
	route   [Buckets]uint8
	weights []int32   // buckets
	pct     []float64 // percent
}

// tables is what Plan routes by: the table in force and, while a change shared
// through Redis waits for its instant, the table that replaces it then. It is
// immutable and swapped whole, so that a request reads one consistent pair with
// one atomic load, and the only cost a pending change adds to it is comparing the
// request's arrival with the instant.
type tables struct {
	cur *table
	// next, when not nil, replaces cur from the instant at (Unix nanoseconds) on.
	next *table
	at   int64
	// state and nextState are the canary states cur and next belong to, for
	// tollgate_canary_state, which follows the weights in force.
	state, nextState CanaryState
}

// in returns the table in force at now.
func (ts *tables) in(now time.Time) *table {
	if ts.next != nil && now.UnixNano() >= ts.at {
		return ts.next
	}
	return ts.cur
}

// stateIn returns the canary state in force at now.
func (ts *tables) stateIn(now time.Time) CanaryState {
	if ts.next != nil && now.UnixNano() >= ts.at {
		return ts.nextState
	}
	return ts.state
}

// pending reports whether a change still waits for its instant at now.
func (ts *tables) pending(now time.Time) bool {
	return ts.next != nil && now.UnixNano() < ts.at
}

// newest is the table of the latest change, in force or pending.
func (ts *tables) newest() *table {
	if ts.next != nil {
		return ts.next
	}
	return ts.cur
}

func buildTable(l *layout, w []int32) *table {
	t := &table{weights: append([]int32(nil), w...), pct: make([]float64, len(w))}
	for i, x := range w {
		t.pct[i] = float64(x) * 100 / Buckets
	}
	l.assign(t.weights, &t.route)
	return t
}

// state is the live routing state of an endpoint name; it outlives config
// snapshots while the routes stay the same.
type state struct {
	sig     uint64
	variant []string
	lay     layout
	tabs    atomic.Pointer[tables]
	stats   []routeStats
	canary  int // route index, -1 without a canary
	// opens is when the canary's current window opens (ctl.since), in Unix
	// nanoseconds, for Observe to tell without a lock the attempts of requests
	// that arrived before it; math.MinInt64 while no window has a start.
	opens atomic.Int64

	mu  sync.Mutex // guards everything below
	cfg *canaryCfg
	ctl ctlState
	// win tracks the canary's local windows; nil without a canary.
	win *canaryWindows
	// from is the control state in force until at, while a change shared
	// through Redis waits for that instant (see set).
	from ctlState
	at   time.Time
	// ver is the shared state's version last applied.
	ver int64
	// unshared says the canary was rolled back here while the shared state
	// was unavailable (a gate on this replica's own traffic, or an operator on
	// this replica), and Redis does not have the rollback yet; poll writes it
	// there once Redis answers again.
	unshared bool
	// cluster and clusterRecent are the windows the leader last merged
	// from every replica.
	cluster, clusterRecent WindowStats
	hasCluster             bool
}

// canaryWindows are copies of the canary route's counters taken at the
// start of the current window and of the last two slots (see
// canaryCfg.slotLen): the counters now minus a copy is the traffic since.
type canaryWindows struct {
	start        window
	cur, prev    window
	curAt        time.Time
	prevAt       time.Time
	slot         int64
	slotsStarted bool
	// opening says the current window begins at an instant still to come (its
	// since): a change shared through Redis opens its window when its weights
	// take effect, the attempts observed until then having been served at the
	// weights before it. start is copied when a tick, or a read of the windows,
	// first finds the instant passed (openWindow).
	opening bool
	// rebase says a window opened after the last flush: the next flush writes
	// the counts since start, not since flushed, so that the attempts observed
	// before the window opened go to none.
	rebase bool
	// flushed holds the counters as last written to Redis; only the Run
	// goroutine touches it.
	flushed window
}

func newState(e *Endpoint) *state {
	st := &state{
		sig:     e.sig,
		variant: e.variant,
		lay:     newLayout(e.seed, e.backend, e.home),
		stats:   make([]routeStats, len(e.home)),
		canary:  -1,
		cfg:     e.canary,
	}
	if e.canary != nil {
		st.canary = e.canary.route
		st.win = new(canaryWindows)
		st.ctl = ctlState{state: StateStepping, cw: e.canary.start, reason: "configured"}
	}
	st.opens.Store(math.MinInt64)
	st.tabs.Store(&tables{cur: buildTable(&st.lay, st.weightsFor(&st.ctl)), state: st.ctl.state})
	return st
}

// weightsFor returns the live weights c implies.
func (st *state) weightsFor(c *ctlState) []int32 {
	if c.override != nil {
		return c.override
	}
	w := make([]int32, len(st.lay.home))
	if st.canary < 0 {
		copy(w, st.lay.home)
		return w
	}
	canaryWeights(st.lay.home, st.lay.byID, st.canary, c.cw, w)
	return w
}

// set makes next the current control state, starting a new window when next's
// does. Its weights take effect at the instant at; until then requests are routed
// by the weights of from, the state in force meanwhile on every replica. A nil from
// or an at not after now puts next in force at once. A change still pending from
// before is replaced: the weights of the newest change, at its instant. It reports
// whether anything changed. st.mu must be held.
func (st *state) set(next ctlState, from *ctlState, at, now time.Time) bool {
	if st.ctl.equal(&next) {
		return false
	}
	if !st.ctl.since.Equal(next.since) && st.win != nil {
		st.hasCluster = false
		// Observe counts an attempt whose request arrived before next's window
		// opens in the route's totals alone from here on, so the window's counts
		// start now, also for one that opens at an instant still to come
		// (openWindow): the attempts that arrive after it then count from it, not
		// from this replica's first read of its counters after it.
		st.opens.Store(next.since.UnixNano())
		st.win.start.copyFrom(&st.stats[st.canary])
		// One opened now on a replica in step with Redis flushes from now: what it
		// observed since its last flush was served at the weights before the
		// change (a change read after its instant).
		st.win.opening = next.since.After(now)
		if !st.win.opening {
			st.win.slotsStarted = false
			st.win.rebase = st.ver != 0
		}
	}
	ts := st.tabs.Load()
	t := st.tableFor(st.weightsFor(&next), ts)
	st.at = time.Time{}
	if from != nil && at.After(now) {
		if f := st.tableFor(st.weightsFor(from), ts); f != t && !equalWeights(f.weights, t.weights) {
			st.tabs.Store(&tables{cur: f, state: from.state, next: t, nextState: next.state, at: at.UnixNano()})
			st.from, st.at = from.clone(), at
			st.ctl = next
			return true
		}
	}
	st.tabs.Store(&tables{cur: t, state: next.state})
	st.ctl = next
	return true
}

// tableFor returns a table of ts with the weights w, or a new one.
func (st *state) tableFor(w []int32, ts *tables) *table {
	for _, t := range [2]*table{ts.cur, ts.next} {
		if t != nil && equalWeights(w, t.weights) {
			return t
		}
	}
	return buildTable(&st.lay, w)
}

// inForce is the control state whose weights are in force at now: the one a
// pending change replaces until its instant, else the current one. st.mu must be
// held.
func (st *state) inForce(now time.Time) ctlState {
	if now.Before(st.at) {
		return st.from
	}
	return st.ctl
}

// before reports whether an attempt on route of a request that arrived at arrival
// belongs to no window: route is the canary and the request arrived before its
// window opened.
func (st *state) before(route int, arrival time.Time) bool {
	return route == st.canary && arrival.UnixNano() < st.opens.Load()
}

// settle drops a pending change's old table once its instant has passed, so that
// readers find the weights in force without comparing; it reports whether it did.
// Plan is right without it. It does not need st.mu: a change stored meanwhile wins.
func (st *state) settle(now time.Time) bool {
	ts := st.tabs.Load()
	if ts.next == nil || ts.pending(now) {
		return false
	}
	return st.tabs.CompareAndSwap(ts, &tables{cur: ts.next, state: ts.nextState})
}

// openWindow opens the current window if it waits for an instant (opening) that
// now has reached: the canary's traffic counts toward it from its start, taken when
// the change was read (set), which only attempts arriving from the instant on have
// added to. st.mu must be held.
func (st *state) openWindow(now time.Time) {
	w := st.win
	if w == nil || !w.opening || now.Before(st.ctl.since) {
		return
	}
	w.opening, w.slotsStarted, w.rebase = false, false, true
}

// localWindows returns the canary's traffic on this replica since the
// window began (whole) and over the last one to two slots (recent, which
// began at from); both are empty while the window waits for its instant.
// Calls at least once a slot keep recent accurate; Run ticks far more often.
// st.mu must be held.
func (st *state) localWindows(now time.Time) (whole, recent *window, from time.Time) {
	st.openWindow(now)
	w := st.win
	if w.opening {
		return new(window), new(window), st.ctl.since
	}
	var cum window
	cum.copyFrom(&st.stats[st.canary])
	k := st.cfg.slot(st.ctl.since, now)
	switch {
	case !w.slotsStarted:
		w.prev, w.cur = w.start, w.start
		w.prevAt, w.curAt = st.ctl.since, st.ctl.since
		w.slot, w.slotsStarted = k, true
	case k == w.slot+1:
		w.prev, w.prevAt = w.cur, w.curAt
		w.cur, w.curAt, w.slot = cum, now, k
	case k != w.slot:
		// Skipped slots: nothing recent is known before now.
		w.prev, w.cur = cum, cum
		w.prevAt, w.curAt, w.slot = now, now, k
	}
	whole, recent = new(window), new(window)
	whole.sub(&cum, &w.start)
	recent.sub(&cum, &w.prev)
	return whole, recent, w.prevAt
}

func equalWeights(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
