package router

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options configure a Router. The zero value runs every controller locally.
type Options struct {
	// Logger receives weight and state changes; nil discards them.
	Logger *slog.Logger
	// Redis, when set, shares weights and canary state among replicas: one
	// replica at a time leads and decides for all.
	Redis redis.UniversalClient
	// KeyPrefix starts every Redis key; empty means "tollgate:router:".
	KeyPrefix string
	// ID names this replica in the leader lease; empty means host, pid and
	// a random suffix.
	ID string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// TickEvery is how often Run checks the canaries and, with Redis,
	// reads the shared state; 0 means 500ms, so every replica follows a
	// change within a second.
	TickEvery time.Duration
	// NewTicker makes Run's ticker; nil means time.NewTicker. Tests pass
	// a channel they drive themselves.
	NewTicker func(time.Duration) (<-chan time.Time, func())
	// LeaseTTL is how long the leader lease lives without renewal; 0
	// means 10 × TickEvery.
	LeaseTTL time.Duration
}

// Router keeps the routing state that outlives config snapshots — live
// weights, canary controllers, per-route counters — keyed by endpoint
// name, and runs the canary controllers.
type Router struct {
	log       *slog.Logger
	now       func() time.Time
	tickEvery time.Duration
	// switchDelay is how long after a shared change is written it takes effect.
	switchDelay time.Duration
	newTicker   func(time.Duration) (<-chan time.Time, func())
	// wait sleeps d or until ctx ends; tests that drive a fake clock advance it.
	wait   func(ctx context.Context, d time.Duration) error
	shared *shared // nil without Redis

	mu  sync.Mutex // guards eps
	eps map[string]*Endpoint

	changes atomic.Uint64
}

// New returns a Router with no endpoints.
func New(o Options) *Router {
	r := &Router{
		log:       o.Logger,
		now:       o.Now,
		tickEvery: o.TickEvery,
		newTicker: o.NewTicker,
		eps:       map[string]*Endpoint{},
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	// Window starts travel through Redis in milliseconds; keeping every
	// local one at that precision lets replicas compare them exactly.
	clock := r.now
	r.now = func() time.Time { return clock().Truncate(time.Millisecond) }
	if r.tickEvery <= 0 {
		r.tickEvery = 500 * time.Millisecond
	}
	// A longer poll interval needs a longer delay: every replica must read the
	// change before its instant.
	r.switchDelay = max(switchDelay, r.tickEvery+switchMargin)
	r.wait = sleepCtx
	if r.newTicker == nil {
		r.newTicker = func(d time.Duration) (<-chan time.Time, func()) {
			t := time.NewTicker(d)
			return t.C, t.Stop
		}
	}
	if o.Redis != nil {
		prefix := o.KeyPrefix
		if prefix == "" {
			prefix = "tollgate:router:"
		}
		id := o.ID
		if id == "" {
			id = defaultID()
		}
		ttl := o.LeaseTTL
		if ttl <= 0 {
			ttl = 10 * r.tickEvery
		}
		r.shared = &shared{rdb: o.Redis, prefix: prefix, id: id, ttl: ttl}
	}
	return r
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func defaultID() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:])
}

// switchDelay is how long after a change is written to the shared state in Redis
// every replica (the writer included) switches to its weights: the writer stamps the
// change with its clock plus switchDelay, and each replica routes by the weights it
// had until its clock reaches that instant. Every replica reads the shared state each
// TickEvery (500 ms) and a read takes a round trip to Redis, so a delay longer than
// both together (switchMargin) has every replica that polls on time learn of a
// change before its instant: they all switch at once, and a user the change moves is
// never sent to the new variant by one replica and the old one by another (back and
// forth behind a load balancer). A replica that reads the change after its instant (a
// slow or failed poll) switches when it reads it. The replicas' clocks are assumed in
// sync (NTP, within milliseconds); a skew between two replicas is how long they
// disagree.
const switchDelay = 750 * time.Millisecond

// switchMargin is what switchDelay allows above the poll interval for the poll's
// round trip to Redis (the tick's timeout is far longer; a poll that slow switches
// late, when it reads the change).
const switchMargin = 250 * time.Millisecond

// Apply makes eps, the complete set of endpoints of a new config snapshot,
// the live ones. An endpoint whose name and routes match one already live
// takes over its weights, canary state and counters, with the new canary
// settings; an operator's weights override holds (only ClearWeights, a canary
// resume or a promote ends it). Other endpoints start from their config, and names
// no longer present are dropped. Call it before the snapshot serves requests.
func (r *Router) Apply(eps []*Endpoint) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	next := make(map[string]*Endpoint, len(eps))
	for _, e := range eps {
		fresh := e.st.Load()
		if old, ok := r.eps[e.name]; ok && old.st.Load().sig == e.sig {
			st := old.st.Load()
			if st != fresh {
				st.mu.Lock()
				st.cfg = e.canary
				st.mu.Unlock()
				e.st.Store(st)
			}
		} else {
			if ok {
				r.log.LogAttrs(context.Background(), slog.LevelInfo, "routes changed, live weights reset to the config",
					slog.String("endpoint", e.name))
			}
			fresh.mu.Lock()
			c := fresh.ctl
			c.since = now
			fresh.set(c, nil, time.Time{}, now)
			fresh.mu.Unlock()
			r.changes.Add(1)
		}
		next[e.name] = e
	}
	if len(next) != len(r.eps) {
		r.changes.Add(1)
	}
	r.eps = next
}

// Changes counts weight and state changes; the metrics side polls it and
// rereads Snapshot when it moves. A shared change counts again when it takes
// effect (its instant passed, seen by this call or by Run's tick), so the metrics
// follow the weights in force.
func (r *Router) Changes() uint64 {
	r.settle()
	return r.changes.Load()
}

// settle puts in force every pending change whose instant has passed.
func (r *Router) settle() {
	now := r.now()
	for _, e := range r.live() {
		if e.st.Load().settle(now) {
			r.changes.Add(1)
		}
	}
}

// Leader reports whether this replica leads the canary decisions of any
// endpoint; always true without Redis.
func (r *Router) Leader() bool {
	if r.shared == nil {
		return true
	}
	return r.shared.leader.Load()
}

// setLocked makes c the state of st and logs the change; its weights take effect
// at the instant at, those of from being in force until then (at once for a nil
// from: see state.set). st.mu must be held.
func (r *Router) setLocked(name string, st *state, c ctlState, event string, from *ctlState, at time.Time) bool {
	now := r.now()
	before := st.tabs.Load().in(now).weights
	prev := st.ctl.state
	if !st.set(c, from, at, now) {
		return false
	}
	r.changes.Add(1)
	level := slog.LevelInfo
	if event == evRollback {
		level = slog.LevelWarn
	}
	ts := st.tabs.Load()
	attrs := []slog.Attr{
		slog.String("endpoint", name),
		slog.String("event", event),
		slog.String("weights", formatWeights(st, ts.newest().weights)),
		slog.String("previous_weights", formatWeights(st, before)),
	}
	if ts.pending(now) {
		attrs = append(attrs, slog.Time("switch_at", time.Unix(0, ts.at).UTC()))
	}
	if st.canary >= 0 {
		attrs = append(attrs,
			slog.String("canary_state", c.state.String()),
			slog.String("previous_state", prev.String()))
	}
	if c.reason != "" {
		attrs = append(attrs, slog.String("reason", c.reason))
	}
	r.log.LogAttrs(context.Background(), level, "route weights changed", attrs...)
	return true
}

func formatWeights(st *state, w []int32) string {
	var b strings.Builder
	for i, x := range w {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(st.variant[i])
		b.WriteByte('=')
		b.WriteString(strconv.FormatFloat(float64(x)*100/Buckets, 'f', -1, 64))
	}
	return b.String()
}

func (r *Router) endpoint(name string) (*Endpoint, *state, error) {
	r.mu.Lock()
	e, ok := r.eps[name]
	r.mu.Unlock()
	if !ok {
		return nil, nil, ErrUnknownModel
	}
	return e, e.st.Load(), nil
}

// Pause holds the canary of endpoint name at its weight; the gates still
// roll it back on a breach.
func (r *Router) Pause(ctx context.Context, name string) (EndpointSnapshot, error) {
	return r.operateCanary(ctx, name, opPause)
}

// Resume lets a paused canary step again, or restarts a rolled-back one
// from its first step; a weights override ends. A canary a weights
// override paused at 0 % restarts from its first step too, since at 0 %
// it would get no traffic to earn a step with.
func (r *Router) Resume(ctx context.Context, name string) (EndpointSnapshot, error) {
	return r.operateCanary(ctx, name, opResume)
}

// Promote gives the canary of endpoint name all the traffic; a canary already promoted
// is left as it is.
func (r *Router) Promote(ctx context.Context, name string) (EndpointSnapshot, error) {
	return r.operateCanary(ctx, name, opPromote)
}

// Rollback sends the canary of endpoint name to 0 % and holds it there; a canary already
// rolled back is left as it is. While the shared state in Redis cannot be read or
// written, the canary is rolled back on this replica alone (its snapshot says
// LocalOnly), and the rollback goes to Redis, and so to every replica, once Redis
// answers again: an operator pulling a bad canary during an outage must not be
// refused, and rolling back is the direction every replica may take on its own.
func (r *Router) Rollback(ctx context.Context, name string) (EndpointSnapshot, error) {
	snap, err := r.operateCanary(ctx, name, opRollback)
	if r.shared != nil && errors.Is(err, ErrUnavailable) && !errors.Is(err, errContended) {
		e, st, err := r.endpoint(name)
		if err != nil {
			return EndpointSnapshot{}, err
		}
		r.shared.rollbackHere(r, e, st)
		return r.snapshotOf(e), nil
	}
	return snap, err
}

// SetWeights overrides the live weights of endpoint name with weights
// (backend name → percent, 0..100, adding up to 100; a route left out gets
// 0) until ClearWeights, a canary resume or promote; a reload keeps it unless it changes
// the endpoint's routes, which starts the endpoint over from its config. A
// canary is paused at the weight given to it. The snapshot returned says the weights are an override.
func (r *Router) SetWeights(ctx context.Context, name string, weights map[string]int) (EndpointSnapshot, error) {
	e, _, err := r.endpoint(name)
	if err != nil {
		return EndpointSnapshot{}, err
	}
	w, err := e.overrideWeights(weights)
	if err != nil {
		return EndpointSnapshot{}, err
	}
	return r.operate(ctx, name, func(c *canaryCfg, cur *ctlState, now time.Time) (string, error) {
		cur.override = w
		cur.reason = "weights set by operator"
		if c != nil {
			holdForOverride(cur, w[c.route], now)
		}
		return evOverride, nil
	})
}

// ClearWeights ends the weights override of endpoint name: the weights follow
// the config and the canary again, and a canary the override paused goes back
// to the state it interrupted. An endpoint without an override is left as it
// is.
func (r *Router) ClearWeights(ctx context.Context, name string) (EndpointSnapshot, error) {
	return r.operate(ctx, name, func(c *canaryCfg, cur *ctlState, now time.Time) (string, error) {
		if cur.override == nil {
			return "", nil
		}
		endOverride(c, cur, now)
		return evOverrideEnd, nil
	})
}

// routeNamed returns the index of the route whose backend or variant is name, -1
// when there is none, and -2 when name is one route's backend and another's
// variant.
func (e *Endpoint) routeNamed(name string) int {
	b, v := slices.Index(e.backend, name), slices.Index(e.variant, name)
	switch {
	case b >= 0 && v >= 0 && b != v:
		return -2
	case b >= 0:
		return b
	default:
		return v
	}
}

func (e *Endpoint) overrideWeights(weights map[string]int) ([]int32, error) {
	w := make([]int32, len(e.backend))
	var problems []string
	sum := 0
	given := make([]string, len(e.backend))
	for _, b := range slices.Sorted(maps.Keys(weights)) {
		x := weights[b]
		i := e.routeNamed(b)
		switch {
		case i == -2:
			problems = append(problems, strconv.Quote(b)+" names one route's backend and another route's variant")
		case i < 0:
			problems = append(problems, strconv.Quote(b)+" is not a route of endpoint "+strconv.Quote(e.name))
		case given[i] != "":
			problems = append(problems, strconv.Quote(given[i])+" and "+strconv.Quote(b)+" name the same route")
		case x < 0 || x > 100:
			problems = append(problems, strconv.Quote(b)+": weight must be 0..100")
		default:
			w[i] = int32(x) * Buckets / 100
			sum += x
		}
		if i >= 0 && given[i] == "" {
			given[i] = b
		}
	}
	if len(problems) == 0 && sum != 100 {
		problems = append(problems, "weights add up to "+strconv.Itoa(sum)+", want 100")
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return nil, fmt.Errorf("%w: %s", ErrInvalidWeights, strings.Join(problems, "; "))
	}
	return w, nil
}

type opFunc func(c *canaryCfg, cur *ctlState, now time.Time) (string, error)

// operateCanary applies a canary verb. An endpoint without a canary has nothing shared
// to read or write, so it is refused before Redis is asked: the answer is ErrNoCanary
// whether or not Redis is up.
func (r *Router) operateCanary(ctx context.Context, name string, op opFunc) (EndpointSnapshot, error) {
	e, _, err := r.endpoint(name)
	if err != nil {
		return EndpointSnapshot{}, err
	}
	if e.canary == nil {
		return EndpointSnapshot{}, ErrNoCanary
	}
	return r.operate(ctx, name, op)
}

func (r *Router) operate(ctx context.Context, name string, op opFunc) (EndpointSnapshot, error) {
	e, st, err := r.endpoint(name)
	if err != nil {
		return EndpointSnapshot{}, err
	}
	if r.shared != nil {
		if err := r.shared.operate(ctx, r, e, st, op); err != nil {
			return EndpointSnapshot{}, err
		}
		return r.snapshotOf(e), nil
	}
	st.mu.Lock()
	c := st.ctl
	c.override = slices.Clone(c.override)
	ev, err := op(st.cfg, &c, r.now())
	if err == nil && ev != "" {
		// Without Redis there is no other replica to agree with: at once.
		r.setLocked(name, st, c, ev, nil, time.Time{})
	}
	st.mu.Unlock()
	if err != nil {
		return EndpointSnapshot{}, err
	}
	return r.snapshotOf(e), nil
}

// syncTimeout bounds Sync, which holds up a replica's start.
const syncTimeout = time.Second

// Sync reads the shared state in Redis once and follows it, so that a
// replica routes as the others do from its first request instead of by
// its config until Run first reaches Redis: a replica started after the
// cluster rolled a canary back would otherwise send users to it. It gives
// up after a second. An error wraps ErrUnavailable; the replica then
// routes by its config until Run reads the shared state. Without Redis it
// does nothing. Call it after Apply and before serving requests.
func (r *Router) Sync(ctx context.Context) error {
	if r.shared == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	if _, err := r.shared.poll(ctx, r, r.live()); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

// Run drives the canary controllers and, with Redis, the shared state
// until ctx ends; then it gives up the leader lease so another replica
// takes over at once. It ticks once at the start, then every TickEvery.
func (r *Router) Run(ctx context.Context) error {
	r.tick(ctx)
	c, stop := r.newTicker(r.tickEvery)
	defer stop()
	for {
		select {
		case <-ctx.Done():
			if r.shared != nil {
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
				r.shared.release(rctx, r.live())
				cancel()
			}
			return nil
		case <-c:
			r.tick(ctx)
		}
	}
}

// tick runs one round of the controllers.
func (r *Router) tick(ctx context.Context) {
	r.settle()
	eps := r.live()
	if r.shared != nil {
		r.shared.tick(ctx, r, eps)
		return
	}
	now := r.now()
	for _, e := range eps {
		st := e.st.Load()
		if st.canary < 0 {
			continue
		}
		st.mu.Lock()
		whole, recent, from := st.localWindows(now)
		if next, ev := decide(st.cfg, st.ctl, whole, recent, from, now); ev != "" {
			r.setLocked(e.name, st, next, ev, nil, time.Time{})
		}
		st.mu.Unlock()
	}
}

// live returns the applied endpoints sorted by name.
func (r *Router) live() []*Endpoint {
	r.mu.Lock()
	eps := make([]*Endpoint, 0, len(r.eps))
	for _, e := range r.eps {
		eps = append(eps, e)
	}
	r.mu.Unlock()
	slices.SortFunc(eps, func(a, b *Endpoint) int { return strings.Compare(a.name, b.name) })
	return eps
}
