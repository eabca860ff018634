package providers

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"io"
	"math"
	"net"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/cespare/xxhash/v2"
	"github.com/tollgate/tollgate/internal/jsonscan"
	"github.com/valyala/fasthttp"
)

// Errors Send returns when it makes no attempt at all. Both come wrapped with the
// backend's name.
var (
	// ErrNoHealthyTarget means every target of the backend is out of service and none
	// could take the one trial request an ejected target gets at a time, or the call,
	// a retry on the backend, takes no last-resort trial.
	ErrNoHealthyTarget = errors.New("no upstream target in service")
	// ErrOverloaded means the targets were at max_concurrency and the wait queue was
	// full or the wait ran out, or every connection max_connections allows to each
	// target in service was busy (to the one tried, for connect_timeout).
	ErrOverloaded = errors.New("upstream targets at max_concurrency")
	// ErrClientGone means the call's client hung up while the call waited in the
	// queue: it left the queue and was sent nowhere. It says nothing of the upstream.
	ErrClientGone = errors.New("client went away while the request was queued")
	// ErrClientLeftUpstream means the call's client hung up while its request was
	// with the upstream, before the answer came: the gateway closed the upstream
	// connection, which ends the upstream's work on it. It is ErrClientGone too
	// (errors.Is), and says nothing of the upstream.
	ErrClientLeftUpstream error = clientLeft{}
)

type clientLeft struct{}

func (clientLeft) Error() string { return "client went away while the upstream answered" }

func (clientLeft) Is(target error) bool { return target == ErrClientGone }

// errConnsBusy is ErrOverloaded for a target whose connections, all that
// max_connections allows, stayed busy: the gateway's own cap was reached, not a fault
// of the target, so it does not count against the target's health.
var errConnsBusy = &backendError{"upstream target at max_connections", ErrOverloaded}

// errDeadlineSpent is ErrTimeout for an attempt whose deadline ran out before it was
// sent (while it waited for a slot): the target never saw it, so it does not count
// against the target's health.
var errDeadlineSpent = &backendError{"the request's deadline passed before the attempt was sent", ErrTimeout}

// callDeadlineError is a timeout that came when the call's own deadline (the
// endpoint's timeout) ran out, that deadline being nearer than the backend's timeout
// and the first-byte bound. For an attempt that waited in the queue the gateway spent
// part of that deadline, so such a timeout does not count against the target (judge):
// a healthy target that was merely busy would otherwise be ejected for the gateway's
// own wait.
type callDeadlineError struct{ error }

func (e callDeadlineError) Unwrap() error { return e.error }

// backendError is an error with its own message that matches one of the package's
// errors; the ones that name a backend are made once per backend, so that returning
// them costs nothing.
type backendError struct {
	msg string
	err error
}

func (e *backendError) Error() string { return e.msg }
func (e *backendError) Unwrap() error { return e.err }

// Pools keeps what the gateway learns about each target (health, ejections, requests in
// flight and waiting, the load vLLM reports) across config reloads, keyed by backend
// name and target URL. The gateway makes one for the process and passes it to every
// NewWith; a target's state goes when the last backend using it is closed.
type Pools struct {
	mu      sync.Mutex
	targets map[poolKey]*targetState
	queues  map[string]*queue
	// active is the backend Activate put in service under each name.
	active map[string]*Backend
	// mocks are the mock backends' engines, shared by the backends a reload builds
	// with the same name and options (acquireMock).
	mocks map[mockKey]*sharedMock
	now   func() time.Time
}

type poolKey struct{ backend, url string }

// NewPools returns an empty registry.
func NewPools() *Pools {
	return &Pools{targets: map[poolKey]*targetState{}, queues: map[string]*queue{}, active: map[string]*Backend{},
		mocks: map[mockKey]*sharedMock{}, now: time.Now}
}

// acquire returns the target's state for a backend using it; checks says whether
// that backend runs active health checks. A state made here holds the target's
// connections to conns (max_connections) until a backend is activated under the name,
// as acquireQueue does its slots.
func (p *Pools) acquire(backend, url string, checks bool, conns int64) *targetState {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := poolKey{backend, url}
	st := p.targets[k]
	if st == nil {
		st = &targetState{}
		st.conns.limit.Store(conns)
		p.targets[k] = st
	}
	st.refs++
	if checks {
		st.checkers++
	}
	return st
}

// release gives back what acquire took. When the last backend that checked the
// target goes, say because a reload turned active checks off, what the checks found
// goes with it: only a check brings a target they took down back, and none is left
// to run. It returns the target's shift back into service then, for a target still
// used by another backend.
func (p *Pools) release(backend, url string, checks bool) shift {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := poolKey{backend, url}
	st := p.targets[k]
	if st == nil {
		return shift{}
	}
	var sh shift
	if checks {
		if st.checkers--; st.checkers == 0 {
			sh = st.forgetChecks(p.now())
		}
	}
	if st.refs--; st.refs <= 0 {
		delete(p.targets, k)
		// No backend uses the target any more: it is in no service to come back to.
		return shift{}
	}
	return sh
}

// acquireQueue returns the wait queue of the backend named name. It is kept here, by
// name, as the targets' state is: a slot freed by a stream of a backend a reload
// replaced must go to a request the new backend queued. A queue made here caps the
// targets' slots at limit until a backend is activated under the name.
func (p *Pools) acquireQueue(name string, limit int64) *queue {
	p.mu.Lock()
	defer p.mu.Unlock()
	q := p.queues[name]
	if q == nil {
		q = &queue{}
		q.limit.Store(limit)
		p.queues[name] = q
	}
	q.refs++
	return q
}

// releaseQueue gives back what acquireQueue took.
func (p *Pools) releaseQueue(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if q := p.queues[name]; q != nil {
		if q.refs--; q.refs <= 0 {
			delete(p.queues, name)
		}
	}
}

// NewWith builds a backend from its validated config, keeping its targets' state in p,
// where the backend a reload builds under the same name finds it again. A nil p keeps
// the state to this backend.
func NewWith(name string, c Config, p *Pools) (*Backend, error) {
	if p == nil {
		p = NewPools()
	}
	b, err := build(name, c, p)
	if err != nil {
		return nil, err
	}
	b.initPool(p)
	return b, nil
}

type balance uint8

const (
	roundRobin balance = iota
	leastLoaded
	vllmQueue
)

// poolSettings is the pool part of a backend's config with its defaults.
type poolSettings struct {
	balance         balance
	prefixBytes     int
	loadFactor      float64
	active          bool
	healthPath      string
	interval        time.Duration
	checkTimeout    time.Duration
	healthyAfter    int
	unhealthyAfter  int
	ejectAfter      int32
	ejectFor        time.Duration
	ejectMax        time.Duration
	limit           int64 // max_concurrency, 0 for none
	queueSize       int64
	queueTimeout    time.Duration
	fair            Fair
	weights         map[string]int
	metricsPath     string
	metricsInterval time.Duration
	// metricsStale is the age past which a load read no longer ranks a target.
	metricsStale time.Duration
}

func settingsOf(c *Config) poolSettings {
	s := poolSettings{
		prefixBytes: c.Affinity.Bytes, loadFactor: c.Affinity.LoadFactor,
		active: c.Health.Path != "" || c.Health.Interval > 0, healthPath: c.Health.Path,
		interval: c.Health.Interval, checkTimeout: c.Health.Timeout,
		healthyAfter: c.Health.HealthyThreshold, unhealthyAfter: c.Health.UnhealthyThreshold,
		ejectAfter: int32(min(c.Health.EjectAfter, math.MaxInt32)), ejectFor: c.Health.EjectFor,
		limit: int64(c.MaxConcurrency), queueSize: int64(c.Queue.Size), queueTimeout: c.Queue.Timeout,
		metricsPath: c.MetricsPath, metricsInterval: c.MetricsInterval, weights: c.Queue.Weights,
	}
	s.fair, _ = ParseFair(c.Queue.Fair)
	if s.fair == FairIP && len(s.weights) > 0 {
		// By the address as the gateway writes a tenant's out, in any spelling.
		s.weights = make(map[string]int, len(c.Queue.Weights))
		for name, w := range c.Queue.Weights {
			if a, ok := ipTenant(name); ok {
				s.weights[a] = w
			}
		}
	}
	switch c.Balance {
	case "least_loaded":
		s.balance = leastLoaded
	case "vllm_queue":
		s.balance = vllmQueue
	}
	if s.prefixBytes == 0 {
		s.prefixBytes = 1024
	}
	if s.loadFactor == 0 {
		s.loadFactor = 1.25
	}
	if s.healthPath == "" {
		s.healthPath = "/health"
	}
	if s.interval == 0 {
		s.interval = 5 * time.Second
	}
	if s.checkTimeout == 0 {
		s.checkTimeout = 2 * time.Second
	}
	if s.healthyAfter == 0 {
		s.healthyAfter = 2
	}
	if s.unhealthyAfter == 0 {
		s.unhealthyAfter = 3
	}
	if s.ejectAfter == 0 {
		s.ejectAfter = 5
	}
	if s.ejectFor == 0 {
		s.ejectFor = 30 * time.Second
	}
	s.ejectMax = 10 * s.ejectFor
	if s.queueTimeout == 0 {
		s.queueTimeout = 5 * time.Second
	}
	if s.metricsPath == "" {
		s.metricsPath = "/metrics"
	}
	if s.metricsInterval == 0 {
		s.metricsInterval = time.Second
	}
	// A read may take up to a second whatever the interval (readLoad), and the ticker
	// drops the ticks a slow read overruns: a few of those periods without a read means
	// the reads stopped, not that one was late.
	s.metricsStale = staleReads * max(s.metricsInterval, time.Second)
	return s
}

// pool is the part of a Backend that spreads requests over its targets.
type pool struct {
	set    poolSettings
	pools  *Pools
	states []*targetState
	queue  *queue
	// ring is the consistent-hash ring of prefix affinity, nil without affinity.
	ring []ringPoint
	now  func() time.Time

	errNoTarget, errOverloaded error

	// checkers make the health and metrics requests, one per target, apart from the
	// request traffic so that a target busy with streams is not failed for having no
	// free connection.
	checkers   []*fasthttp.HostClient
	healthURLs []string
	loadURLs   []string
	// probes holds the checkers' connections, for Retire and Close to end the checks
	// and reads under way.
	probes probeConns

	// trials fire when a target's ejection runs out, to hand its trial to the first
	// request in line (trialDue): with no request arriving, nothing else would.
	// armed is the ejection end each was last set for, in Unix nanoseconds.
	trials []*time.Timer
	armed  []atomic.Int64

	// dropIdle is set once the backend is retired (dropIdleConns).
	dropIdle atomic.Bool

	mu     sync.Mutex
	cancel context.CancelFunc
	closed bool
	// retired is set once the background work ended for good (Retire), and the
	// backend's share in the targets' checks was given back.
	retired bool
	wg      sync.WaitGroup
}

func (b *Backend) initPool(ps *Pools) {
	p := &b.pool
	p.set = settingsOf(&b.cfg)
	p.pools, p.now = ps, ps.now
	p.errNoTarget = &backendError{"backend " + b.Name + ": " + ErrNoHealthyTarget.Error(), ErrNoHealthyTarget}
	p.errOverloaded = &backendError{"backend " + b.Name + ": " + ErrOverloaded.Error(), ErrOverloaded}
	p.queue = ps.acquireQueue(b.Name, p.set.limit)
	background := p.set.active || p.set.balance == vllmQueue
	for _, t := range b.targets {
		st := ps.acquire(b.Name, t.URL, p.set.active, int64(b.cfg.MaxConnections))
		p.states = append(p.states, st)
		// The checkers dial past the gate (t.dial, under the context probes cancels):
		// their connections are not the requests'.
		dial := t.client.DialTimeout
		if background {
			root := "http://"
			if t.client.IsTLS {
				root = "https://"
			}
			if u, err := url.Parse(t.URL); err == nil && u.Host != "" {
				// The checks' own URL: without the zone, as in every request's.
				root += withoutZone(u.Host)
			}
			p.healthURLs = append(p.healthURLs, root+p.set.healthPath)
			p.loadURLs = append(p.loadURLs, root+p.set.metricsPath)
			p.checkers = append(p.checkers, &fasthttp.HostClient{
				SecureErrorLogMessage: true,
				Addr:                  t.client.Addr, Name: "tollgate", IsTLS: t.client.IsTLS, TLSConfig: t.client.TLSConfig, DialTimeout: p.probes.dial(t.dial),
				// One for the checks, one for the load reads: each runs on its own.
				MaxConns: 2, MaxIdleConnDuration: t.client.MaxIdleConnDuration,
				// Checks and load reads every few seconds keep a connection busy for good:
				// replaced at the age request connections are, it follows a DNS change too.
				MaxConnDuration:          maxConnAge,
				NoDefaultUserAgentHeader: true, MaxResponseBodySize: 8 << 20,
				// The requests' bound on an answer's header: a check through the load
				// balancer whose cookie the backend's requests take must take it too.
				ReadBufferSize: t.client.ReadBufferSize,
			})
		}
		t.client.DialTimeout = gatedDial(dial, &st.conns, t.client, b.cfg.ConnectTimeout, b.cfg.FirstByteTimeout, b.cfg.StreamIdleTimeout)
		st.conns.join(t.client)
	}
	if b.cfg.Affinity.By == "prefix" && len(b.targets) > 1 {
		p.ring = buildRing(b.targets)
	}
	p.armed = make([]atomic.Int64, len(p.states))
	for i := range p.states {
		t := time.AfterFunc(time.Hour, func() { p.trialDue(i) })
		t.Stop()
		p.trials = append(p.trials, t)
	}
}

// Start begins the backend's background work: active health checks when health has a
// path or interval, and reading each target's load for balance vllm_queue. It returns
// at once; the work runs until ctx ends, Retire or Close. Calling it again does
// nothing. A backend never started still ejects targets on the outcome of its own
// requests.
func (b *Backend) Start(ctx context.Context) {
	p := &b.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.retired || p.cancel != nil || len(p.checkers) == 0 {
		return
	}
	ctx, p.cancel = context.WithCancel(ctx)
	for i := range p.states {
		if p.set.active {
			p.wg.Add(1)
			go p.every(ctx, p.set.interval, func() { b.check(i) })
		}
		if p.set.balance == vllmQueue {
			var buf []byte
			p.wg.Add(1)
			go p.every(ctx, p.set.metricsInterval, func() { buf = b.readLoad(i, buf) })
		}
	}
}

// Activate puts b in service in place of the backend built before it under its name
// (a reload installing it): b's max_concurrency becomes the cap of their targets, for
// the requests of both, and the slots a raised cap opens go at once to the requests
// waiting, oldest first. A request queued under the replaced backend can take a slot
// on the targets that backend shares with b, not on one b added. A backend built
// while another is in service under its name leaves that one's cap in force until it
// is activated, so that a reload that fails to build changes nothing. The backend b
// replaces is retired (Retire): b's checks and load reads alone go on.
func (b *Backend) Activate() {
	p := &b.pool
	if old := p.pools.activate(b); old != nil {
		// Its checks and load reads, with the settings b replaced, would go on
		// deciding the targets' shared state while its last requests run.
		old.Retire()
	}
	p.queue.limit.Store(p.set.limit)
	for i, st := range p.states {
		st.conns.setLimit(int64(b.cfg.MaxConnections))
		p.kick(i)
	}
}

// limit is the cap on each target's requests in flight, 0 for none.
func (p *pool) limit() int64 { return p.queue.limit.Load() }

// stop ends the background work and gives the targets' state back to the registry.
func (b *Backend) stop() {
	p := &b.pool
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	checks := p.set.active && !p.retired
	cancel := p.cancel
	p.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	// A check or read under way ends now, connecting or not, its outcome dropped
	// (closed is set), rather than at its timeout or connect_timeout: the wait below
	// holds a shutdown.
	p.probes.stop()
	p.wg.Wait()
	for _, c := range p.checkers {
		c.CloseIdleConnections()
	}
	for i, t := range b.targets {
		p.states[i].conns.leave(t.client)
		b.noteShift(i, p.pools.release(b.Name, t.URL, checks), HealthChange{Cause: CauseChecksOff})
	}
	p.pools.releaseQueue(b.Name)
	p.pools.deactivate(b)
}

// lease is one attempt's claim on a target: a slot counted in its in-flight requests,
// and, for a trial of an ejected target, its one probe. queued is set when the attempt
// waited in the queue for its slot.
type lease struct {
	i      int
	probe  bool
	queued bool
	// waited is how long the call waited in the queue.
	waited time.Duration
}

// acquire picks a target for the call and takes a slot on it, or failing that, on any
// other target in service with room; when every one is full it queues the call.
func (b *Backend) acquire(call *Call) (lease, error) {
	p := &b.pool
	if p.queue.waiting.Load() != 0 {
		// A trial that is due goes to the oldest request waiting that can take it,
		// not to one arriving after it.
		p.offerTrials()
	}
	avoid := b.avoid(call)
	if call.pin == b {
		// Pinned: the call takes a slot on its target, or waits for one there, a
		// retry too; no other target holds what it needs. One out of service (ejected,
		// failing its checks) has the backend answer as one with none in service,
		// unless its trial is due: the call is that trial.
		if call.pinAt >= len(p.states) {
			return lease{}, p.errNoTarget
		}
		call.pinned = targetSet{but: int32(call.pinAt) + 1}
		avoid = &call.pinned
		if !p.states[call.pinAt].available() {
			if l, ok := p.trial(avoid); ok {
				return l, nil
			}
			return lease{}, p.errNoTarget
		}
	}
	if l, ok := p.trial(avoid); ok {
		return l, nil
	}
	i := b.choose(call)
	if i < 0 {
		return p.lastLease(call.failedOn == b)
	}
	if p.queue.waiting.Load() == 0 {
		// With requests waiting, a free slot is theirs: the call queues behind them.
		if j := p.takeAny(i, avoid); j >= 0 {
			return lease{i: j}, nil
		}
	}
	start := time.Now()
	l, err := p.wait(i, avoid, call.failedOn == b, start, p.waitFor(call, start), call.Client, call.Tenants)
	if l.queued && !call.Deadline.IsZero() && 2*time.Since(start) < call.Deadline.Sub(start) {
		// The queue took less than half the time the call had: a timeout at its
		// deadline is the target's (a hung upstream holding every slot), not the
		// gateway's.
		l.queued = false
	}
	return l, err
}

// avoid is the set of targets that failed the call, when it is a retry and a target in
// service has not failed it: the retry takes a slot on, or waits for, one of those
// (README, Replica pools). nil otherwise.
func (b *Backend) avoid(call *Call) *targetSet {
	if call.failedOn != b || call.failed.empty() || !inServiceOutside(b.pool.states, &call.failed) {
		return nil
	}
	return &call.failed
}

// inServiceOutside reports whether a target in service is not in set.
func inServiceOutside(states []*targetState, set *targetSet) bool {
	for j, st := range states {
		if !set.has(j) && st.available() {
			return true
		}
	}
	return false
}

// takeAny takes a slot on target i, else on another target in service with one free,
// leaving out those in avoid, and those a reload removed while a target it kept is in
// service (passes); -1 when none has. Under vllm_queue the others go by their rank
// (leastQueued): the overflow of a full target goes to the next least queued, and to a
// target whose load was not read only once every target read is full. Otherwise they
// go in config order from i.
func (p *pool) takeAny(i int, avoid *targetSet) int {
	limit := p.limit()
	n := len(p.states)
	var kept int8
	if p.set.balance == vllmQueue && limit > 0 && n > 1 {
		if st := p.states[i]; !avoid.has(i) && st.available() && !p.passes(i, avoid, &kept) && st.slots.take(limit) {
			return i
		}
		// A take lost to a concurrent call leaves that target full, and the next rank
		// skips it; the bound keeps slots freed and taken meanwhile from looping here.
		for range n {
			j := p.rankQueued(i, avoid, limit, &kept)
			if j < 0 {
				return -1
			}
			if p.states[j].slots.take(limit) {
				return j
			}
		}
	}
	for k := range n {
		j := i + k
		if j >= n {
			j -= n
		}
		if avoid.has(j) {
			continue
		}
		if st := p.states[j]; st.available() && !p.passes(j, avoid, &kept) && st.slots.take(limit) {
			return j
		}
	}
	return -1
}

// passes reports whether a call of p that leaves out the targets in avoid passes over
// target j: a reload removed it (p is the backend it replaced) while a target it kept,
// one not in avoid, is in service. The replaced config's requests take a removed
// target only then, as its waiters do (queue.serveLocked, waiter.keepsAny): a reload
// that drains a target drains it. kept holds what was found of the kept targets for
// the rest of one pick: 0 not looked yet, 1 one in service, -1 none.
func (p *pool) passes(j int, avoid *targetSet, kept *int8) bool {
	if !p.states[j].removed.Load() {
		return false
	}
	if *kept == 0 {
		*kept = -1
		for k, st := range p.states {
			if !avoid.has(k) && st.kept() {
				*kept = 1
				break
			}
		}
	}
	return *kept > 0
}

// waitFor is how long a call may wait in the queue.
func (p *pool) waitFor(call *Call, now time.Time) time.Duration {
	d := p.set.queueTimeout
	if !call.Deadline.IsZero() {
		d = min(d, call.Deadline.Sub(now))
	}
	return d
}

// wait queues the call for d at most, for a slot on any target of the backend in
// service, i first, apart from those in avoid (a retry's failed targets). It fails
// with errOverloaded when the queue is full, d runs out or a fair queue gives its place
// to another tenant's (pushOut), with ErrClientGone when client, watched while the call
// waits, hangs up. A retry that cannot wait, or waited
// in vain, takes a free slot on a target that failed it rather than failing. A waiter
// whose backend has no target left in service is let go at once and goes the way of a
// call arriving then (lastLease; retry is set for a retry on the backend).
func (p *pool) wait(i int, avoid *targetSet, retry bool, now time.Time, d time.Duration, client ClientWatch, who Tenants) (got lease, err error) {
	end := now.Add(d)
	counts := &p.queue.counters
	// waited is set once the call went into the queue: its lease, or the error it ends
	// with, says how long it waited (Result.Queued, the access log's queue_ms).
	waited := false
	defer func() {
		if waited {
			got.waited = time.Since(now)
		}
	}()
	for front := false; ; front = true {
		l, out, enqueued := p.queue.wait(p, i, avoid, d, front, client, who)
		waited = waited || enqueued
		switch out {
		case waitLeft:
			counts.count(QueueClientGone, 0)
			return lease{}, ErrClientGone
		case waitRefused, waitPushedOut, waitTimedOut:
			if avoid != nil && !avoid.pinned() {
				if j := p.takeAny(i, nil); j >= 0 {
					// A retry takes a target that failed it rather than a 503:
					// served, after its wait if it waited.
					if out != waitRefused || front {
						counts.count(QueueServed, time.Since(now))
					}
					return lease{i: j, queued: out == waitTimedOut}, nil
				}
			}
			switch {
			case out == waitPushedOut:
				counts.count(QueuePushedOut, 0)
			case out == waitTimedOut, d <= 0:
				counts.count(QueueTimeout, 0)
			default:
				counts.count(QueueFull, 0)
			}
			return lease{}, p.errOverloaded
		case waitStranded:
			counts.count(QueueStranded, 0)
			if avoid.pinned() {
				// The call's one target left service.
				return lease{}, p.errNoTarget
			}
			if l, ok := p.trial(nil); ok {
				return l, nil
			}
			return p.lastLease(retry)
		}
		if !l.queued || l.probe || p.states[l.i].available() {
			if l.queued || front {
				counts.count(QueueServed, time.Since(now))
			}
			return l, nil
		}
		// The target was ejected or found down between handing the slot over and
		// now: the slot goes back and the call waits on, first in line, for one on a
		// target in service.
		p.free(l.i)
		d = time.Until(end)
	}
}

// free gives back a slot on target i, handing it to the first waiter in line (the
// oldest, or with queue.fair the one whose turn it is) that can use it.
// A slot freed on a target out of service (the attempt that ejected it) may leave
// waiters whose backend has none in service: they are let go.
func (p *pool) free(i int) {
	st, q := p.states[i], p.queue
	if st.ejected.Load() {
		// Every ejection by a request frees that request's slot after it.
		p.armTrial(i)
	}
	if q.waiting.Load() != 0 {
		// Freed under the queue's lock, so that a request arriving meanwhile, whose
		// last try runs under it too, cannot take the slot ahead of those waiting.
		q.mu.Lock()
		st.slots.n.Add(-1)
		if st.available() {
			q.serveLocked(st, p.limit())
		} else {
			p.offerTrialLocked(i)
			p.leftServiceLocked()
		}
		q.mu.Unlock()
		return
	}
	st.slots.n.Add(-1)
	// A waiter counted after the check above has made its last try before this
	// decrement, or makes it after: in the first case it is served (or let go) here.
	if q.waiting.Load() != 0 {
		if st.available() {
			q.serve(st, p.limit())
		} else {
			p.offerTrial(i)
			p.leftService()
		}
	}
}

// leftService settles the waiters after a target left service: those none of whose
// targets is in service are let go (strand), and a retry that waited for a target
// that had not failed it takes a free slot on one that did once no other is in
// service (serve).
func (p *pool) leftService() {
	p.queue.mu.Lock()
	p.leftServiceLocked()
	p.queue.mu.Unlock()
}

func (p *pool) leftServiceLocked() {
	q := p.queue
	q.strandLocked()
	if len(q.list) == 0 {
		return
	}
	// The waiters' own targets, not only p's: across a reload the queue holds the
	// waiters of the backend that replaced p, whose targets p may not have.
	var targets []*targetState
	for _, w := range q.list {
		for _, st := range w.states {
			if !slices.Contains(targets, st) {
				targets = append(targets, st)
			}
		}
	}
	for _, st := range targets {
		q.serveLocked(st, p.limit())
	}
}

// kick hands the free slots of target i, back in service, to the waiters: no slot
// freed on it announces that it can take them.
func (p *pool) kick(i int) {
	if p.queue.waiting.Load() != 0 {
		p.queue.serve(p.states[i], p.limit())
	}
}

// trial claims the probe of a target whose ejection has run out, not one in avoid (a
// retry's failed targets, while another is in service) nor one a reload removed while
// a target it kept is in service (passes): the one request that decides whether it
// comes back.
func (p *pool) trial(avoid *targetSet) (lease, bool) {
	var now int64
	var kept int8
	for i, st := range p.states {
		if avoid.has(i) || !st.ejected.Load() || st.probing.Load() || st.down.Load() || p.passes(i, avoid, &kept) {
			continue
		}
		if now == 0 {
			now = p.now().UnixNano()
		}
		if now < st.until.Load() || !st.probing.CompareAndSwap(false, true) {
			continue
		}
		if st.slots.take(p.limit()) {
			return lease{i: i, probe: true}, true
		}
		st.probing.Store(false)
	}
	return lease{}, false
}

// armTrial sets target i's trial timer for the end of its ejection, unless it is set
// for it already.
func (p *pool) armTrial(i int) {
	until := p.states[i].until.Load()
	if p.armed[i].Swap(until) != until {
		p.trials[i].Reset(time.Duration(until - p.now().UnixNano()))
	}
}

// trialDue runs when target i's ejection has run out: the first request in line that
// can take the target gets its trial. It runs for a closed backend too: the queue is
// shared by name with the backend that replaced it.
func (p *pool) trialDue(i int) {
	st := p.states[i]
	if !st.ejected.Load() {
		return
	}
	if d := st.until.Load() - p.now().UnixNano(); d > 0 {
		// The wall clock was set back while the timer ran.
		p.trials[i].Reset(time.Duration(d))
		return
	}
	p.offerTrial(i)
}

// offerTrials offers the trial of every target whose ejection has run out to the
// requests waiting.
func (p *pool) offerTrials() {
	for i, st := range p.states {
		if st.ejected.Load() && !st.probing.Load() {
			p.offerTrial(i)
		}
	}
}

// offerTrial hands the trial of target i, when it is due (its ejection run out, no
// trial under way, not found down), to the oldest waiter that can take the target.
func (p *pool) offerTrial(i int) {
	q := p.queue
	if q.waiting.Load() == 0 {
		return
	}
	q.mu.Lock()
	p.offerTrialLocked(i)
	q.mu.Unlock()
}

func (p *pool) offerTrialLocked(i int) {
	st, q := p.states[i], p.queue
	if !st.ejected.Load() || st.probing.Load() || st.down.Load() || p.now().UnixNano() < st.until.Load() {
		return
	}
	removed := st.removed.Load()
	for k, w := range q.list {
		j := slices.Index(w.states, st)
		if j < 0 || !w.takes(j) || removed && w.keepsAny() {
			continue
		}
		if !st.probing.CompareAndSwap(false, true) {
			return
		}
		if !st.slots.take(p.limit()) {
			st.probing.Store(false)
			return
		}
		w.probe = true
		q.hand(k, j)
		return
	}
}

// RetryLeases reports whether a retry on b made wait from now could lease a target:
// one in service now, or an ejected one not found down whose trial is under way or
// due by then. A retry takes no last-resort trial (lastLease): without such a target
// it makes no attempt, and the request is better sent on before its pause (an
// upstream's Retry-After) than after it.
func (b *Backend) RetryLeases(wait time.Duration) bool {
	p := &b.pool
	if inServiceOutside(p.states, nil) {
		return true
	}
	at := p.now().Add(wait).UnixNano()
	for _, st := range p.states {
		// A trial under way may bring its target back before the retry goes.
		if st.ejected.Load() && !st.down.Load() && (st.probing.Load() || st.until.Load() <= at) {
			return true
		}
	}
	return false
}

// lastLease is what a call gets when no target of the backend is in service: a
// last-resort trial, or errNoTarget. A retry on the backend (retry set) gets
// errNoTarget, which sends it on to the endpoint's fallbacks: a request takes at most
// one last-resort trial of a backend, on its first attempt there. Retried there, it
// would spend each retry on a trial of a target that gets no traffic (often the one
// its own failure just ejected), each failure doubling the ejection, and its client
// would wait out every one (connect_timeout each, on a host that drops packets)
// before the fallback answered.
func (p *pool) lastLease(retry bool) (lease, error) {
	if !retry {
		if l, ok := p.lastResort(); ok {
			return l, nil
		}
	}
	return lease{}, p.errNoTarget
}

// lastResort claims the probe of the target out of service the longest that can take
// one (no trial under way, a slot free), so that a pool whose every target is out
// still tries one rather than failing outright.
func (p *pool) lastResort() (lease, bool) {
	var tried [maxLastResort]bool
	limit := p.limit()
	for range min(len(p.states), maxLastResort) {
		best := -1
		var since int64
		for i, st := range p.states {
			if i >= maxLastResort || tried[i] || st.probing.Load() || limit > 0 && st.slots.load() >= limit {
				continue
			}
			if at := st.leftAt.Load(); best < 0 || at < since {
				best, since = i, at
			}
		}
		if best < 0 {
			return lease{}, false
		}
		tried[best] = true
		st := p.states[best]
		if !st.probing.CompareAndSwap(false, true) {
			continue
		}
		if st.slots.take(limit) {
			return lease{i: best, probe: true}, true
		}
		st.probing.Store(false)
	}
	return lease{}, false
}

// maxLastResort bounds the targets lastResort goes through, in a pool of many.
const maxLastResort = 64

// choose applies affinity and the balance policy to the targets in service; -1 when
// none is. A retry of a call avoids the targets that failed it while another is in
// service: affinity (and a least-loaded pick, the failed target's slot just freed)
// would send it back to the target that just refused it.
func (b *Backend) choose(call *Call) int {
	p := &b.pool
	if call.pin == b {
		return call.pinAt
	}
	if len(p.states) == 1 {
		if p.states[0].available() {
			return 0
		}
		return -1
	}
	return b.avoidFailed(call, b.pick(call))
}

func (b *Backend) pick(call *Call) int {
	p := &b.pool
	if p.ring != nil {
		if i := b.affine(call); i >= 0 {
			return i
		}
	}
	switch p.set.balance {
	case leastLoaded:
		return b.leastLoaded()
	case vllmQueue:
		return b.leastQueued()
	}
	return b.roundRobin()
}

// avoidFailed returns i, or when the call already failed on target i, the next target
// in service it has not failed on; i when there is none.
func (b *Backend) avoidFailed(call *Call, i int) int {
	if i < 0 || call.failedOn != b || !call.failed.has(i) {
		return i
	}
	states := b.pool.states
	n := len(states)
	for k := 1; k < n; k++ {
		j := i + k
		if j >= n {
			j -= n
		}
		if !call.failed.has(j) && states[j].available() {
			return j
		}
	}
	return i
}

// roundRobin rotates over the targets in service with a max_concurrency slot free,
// or when every one is full, over those in service: a full target's turns (a slow
// replica's) are spread over the others as an ejected target's are, rather than all
// overflowing to the target after it in config order (takeAny).
func (b *Backend) roundRobin() int {
	p := &b.pool
	k := b.next.Add(1)
	if limit := p.limit(); limit > 0 {
		if i := p.rotate(k, limit); i >= 0 {
			return i
		}
	}
	return p.rotate(k, 0)
}

// rotate returns the k-th target in service, counting round from the first (k taken
// modulo their number), with limit above 0 only those with fewer requests in flight;
// -1 when none is. Rotating over the targets in service, not over all of them from k
// on, keeps an ejected target's turns from all going to the one after it, which would
// carry twice the others' load.
func (p *pool) rotate(k uint64, limit int64) int {
	states := p.states
	up := 0
	for _, st := range states {
		if st.available() && (limit <= 0 || st.slots.load() < limit) {
			up++
		}
	}
	if up == 0 {
		return -1
	}
	if up == len(states) {
		return int(k % uint64(up))
	}
	m := int(k % uint64(up))
	for i, st := range states {
		if st.available() && (limit <= 0 || st.slots.load() < limit) {
			if m == 0 {
				return i
			}
			m--
		}
	}
	// Slots taken or targets ejected since the count.
	return -1
}

// leastLoaded picks the target with the fewest requests in flight. The scan
// starts at a rotating offset so that ties, an idle pool above all, spread evenly.
func (b *Backend) leastLoaded() int {
	states := b.pool.states
	n := len(states)
	i := b.pool.rotate(b.next.Add(1), 0)
	if i < 0 {
		return -1
	}
	best, least := -1, int64(0)
	for range n {
		if st := states[i]; st.available() {
			if l := st.slots.load(); best < 0 || l < least {
				best, least = i, l
			}
		}
		if i++; i == n {
			i = 0
		}
	}
	return best
}

// leastQueued picks the target whose vLLM reports the shortest queue, counting what was
// sent since it was read; the lower KV cache usage breaks ties.
//
// A target without a fresh read (its /metrics failed, is not vLLM's, or was last read
// more than staleReads periods ago) has only this gateway's in-flight count, which
// leaves out other clients and the weight of vLLM's waiting queue: scored by it alone
// it would look the idlest and draw the traffic. It counts instead as the worst fresh
// score plus its own in-flight count, ties going to the targets read, which ranks it
// after every target with a fresh read; with none of those in service, the targets
// without go by their in-flight count, as in least_loaded.
func (b *Backend) leastQueued() int {
	p := &b.pool
	i := p.rotate(b.next.Add(1), 0)
	if i < 0 {
		return -1
	}
	return p.rankQueued(i, nil, 0, nil)
}

// rankQueued is leastQueued's pick among the targets in service, scanning from target i
// (ties go to the first scanned), leaving out those in skip, with limit above 0 those
// with no slot free under it, and with kept set those the call passes over (passes,
// which kept is for); -1 when none is left.
func (p *pool) rankQueued(i int, skip *targetSet, limit int64, kept *int8) int {
	states := p.states
	n := len(states)
	since := p.now().UnixNano() - int64(p.set.metricsStale)
	best, least, cache := -1, int64(0), 0.0
	blind, fewest := -1, int64(0)
	for range n {
		if st := states[i]; !skip.has(i) && st.available() && (kept == nil || !p.passes(i, skip, kept)) {
			if inflight := st.slots.load(); limit <= 0 || inflight < limit {
				if s, c, ok := st.load.score(inflight, since); ok {
					if best < 0 || s < least || (s == least && c < cache) {
						best, least, cache = i, s, c
					}
				} else if blind < 0 || inflight < fewest {
					blind, fewest = i, inflight
				}
			}
		}
		if i++; i == n {
			i = 0
		}
	}
	if best < 0 {
		return blind
	}
	return best
}

// ringPoint is one of a target's points on the consistent-hash ring.
type ringPoint struct {
	hash uint64
	i    int
}

// ringReplicas is the number of points per target. Shares of the ring then differ from
// an even share by about one over its square root: a tenth.
const ringReplicas = 128

func buildRing(targets []*Target) []ringPoint {
	ring := make([]ringPoint, 0, len(targets)*ringReplicas)
	var buf []byte
	for i, t := range targets {
		for r := range ringReplicas {
			buf = strconv.AppendInt(append(append(buf[:0], t.URL...), '#'), int64(r), 10)
			ring = append(ring, ringPoint{xxhash.Sum64(buf), i})
		}
	}
	slices.SortFunc(ring, func(a, b ringPoint) int {
		if c := cmp.Compare(a.hash, b.hash); c != 0 {
			return c
		}
		return cmp.Compare(a.i, b.i)
	})
	return ring
}

// affine walks the ring from the hash of the call's prompt prefix to the first target
// in service whose load is under load_factor times the average, so that requests that
// share a prefix meet the same prefix cache while no target takes more than its bound
// (consistent hashing with bounded loads, Mirrokni, Thorup and Zadimoghaddam 2018).
// A target at max_concurrency is passed over like one at its bound while another has
// a slot free: the overflow of a prefix goes on along the ring, spread over the
// targets as the ring spreads its points, not all to the target after it in config
// order. It returns -1 when the call has no prompt or no target is in service.
//
// The load is this gateway's requests in flight; under vllm_queue it is a target's
// score from a fresh read, which counts other clients' requests and vLLM's waiting
// queue: counting only its own, the gateway would keep sending a prefix to a replica
// that other traffic has swamped. A target without a fresh read counts its in-flight
// requests.
func (b *Backend) affine(call *Call) int {
	p := &b.pool
	h, ok := prefixHash(call, p.set.prefixBytes)
	if !ok {
		return -1
	}
	var since int64
	queued := p.set.balance == vllmQueue
	if queued {
		since = p.now().UnixNano() - int64(p.set.metricsStale)
	}
	var total int64
	up, open := 0, 0
	capacity := p.limit()
	for _, st := range p.states {
		if st.available() {
			l := st.slots.load()
			total += st.boundLoad(queued, l, since)
			up++
			if capacity <= 0 || l < capacity {
				open++
			}
		}
	}
	if up == 0 {
		return -1
	}
	if open == 0 {
		// Every target is full: the call waits for a slot, first on its own.
		capacity = 0
	}
	// The bound counts the new request: ceil(c * (m+1) / n) in the paper's terms. The
	// least loaded target is under it, and has a slot free when any has, so the walk
	// finds one.
	limit := math.Ceil(p.set.loadFactor * float64(total+1) / float64(up))
	ring := p.ring
	lo, hi := 0, len(ring)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if ring[m].hash < h {
			lo = m + 1
		} else {
			hi = m
		}
	}
	for k := range len(ring) {
		j := lo + k
		if j >= len(ring) {
			j -= len(ring)
		}
		if st := p.states[ring[j].i]; st.available() {
			l := st.slots.load()
			if float64(st.boundLoad(queued, l, since)) < limit && (capacity <= 0 || l < capacity) {
				return ring[j].i
			}
		}
	}
	return -1
}

// boundLoad is the target's load as affine bounds it, given its requests in flight:
// with queued (vllm_queue), its score if read at or after since.
func (st *targetState) boundLoad(queued bool, inflight, since int64) int64 {
	if queued {
		if s, _, fresh := st.load.score(inflight, since); fresh {
			return s
		}
	}
	return inflight
}

// prefixHash hashes the start, up to n bytes, of the call's prompt as the upstream's
// chat template reads it: each message's role and content (prompt for completions,
// input for embeddings, instructions then input for the Responses API, a rerank's
// query, which begins each of its pairs, and a score call's first left item, which
// begins the first of its pairs and, one alone, all of them), strings
// decoded. The same prompt written as other JSON (the
// spacing, \u escapes and member order RFC 8259 leaves free, which Python's json.dumps
// and compact encoders write differently) is the same tokens to vLLM's prefix cache,
// and hashes the same. ok is false when there is no prompt.
//
// Prompts run to hundreds of kilobytes, so the walk stops once it has hashed n bytes:
// the members before the prompt are skipped, and the prompt is read no further than
// its first n bytes of text need (a message's content placed before its role is
// skipped to find the role). The gateway has checked that the body is JSON.
//
// A call that names its cache group in prompt_cache_key (OpenAI's parameter for
// requests that share a cached prefix) hashes that name, decoded, instead: the client
// knows which requests share a prefix, also when it is shorter than n or the prompts
// differ within their first n bytes.
func prefixHash(call *Call, n int) (h uint64, ok bool) {
	if call.Kind.Form() {
		// An audio call has no prompt to share: its file is its own.
		return 0, false
	}
	if k := call.CacheKey; k[1] > k[0] && n > 0 {
		w := prefixWriter{left: len(sepCacheKey) + max(n, k[1]-k[0])}
		w.d.Reset()
		w.mark(sepCacheKey)
		w.str(call.Body, k[0]-1)
		return w.d.Sum64(), true
	}
	key := "messages"
	switch call.Kind {
	case Completions:
		key = "prompt"
	case Embeddings, Responses:
		key = "input"
	case Rerank:
		key = "query"
	}
	b := call.Body
	var i int
	if call.Kind == Score {
		// The first left item alone, hashed as a rerank's query is.
		if b = scoreLeftItem(b); b == nil {
			return 0, false
		}
	} else {
		i = memberStart(b, key)
	}
	instr := -1
	switch call.Kind {
	case Responses:
		// The Responses API's system message, which comes before the input.
		instr = memberStart(b, "instructions")
	case Messages:
		// The Messages API's, likewise.
		instr = memberStart(b, "system")
	}
	if i < 0 && instr < 0 || n <= 0 {
		return 0, false
	}
	w := prefixWriter{left: n}
	w.d.Reset()
	if instr >= 0 {
		var more bool
		if call.Kind == Messages && b[instr] == '[' {
			// The Messages API's system prompt as text blocks (what the Anthropic
			// SDKs and Claude Code send): their text, as a message's parts.
			_, more = w.list(b, instr, listSystem)
		} else {
			_, more = w.value(b, instr)
		}
		if !more || !w.mark(sepMessage) || i < 0 {
			return w.d.Sum64(), true
		}
	}
	switch {
	case (call.Kind == Chat || call.Kind == Responses || call.Kind == Messages) && b[i] == '[':
		// The Responses API's input items are messages as chat's are.
		w.list(b, i, listMessages)
	case (call.Kind == Rerank || call.Kind == Score) && b[i] == '{':
		// vLLM's multimodal item (a rerank's query, a score's left item),
		// {"content": [parts]}: its parts as a message's.
		if c := memberAt(b, i, "content"); c >= 0 && b[c] == '[' {
			w.list(b, c, listParts)
		} else {
			w.value(b, i)
		}
	default:
		w.value(b, i)
	}
	return w.d.Sum64(), true
}

// The separators prefixWriter writes between the parts of a prompt. They keep "ab",
// "c" apart from "a", "bc"; text parts are joined by a newline, as vLLM joins them
// for a template that takes a string, so that such a content hashes as the string.
const (
	sepField   = "\x00"
	sepItem    = "\x01"
	sepMessage = "\x02"
	sepPart    = "\n"
	// sepCacheKey begins the hash of a prompt_cache_key, apart from every prompt's.
	sepCacheKey = "\x03"
)

// prefixWriter hashes the canonical text of a prompt until left bytes are written.
// Its methods take the offset of a JSON value in b and return the offset past it and
// whether to go on: false once left is spent, or at malformed JSON.
type prefixWriter struct {
	d    xxhash.Digest
	left int
}

func (w *prefixWriter) write(p []byte) bool {
	if len(p) >= w.left {
		_, _ = w.d.Write(p[:w.left])
		w.left = 0
		return false
	}
	_, _ = w.d.Write(p)
	w.left -= len(p)
	return true
}

// mark writes one of the short separators (sepField and the like): converted on the
// stack, not allocated.
func (w *prefixWriter) mark(s string) bool { return w.write([]byte(s)) }

// str writes the decoded contents of the string at b[i]. It looks for the closing
// quote only within the bytes the budget can still take.
func (w *prefixWriter) str(b []byte, i int) (int, bool) {
	j := i + 1
	for {
		win := b[j:min(len(b), j+w.left)]
		q := bytes.IndexByte(win, '"')
		run := win
		if q >= 0 {
			run = win[:q]
		}
		e := bytes.IndexByte(run, '\\')
		if e < 0 {
			if q < 0 {
				w.write(win) // the budget ends in the string (or the body does)
				return len(b), false
			}
			return j + q + 1, w.write(run)
		}
		if !w.write(run[:e]) {
			return len(b), false
		}
		r, m := jsonscan.DecodeEscape(b, j+e)
		if m == 0 {
			return len(b), false
		}
		var buf [utf8.UTFMax]byte
		if !w.write(buf[:utf8.EncodeRune(buf[:], r)]) {
			return len(b), false
		}
		j += e + m
	}
}

// value writes the value at b[i]: a string decoded, an array's elements, a number or
// literal as written. An object (no valid prompt has one there) counts as "{" alone.
func (w *prefixWriter) value(b []byte, i int) (int, bool) {
	switch b[i] {
	case '"':
		return w.str(b, i)
	case '[':
		return w.list(b, i, listValues)
	}
	e, err := jsonscan.Skip(b, i)
	if err != nil {
		return len(b), false
	}
	if b[i] == '{' {
		return e, w.mark("{")
	}
	return e, w.write(b[i:e])
}

// What the elements of an array are, for list. (A method value passed instead would
// move the writer to the heap: escape analysis cannot follow an indirect call.)
const (
	listValues = iota
	listMessages
	listParts
	// listSystem: a Messages API system prompt's text blocks (systemPart).
	listSystem
)

// list writes the elements of the array at b[i], as what kind says they are, with a
// separator between two.
func (w *prefixWriter) list(b []byte, i, kind int) (int, bool) {
	j := jsonscan.SkipSpace(b, i+1)
	if j < len(b) && b[j] == ']' {
		return j + 1, true
	}
	for j < len(b) {
		var e int
		var more bool
		switch kind {
		case listMessages:
			e, more = w.message(b, j)
		case listParts:
			e, more = w.part(b, j)
		case listSystem:
			e, more = w.systemPart(b, j)
		default:
			e, more = w.value(b, j)
		}
		if !more {
			return len(b), false
		}
		if j = jsonscan.SkipSpace(b, e); j >= len(b) || b[j] != ',' {
			return j + 1, j < len(b)
		}
		sep := sepItem
		switch kind {
		case listMessages:
			sep = sepMessage
		case listParts, listSystem:
			sep = sepPart
		}
		if !w.mark(sep) {
			return len(b), false
		}
		j = jsonscan.SkipSpace(b, j+1)
	}
	return len(b), false
}

// message writes a chat message's role, then its content, whatever their order in
// the object; its other members (name, tool calls, cache hints) are left out.
func (w *prefixWriter) message(b []byte, i int) (int, bool) {
	if b[i] != '{' {
		return w.value(b, i)
	}
	role, content := -1, -1
	more := true
	j := jsonscan.SkipSpace(b, i+1)
	for j < len(b) && b[j] == '"' {
		k, v := objectMember(b, j)
		if v < 0 {
			return len(b), false
		}
		switch string(k) {
		case "role":
			role = v
		case "content":
			content = v
		}
		e := -1
		if content == v && role >= 0 {
			if e, more = w.roleContent(b, role, content); !more {
				return len(b), false
			}
		} else if role == v && content >= 0 {
			// The content came first, and was skipped to find the role.
			if _, more = w.roleContent(b, role, content); !more {
				return len(b), false
			}
		}
		if e < 0 {
			var err error
			if e, err = jsonscan.Skip(b, v); err != nil {
				return len(b), false
			}
		}
		j = e
		if j = jsonscan.SkipSpace(b, j); j < len(b) && b[j] == ',' {
			j = jsonscan.SkipSpace(b, j+1)
		}
	}
	if j >= len(b) || b[j] != '}' {
		return len(b), false
	}
	if role < 0 || content < 0 {
		if _, more = w.roleContent(b, role, content); !more {
			return len(b), false
		}
	}
	return j + 1, true
}

// roleContent writes the role at b[role] and the content at b[content], either being
// -1 when the message has none; it returns the content's end.
func (w *prefixWriter) roleContent(b []byte, role, content int) (int, bool) {
	if role >= 0 {
		if _, more := w.value(b, role); !more {
			return len(b), false
		}
	}
	if !w.mark(sepField) {
		return len(b), false
	}
	if content < 0 {
		return 0, true
	}
	if b[content] == '[' {
		return w.list(b, content, listParts)
	}
	return w.value(b, content)
}

// part writes a content part: the text of a text part (one without a type too), or
// its type and the url (or string) of the member its type names, such as image_url.
// Its other members, such as an image's detail or a cache hint, are left out.
func (w *prefixWriter) part(b []byte, i int) (int, bool) {
	if b[i] != '{' {
		return w.value(b, i)
	}
	kind := []byte("text")
	var kindBuf [32]byte
	if t := memberAt(b, i, "type"); t >= 0 && b[t] == '"' {
		if e, err := jsonscan.Skip(b, t); err == nil {
			kind = b[t+1 : e-1]
			if bytes.IndexByte(kind, '\\') >= 0 {
				// The type is a string like any other: "image\u005furl" is image_url,
				// and hashes as the same prompt.
				if u, ok := jsonscan.AppendUnquote(kindBuf[:0], b[t:e]); ok {
					kind = u
				}
			}
		}
	}
	if string(kind) == "input_text" || string(kind) == "output_text" {
		// The Responses API's text parts: the same text as chat's.
		kind = kind[len(kind)-len("text"):]
	}
	v := memberAt(b, i, string(kind))
	if string(kind) != "text" {
		if !w.mark(sepField) || !w.write(kind) || !w.mark(sepField) {
			return len(b), false
		}
		if v >= 0 && b[v] == '{' {
			v = memberAt(b, v, "url")
		}
	}
	if v >= 0 && b[v] == '"' {
		if _, more := w.str(b, v); !more {
			return len(b), false
		}
	}
	e, err := jsonscan.Skip(b, i)
	if err != nil {
		return len(b), false
	}
	return e, true
}

// strBillingHeader begins the text of the system block Claude Code puts first, a
// header that changes with each request (cch=...).
var strBillingHeader = []byte(`"x-anthropic-billing-header`)

// systemPart writes a Messages API system block as a content part, but for Claude
// Code's billing header block, left out: its text changes with each request, and
// would hash every request of a conversation apart (vLLM leaves it out of its prefix
// cache too).
func (w *prefixWriter) systemPart(b []byte, i int) (int, bool) {
	if b[i] == '{' {
		if v := memberAt(b, i, "text"); v >= 0 && bytes.HasPrefix(b[v:], strBillingHeader) {
			e, err := jsonscan.Skip(b, i)
			if err != nil {
				return len(b), false
			}
			return e, true
		}
	}
	return w.part(b, i)
}

// objectMember reads the member whose key's quote is at b[j]: the raw key and the
// offset of its value, -1 when malformed.
func objectMember(b []byte, j int) (key []byte, v int) {
	ke, err := jsonscan.Skip(b, j)
	if err != nil {
		return nil, -1
	}
	if v = jsonscan.SkipSpace(b, ke); v >= len(b) || b[v] != ':' {
		return nil, -1
	}
	if v = jsonscan.SkipSpace(b, v+1); v >= len(b) {
		return nil, -1
	}
	return b[j+1 : ke-1], v
}

// memberStart is the offset of the value of the top-level member key in the JSON
// object b, or -1.
func memberStart(b []byte, key string) int {
	return memberAt(b, jsonscan.SkipSpace(b, 0), key)
}

// memberAt is the offset of the value of member key in the JSON object at b[i], or -1.
func memberAt(b []byte, i int, key string) int {
	if i >= len(b) || b[i] != '{' {
		return -1
	}
	i = jsonscan.SkipSpace(b, i+1)
	for i < len(b) && b[i] == '"' {
		k, v := objectMember(b, i)
		if v < 0 {
			return -1
		}
		if string(k) == key {
			return v
		}
		ve, err := jsonscan.Skip(b, v)
		if err != nil {
			return -1
		}
		if i = jsonscan.SkipSpace(b, ve); i >= len(b) || b[i] != ',' {
			return -1
		}
		i = jsonscan.SkipSpace(b, i+1)
	}
	return -1
}

// settle reports the attempt's outcome to the target's health, and to res, and frees
// its slot, or, for a stream, hands both to the stream's Close.
func (b *Backend) settle(l lease, err error, res *Result) error {
	if err == nil && res.Stream != nil {
		trial := l.probe
		if l.probe {
			// The answer began well: the target is back at once, rather than held to
			// one request for the whole generation (Close ejects it again if the
			// stream fails).
			b.report(l, success)
			l.probe = false
		}
		s := leasedPool.Get().(*leasedStream)
		s.Events, s.b, s.l, s.trial = res.Stream, b, l, trial
		res.Stream = s
		return nil
	}
	v := judge(l, err)
	res.Judged, res.Failed = v != neutral, v == failure
	b.report(l, v)
	b.done(l.i)
	return err
}

// done frees the slot of an attempt on target i that is over. On a retired backend it
// also closes the connection the attempt left idle: no new request comes to the
// backend, and until it is closed the connection counts under max_connections
// against the requests of the backend that replaced it (connGate).
func (b *Backend) done(i int) {
	b.pool.free(i)
	if b.pool.dropIdle.Load() {
		b.targets[i].client.CloseIdleConnections()
	}
}

// dropIdleConns closes the idle connections of b's requests, and those they leave
// idle from now on (done): b was retired.
func (b *Backend) dropIdleConns() {
	b.pool.dropIdle.Store(true)
	for _, t := range b.targets {
		t.client.CloseIdleConnections()
	}
}

// leasedStream holds a stream's slot until it is closed, and reports how it ended.
type leasedStream struct {
	Events
	b   *Backend
	l   lease
	err error
	end bool
	// upErr is set once the upstream sent an error event of its own (vLLM's engine
	// failing mid-stream): the stream failed, though data: [DONE] may follow it.
	upErr bool
	// trial is set when the stream was its target's trial after an ejection.
	trial bool
}

var leasedPool = sync.Pool{New: func() any { return new(leasedStream) }}

// Next implements Events.
func (s *leasedStream) Next(ev *Event) error {
	err := s.Events.Next(ev)
	switch {
	case err != nil:
		if s.err == nil {
			s.err = err
		}
	case ev.Done:
		s.end = true
	case ev.Error:
		s.upErr = true
	}
	return err
}

// NotifySilence implements SilenceNotifier.
func (s *leasedStream) NotifySilence(every time.Duration, fn func() error) bool {
	n, ok := s.Events.(SilenceNotifier)
	return ok && n.NotifySilence(every, fn)
}

// NotifyWait implements Waiter.
func (s *leasedStream) NotifyWait(fn func() error) bool {
	w, ok := s.Events.(Waiter)
	return ok && w.NotifyWait(fn)
}

// endEarly implements ender: a stream whose reader has its whole answer has ended
// well, [DONE] or not.
func (s *leasedStream) endEarly() bool {
	e, ok := s.Events.(ender)
	if !ok || !e.endEarly() {
		return false
	}
	s.end = true
	return true
}

// Abort implements Aborter.
func (s *leasedStream) Abort() {
	if a, ok := s.Events.(Aborter); ok {
		a.Abort()
	}
}

// Close implements Events.
func (s *leasedStream) Close() error {
	err := s.Events.Close()
	v := neutral
	switch {
	case s.upErr:
		v = failure
	case s.end:
		v = success
	case s.err != nil && s.err != io.EOF:
		v = verdictOf(s.err)
	}
	b, l, trial := s.b, s.l, s.trial
	*s = leasedStream{}
	leasedPool.Put(s)
	if trial && v == failure {
		// The trial failed after all: the target goes out again, for longer, as on
		// any failed trial, instead of taking eject_after more failures.
		b.noteShift(l.i, b.pool.states[l.i].eject(b.pool.now(), &b.pool.set, false), HealthChange{Cause: CauseTrialFailed})
	} else {
		b.report(l, v)
	}
	b.done(l.i)
	return err
}

// verdict is what an attempt says about its target's health.
type verdict uint8

const (
	neutral verdict = iota
	success
	failure
)

// verdictOf judges an attempt by its error: an unreachable or silent target, a 5xx or
// an answer that is not the API count against it; any other answer, 4xx included,
// shows it serving. The gateway's own limits (max_concurrency, max_connections, the
// attempt's deadline on a stream under way) say nothing either way.
func verdictOf(err error) verdict {
	if err == nil {
		return success
	}
	if ue, ok := errors.AsType[*UpstreamError](err); ok {
		if ue.Status >= 500 {
			return failure
		}
		return success
	}
	if err == errDeadlineSpent || errors.Is(err, ErrAnswerTooLarge) || errors.Is(err, ErrHeaderTooLarge) || errors.Is(err, ErrAnswerNoRoom) {
		// Nothing was sent; or the answer, or its header, was over the gateway's own
		// limit, as it would be from any target, or found no room in the memory the
		// gateway holds answers in.
		return neutral
	}
	if errors.Is(err, ErrStreamCut) && errors.Is(err, errAttemptDeadline) {
		// The gateway's own deadline ended an answer that was arriving.
		return neutral
	}
	if errors.Is(err, ErrTimeout) || errors.Is(err, ErrConnect) || errors.Is(err, ErrStreamCut) || errors.Is(err, ErrBadResponse) {
		return failure
	}
	return neutral
}

// judge is verdictOf for the attempt made under lease l: an attempt that spent half
// its time or more in the queue (acquire) and timed out at the call's own deadline ran
// out of time the gateway spent.
func judge(l lease, err error) verdict {
	v := verdictOf(err)
	if v == failure && l.queued {
		if _, ok := errors.AsType[callDeadlineError](err); ok {
			return neutral
		}
	}
	return v
}

// connGate holds the connections open to a target, from the clients of every backend
// built for it under one name, to that name's max_connections. fasthttp's MaxConns caps
// the connections of one client, and each backend a reload builds has clients of its
// own: without the gate, the connections the replaced backend's requests still hold
// would count against no cap of its successor's, and each reload would let
// max_connections more reach the upstream. A retired backend closes the connections
// its requests leave idle (Backend.done), so that only those in use hold places for
// long. A connection idle in one backend's client serves none of another's
// requests: a dial that finds every place taken has the other clients close their
// idle ones first (a request of the replaced config finds those its successor's
// requests left idle).
type connGate struct {
	// open counts the connections dialled or being dialled through the gate; limit
	// is the cap (0: none): that of the backend last activated under the name.
	open, limit atomic.Int64
	// waiting counts the dials waiting for a place.
	waiting atomic.Int32
	// clients are the request clients of the backends using the gate, replaced
	// (under mu) rather than changed, so that closeIdle reads them without the lock
	// that closing a connection takes (release).
	clients atomic.Pointer[[]*fasthttp.HostClient]
	mu      sync.Mutex
	// freed, made by a dial that waits, is closed when a place may have come free.
	freed chan struct{}
}

// join adds a backend's client to the gate's, leave takes it out.
func (g *connGate) join(c *fasthttp.HostClient) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var cs []*fasthttp.HostClient
	if old := g.clients.Load(); old != nil {
		cs = slices.Clone(*old)
	}
	cs = append(cs, c)
	g.clients.Store(&cs)
}

func (g *connGate) leave(c *fasthttp.HostClient) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if old := g.clients.Load(); old != nil {
		cs := slices.DeleteFunc(slices.Clone(*old), func(x *fasthttp.HostClient) bool { return x == c })
		g.clients.Store(&cs)
	}
}

// closeIdle has the gate's clients other than self close their idle connections,
// giving their places back.
func (g *connGate) closeIdle(self *fasthttp.HostClient) {
	cs := g.clients.Load()
	if cs == nil {
		return
	}
	for _, c := range *cs {
		if c != self {
			c.CloseIdleConnections()
		}
	}
}

// take claims a place for a new connection if one is free.
func (g *connGate) take() bool {
	for {
		n, limit := g.open.Load(), g.limit.Load()
		if limit > 0 && n >= limit {
			return false
		}
		if g.open.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// wait claims a place, waiting up to d for one to come free.
func (g *connGate) wait(d time.Duration) bool {
	if g.take() {
		return true
	}
	if d <= 0 {
		return false
	}
	// Counted before the last try: a place given back after that try sees the
	// waiter and wakes it.
	g.waiting.Add(1)
	defer g.waiting.Add(-1)
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		g.mu.Lock()
		if g.freed == nil {
			g.freed = make(chan struct{})
		}
		freed := g.freed
		g.mu.Unlock()
		if g.take() {
			return true
		}
		select {
		case <-freed:
		case <-timer.C:
			return false
		}
	}
}

// release gives a place back: its connection closed, or was never made.
func (g *connGate) release() {
	g.open.Add(-1)
	g.wake()
}

// setLimit puts limit in force, for the dials waiting too.
func (g *connGate) setLimit(limit int64) {
	if g.limit.Swap(limit) != limit {
		g.wake()
	}
}

func (g *connGate) wake() {
	if g.waiting.Load() == 0 {
		return
	}
	g.mu.Lock()
	if g.freed != nil {
		close(g.freed)
		g.freed = nil
	}
	g.mu.Unlock()
}

// free reports whether a connection may be opened under the gate, idle of them
// being idle in the client asking, which it can use instead.
func (g *connGate) free(idle int) bool {
	limit := g.limit.Load()
	return idle > 0 || limit <= 0 || g.open.Load() < limit
}

// gatedDial is client's dial with its connections held to the target's gate g: a dial
// that finds every place taken has the gate's other clients close their idle
// connections, then waits for a place, up to connect_timeout and the attempt's
// deadline (timeout), and fails with fasthttp.ErrNoFreeConns, the gateway's own
// limit, as fasthttp's own wait for a free connection does. The connection it makes
// gives its place back once closed, and keeps the backend's first-byte and idle
// timeouts.
func gatedDial(dial fasthttp.DialFuncWithTimeout, g *connGate, client *fasthttp.HostClient, connect, firstByte, idle time.Duration) fasthttp.DialFuncWithTimeout {
	return func(addr string, timeout time.Duration) (net.Conn, error) {
		if !g.take() {
			g.closeIdle(client)
			d := connect
			if timeout > 0 && (d <= 0 || timeout < d) {
				d = timeout
			}
			start := time.Now()
			if !g.wait(d) {
				return nil, fasthttp.ErrNoFreeConns
			}
			if timeout > 0 {
				if timeout -= time.Since(start); timeout <= 0 {
					g.release()
					return nil, fasthttp.ErrNoFreeConns
				}
			}
		}
		c, err := dial(addr, timeout)
		if err != nil {
			g.release()
			return nil, err
		}
		u, ok := c.(*upstreamConn)
		if !ok {
			if firstByte <= 0 && idle <= 0 {
				// A connection a Dial set on the client made (tests): kept as it is.
				return &gatedConn{Conn: c, gate: g}, nil
			}
			u = wrapUpstream(c)
		}
		u.firstByte, u.idle = firstByte, idle
		u.gate.Store(g)
		return u, nil
	}
}

// gatedConn is a connection other than an upstreamConn, counted in a gate.
type gatedConn struct {
	net.Conn
	gate *connGate
	once sync.Once
}

func (c *gatedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.gate.release)
	return err
}

// slots counts a target's requests in flight and caps them at a limit
// (max_concurrency, 0 for none). The limit comes with each call, from the queue the
// backends built under one name share (Activate): a reload that fails to build leaves
// it as it was.
type slots struct {
	n atomic.Int64
}

// load is the target's requests in flight.
func (s *slots) load() int64 { return s.n.Load() }

// take claims a slot if one is free.
func (s *slots) take(limit int64) bool {
	if limit <= 0 {
		s.n.Add(1)
		return true
	}
	for {
		n := s.n.Load()
		if n >= limit {
			return false
		}
		if s.n.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// queue holds a backend's requests that wait for a slot, in arrival order, or with
// queue.fair in the order that shares the slots among tenants (fair.go). It is the
// backend's, not a target's: a waiter takes the first slot freed on any target of its
// backend in service, so that it neither waits on a target that was ejected meanwhile
// nor times out while another target had room. Waiting needs no goroutine: a freed
// slot is handed to the waiter directly. Backends built under one name (a reload)
// share it, and their target lists may differ: each waiter carries its own.
type queue struct {
	waiting atomic.Int64
	// limit is the max_concurrency in force on the backend's targets: that of the
	// backend last activated under the name. A slot freed by a request of the backend
	// a reload replaced is handed on, or not, by the new cap.
	limit atomic.Int64
	mu    sync.Mutex
	// list is in the order of the waiters' tags (enqueue).
	list []*waiter
	// vtime is the virtual time of fair queuing: the start tag of the waiter last
	// served. fifo is the flow of every waiter of a backend without queue.fair, flows
	// those of the tenants with waiters, spare the flows to reuse.
	vtime uint64
	fifo  flow
	flows map[uint64]*flow
	spare []*flow
	// refs counts the backends using it, under Pools.mu.
	refs     int
	counters queueCounters
}

type waiter struct {
	ch     chan struct{}
	timer  *time.Timer
	queued bool
	// states are the targets of the waiter's backend; i is the one whose slot it
	// was handed, probe set when that slot is the target's trial.
	states []*targetState
	i      int
	probe  bool
	// avoid are the targets that failed the call, a retry (Backend.avoid): a copy,
	// read by whoever frees a slot while the waiter is queued.
	avoid targetSet
	// flow is the waiter's tenant's share of the queue while it is queued; start and
	// tag are its start and finish tags there.
	flow       *flow
	start, tag uint64
}

var waiterPool = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &waiter{ch: make(chan struct{}, 1), timer: t}
}}

// takes reports whether the waiter can be handed a slot on its backend's target i: a
// retry takes one on a target that failed it only once none that has not is in
// service.
func (w *waiter) takes(i int) bool {
	if w.avoid.pinned() {
		return !w.avoid.has(i)
	}
	return !w.avoid.has(i) || !inServiceOutside(w.states, &w.avoid)
}

// keepsAny reports whether a target of the waiter's backend in service, one it takes
// (takes), is one the backend in service under its name has too (a reload kept it).
// A kept target the waiter does not take (a retry's failed one, another than a pinned
// call's own) is none it would be handed a slot on.
func (w *waiter) keepsAny() bool {
	for j, st := range w.states {
		if st.kept() && w.takes(j) {
			return true
		}
	}
	return false
}

// stranded reports whether no target the waiter can take is in service: none of its
// backend's, or a pinned call's own.
func (w *waiter) stranded() bool {
	if w.avoid.pinned() {
		i := int(w.avoid.but - 1)
		return i >= len(w.states) || !w.states[i].available()
	}
	return !slices.ContainsFunc(w.states, (*targetState).available)
}

// waitOutcome is how a wait in the queue ended.
type waitOutcome uint8

const (
	// waitServed: the call has its lease, at once or after waiting.
	waitServed waitOutcome = iota
	// waitRefused: the queue was full, or no time was left to wait.
	waitRefused
	// waitTimedOut: the call waited its whole time.
	waitTimedOut
	// waitStranded: no target of the backend is in service, now or later while it
	// waited.
	waitStranded
	// waitLeft: the call's client hung up while it waited.
	waitLeft
	// waitPushedOut: a full fair queue gave the call's place to another tenant's.
	waitPushedOut
)

// wait queues for a slot on a target of p, not one in avoid, for up to d, behind at
// most queue.size per target others (with queue.fair: in its tenant's turn, who tells
// the tenant), or, when front is set (a waiter put back), ahead of them all. A call
// that leaves (waitLeft) has left the queue, and a slot handed to it meanwhile went on
// to the next waiter.
func (q *queue) wait(p *pool, first int, avoid *targetSet, d time.Duration, front bool, client ClientWatch, who Tenants) (lease, waitOutcome, bool) {
	q.mu.Lock()
	// Counted before the last try: a slot freed after this sees a waiter and hands its
	// slot over, one freed before it is found by the try.
	q.waiting.Add(1)
	if avoid.pinned() && !p.states[avoid.but-1].available() {
		q.waiting.Add(-1)
		q.mu.Unlock()
		return lease{}, waitStranded, false
	}
	if avoid != nil && !avoid.pinned() && !inServiceOutside(p.states, avoid) {
		// Every target that has not failed the call left service, since it chose
		// one or while it waited before (a slot handed over on a target that
		// then left): one that failed it will do, as at the first try.
		avoid = nil
	}
	if j := p.takeAny(first, avoid); j >= 0 {
		q.waiting.Add(-1)
		q.mu.Unlock()
		return lease{i: j}, waitServed, false
	}
	if !slices.ContainsFunc(p.states, (*targetState).available) {
		// Every target left service since the call chose one: it would wait for
		// nothing. Whoever takes one out after this check lets the waiter go.
		q.waiting.Add(-1)
		q.mu.Unlock()
		return lease{}, waitStranded, false
	}
	if d <= 0 {
		q.waiting.Add(-1)
		q.mu.Unlock()
		return lease{}, waitRefused, false
	}
	fl := q.flowOf(p.set.fair, p.set.weights, who)
	if !front && int64(len(q.list)) >= p.set.queueSize*int64(len(p.states)) &&
		(p.set.fair == FairNone || !q.pushOut(fl)) {
		q.dropIdle(fl)
		q.waiting.Add(-1)
		q.mu.Unlock()
		return lease{}, waitRefused, false
	}
	w := waiterPool.Get().(*waiter)
	w.queued, w.states, w.avoid, w.probe = true, p.states, targetSet{}, false
	if avoid != nil {
		w.avoid = *avoid
	}
	q.enqueue(w, fl, front)
	q.mu.Unlock()
	// Watched only now that the call waits: a call served at once costs nothing. A
	// slot handed over before the watch begins is found by the select all the same.
	var hangup <-chan struct{}
	if client != nil {
		hangup = client.Watch()
	}
	w.timer.Reset(d)
	granted, gone := false, false
	select {
	case <-w.ch:
		granted = true
	case <-w.timer.C:
	case <-hangup:
		gone = true
	}
	w.timer.Stop()
	if client != nil {
		client.Unwatch()
	}
	if !granted {
		q.mu.Lock()
		if w.queued {
			q.unlist(slices.Index(q.list, w), false)
			q.mu.Unlock()
			w.done()
			if gone {
				return lease{}, waitLeft, true
			}
			return lease{}, waitTimedOut, true
		}
		q.mu.Unlock()
		// Granted between the timer or the hang-up and the lock.
		<-w.ch
	}
	l := w.done()
	if !gone {
		switch l.i {
		case pushedOut:
			return lease{}, waitPushedOut, true
		case -1:
			return lease{}, waitStranded, true
		}
		return l, waitServed, true
	}
	if l.i >= 0 {
		if l.probe {
			p.states[l.i].probing.Store(false)
		}
		// The slot goes to the next waiter, or back to the target.
		p.free(l.i)
	}
	return lease{}, waitLeft, true
}

// done returns the waiter to its pool, and the lease it was handed: its target is -1
// when it was let go without one.
func (w *waiter) done() lease {
	l := lease{i: w.i, probe: w.probe, queued: true}
	w.states = nil
	waiterPool.Put(w)
	return l
}

// serve hands the free slots of target st to the waiters that can use it, in line
// order: arrival, or with queue.fair the tenants' turns (enqueue).
func (q *queue) serve(st *targetState, limit int64) {
	q.mu.Lock()
	q.serveLocked(st, limit)
	q.mu.Unlock()
}

func (q *queue) serveLocked(st *targetState, limit int64) {
	if !st.available() {
		return
	}
	removed := st.removed.Load()
	for k := 0; k < len(q.list); {
		w := q.list[k]
		i := slices.Index(w.states, st)
		if i < 0 || !w.takes(i) || removed && w.keepsAny() {
			// A backend before or after a reload that dropped the target (a
			// waiter queued before it takes a target the reload removed only while
			// none it kept is in service), or a retry that waits for a target that
			// has not failed it.
			k++
			continue
		}
		if !st.slots.take(limit) {
			return
		}
		q.hand(k, i)
	}
}

// strandLocked lets go the waiters none of whose backend's targets (a pinned call's
// own target) is in service: no
// slot would be handed to them before their queue timeout, which would turn a backend
// that is down into 503 upstream_overloaded after the whole wait.
func (q *queue) strandLocked() {
	for k := 0; k < len(q.list); {
		if !q.list[k].stranded() {
			k++
			continue
		}
		q.hand(k, -1)
	}
}

// hand gives the k-th waiter the slot taken for it on its backend's target i, or, with
// i -1, lets it go without one.
func (q *queue) hand(k, i int) {
	w := q.unlist(k, i >= 0)
	w.queued, w.i = false, i
	w.ch <- struct{}{}
}
