package providers

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// targetState is what the gateway knows of one target. It lives in Pools, so that the
// backends a reload builds carry on with it.
//
// A target is in service unless passive health ejected it or active checks found it
// down. An ejection ends with a trial: once it has run out, one request (the probe) is
// let through, and its outcome brings the target back or ejects it for twice as long.
// A passing active check after the ejection has run out brings it back as well.
type targetState struct {
	// refs counts the backends using it, checkers those of them that run active
	// checks, under Pools.mu.
	refs, checkers int

	slots slots
	load  vllmLoad
	// conns holds the connections of the requests of every backend using the
	// target to max_connections.
	conns connGate

	ejected atomic.Bool
	down    atomic.Bool
	probing atomic.Bool
	// removed is set while the backend in service under the name (Activate) does not
	// have the target: a reload took it out of the config. The replaced config's
	// requests still finish on it, but its slots and its trial go to one of them only
	// when none of that request's targets kept is in service (queue.serveLocked and
	// offerTrialLocked for a waiter, pool.passes for takeAny and trial).
	removed atomic.Bool
	// until is when the ejection runs out, leftAt when the target last went out of
	// service, both in Unix nanoseconds.
	until  atomic.Int64
	leftAt atomic.Int64
	// fails counts failed requests in a row.
	fails atomic.Int32

	mu sync.Mutex
	// ejections counts the ejections in a row, each doubling the length of the next,
	// up to the first that reaches the longest length.
	ejections int
	// backAt is when the target last came back from an ejection.
	backAt time.Time
	// passed and failed count active checks in a row.
	passed, failed int
	// checked is set by the first active check of the target since checks began on
	// it (they begin again after forgetChecks); firstCheck, made on demand, is closed
	// then.
	checked    bool
	firstCheck chan struct{}
	// outAt is when the target last went out of service, for how long it was out
	// when it comes back.
	outAt time.Time
}

// shift is a target's passage out of service or back into it, found under the
// target's lock, for its backend to report once the lock is let go (noteShift). Its
// zero value is no passage.
type shift struct {
	out, back bool
	// d is the length of the ejection that took the target out, or how long the
	// target was out when it came back.
	d time.Duration
}

// moved is the shift from being in service (was) to being in service as the target
// is now, at now; the caller holds st.mu.
func (st *targetState) moved(was bool, now time.Time) shift {
	switch is := st.available(); {
	case was && !is:
		st.outAt = now
		return shift{out: true}
	case !was && is:
		return shift{back: true, d: now.Sub(st.outAt)}
	}
	return shift{}
}

// available reports whether the target takes ordinary requests.
func (st *targetState) available() bool { return !st.ejected.Load() && !st.down.Load() }

// kept reports whether the target is in service and in the config in service.
func (st *targetState) kept() bool { return st.available() && !st.removed.Load() }

// up reports whether the target counts as healthy: in service, or ejected with the
// ejection run out (now in Unix nanoseconds) and not found down by active checks. Such
// a target gets the next request as its trial; counted down until then, a backend
// whose readiness took the gateway out of its load balancer (/readyz) would get no
// request to try it with, and stay out for good.
func (st *targetState) up(now int64) bool {
	return !st.down.Load() && (!st.ejected.Load() || now >= st.until.Load())
}

// report tells the target's health how an attempt on it went.
func (b *Backend) report(l lease, v verdict) {
	st := b.pool.states[l.i]
	switch v {
	case success:
		if l.probe {
			b.noteShift(l.i, st.restore(b.pool.now()), HealthChange{Cause: CauseTrialPassed})
			b.pool.kick(l.i)
		} else if st.fails.Load() != 0 {
			st.fails.Store(0)
		}
	case failure:
		if l.probe {
			b.noteShift(l.i, st.eject(b.pool.now(), &b.pool.set, true), HealthChange{Cause: CauseTrialFailed})
		} else if n := st.fails.Add(1); n >= b.pool.set.ejectAfter {
			b.noteShift(l.i, st.eject(b.pool.now(), &b.pool.set, false), HealthChange{Cause: CauseEjected, Failures: int(n)})
		}
	default:
		if l.probe {
			st.probing.Store(false)
		}
	}
}

// HealthChange is a target of a backend leaving service or coming back, as the
// backend's Config.OnHealth is told of it: once per passage, not per request.
type HealthChange struct {
	// Backend is the backend's name; Target is the target's place in its Targets,
	// and URL its URL as configured, which may hold credentials: what is shown of
	// a target is its host (the gateway's metrics label).
	Backend string
	Target  int
	URL     string
	// Up is set when the target came back into service, unset when it left.
	Up    bool
	Cause HealthCause
	// Failures is how many failed requests in a row ejected the target
	// (CauseEjected).
	Failures int
	// For is how long an ejection keeps the target out before its trial
	// (CauseEjected, CauseTrialFailed).
	For time.Duration
	// Status is the status of the active check that took the target out
	// (CauseCheckFailed), 0 when no answer came; Err is then why, an error that
	// matches ErrTimeout, ErrConnect or ErrBadResponse.
	Status int
	Err    error
	// Out is how long the target was out of service (Up).
	Out time.Duration
}

// HealthCause is why a target left service or came back.
type HealthCause uint8

// The causes of a HealthChange.
const (
	// CauseEjected: eject_after failed requests in a row ejected the target.
	CauseEjected HealthCause = iota + 1
	// CauseTrialFailed: the trial stream that brought the target back failed, and
	// ejected it again, for longer.
	CauseTrialFailed
	// CauseCheckFailed: active health checks found the target down.
	CauseCheckFailed
	// CauseTrialPassed: the trial request after its ejection succeeded.
	CauseTrialPassed
	// CauseCheckPassed: an active check passed, past the target's ejection or after
	// checks had found it down.
	CauseCheckPassed
	// CauseChecksOff: no backend runs active checks on the target any more (a reload
	// turned them off), and what they had found went with them.
	CauseChecksOff
)

var causeNames = [...]string{"", "ejected", "trial_failed", "health_check_failed", "trial_passed", "health_check_passed", "checks_off"}

// String names the cause as logs write it.
func (c HealthCause) String() string {
	if int(c) < len(causeNames) {
		return causeNames[c]
	}
	return ""
}

// noteShift tells the backend's OnHealth of target i's passage sh, described by c;
// nothing when sh is none or no one listens. It runs after the target's lock is let
// go, so that the listener may take its time.
func (b *Backend) noteShift(i int, sh shift, c HealthChange) {
	f := b.cfg.OnHealth
	if f == nil || !sh.out && !sh.back {
		return
	}
	c.Backend, c.Target, c.URL, c.Up = b.Name, i, b.targets[i].URL, sh.back
	if sh.back {
		c.Out = sh.d
	} else {
		c.For = sh.d
	}
	f(c)
}

// eject takes the target out of service, for a shift out when it was in service.
// The length doubles with each ejection that follows the last one before the target
// has served for the longest length, so that a target that keeps failing is tried
// less and less often.
func (st *targetState) eject(now time.Time, set *poolSettings, probe bool) shift {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ejected.Load() && !probe {
		// A request sent before the ejection: it is already counted.
		return shift{}
	}
	was := st.available()
	if !st.ejected.Load() && now.Sub(st.backAt) >= set.ejectMax {
		st.ejections = 0
	}
	// The count stops growing once the length reaches the longest: a target that
	// stays dead is ejected again and again, and a count that kept growing would
	// shift ejectFor past the top of a Duration.
	d := set.ejectMax
	if n := st.ejections; n < 63 && set.ejectFor <= set.ejectMax>>n {
		d = set.ejectFor << n
	}
	if d < set.ejectMax {
		st.ejections++
	}
	st.until.Store(now.Add(d).UnixNano())
	st.leftAt.Store(now.UnixNano())
	st.fails.Store(0)
	st.ejected.Store(true)
	st.probing.Store(false)
	sh := st.moved(was, now)
	sh.d = d
	return sh
}

// restore brings an ejected target back after its probe succeeded.
func (st *targetState) restore(now time.Time) shift {
	st.mu.Lock()
	defer st.mu.Unlock()
	was := st.available()
	if st.ejected.Load() {
		st.backAt = now
		st.ejected.Store(false)
	}
	st.fails.Store(0)
	st.probing.Store(false)
	return st.moved(was, now)
}

// observe counts one active check. A check that passes once an ejection has run out
// ends it, as a successful trial would: without traffic (a gateway out of its load
// balancer until ready) no trial comes.
//
// The first check of a target decides at once, whatever the thresholds: a gateway
// that starts while a backend is down would otherwise count its targets healthy, and
// be ready behind its load balancer, for unhealthy_threshold intervals. Envoy and
// nginx's mandatory checks start hosts the same way.
func (st *targetState) observe(ok bool, now time.Time, set *poolSettings) shift {
	st.mu.Lock()
	defer st.mu.Unlock()
	was := st.available()
	healthyAfter, unhealthyAfter := set.healthyAfter, set.unhealthyAfter
	if !st.checked {
		healthyAfter, unhealthyAfter = 1, 1
		st.checked = true
		if st.firstCheck != nil {
			// Closed once the outcome is stored: whoever sees it closed reads the
			// outcome.
			defer close(st.firstCheck)
		}
	}
	if ok {
		st.failed = 0
		if st.passed++; st.passed >= healthyAfter && st.down.Load() {
			st.down.Store(false)
		}
		if st.ejected.Load() && !st.down.Load() && now.UnixNano() >= st.until.Load() {
			// A trial under way keeps its probe: its outcome still counts.
			st.backAt = now
			st.fails.Store(0)
			st.ejected.Store(false)
		}
		return st.moved(was, now)
	}
	st.passed = 0
	if st.failed++; st.failed >= unhealthyAfter && !st.down.Load() {
		st.leftAt.Store(now.UnixNano())
		st.down.Store(true)
	}
	return st.moved(was, now)
}

// forgetChecks clears what active checks found, their first check included, at now.
func (st *targetState) forgetChecks(now time.Time) shift {
	st.mu.Lock()
	defer st.mu.Unlock()
	was := st.available()
	st.passed, st.failed = 0, 0
	st.down.Store(false)
	if st.checked {
		// Closed: the next first check gets a channel of its own. An open one is
		// kept for whoever waits on it.
		st.firstCheck = nil
	}
	st.checked = false
	return st.moved(was, now)
}

// firstChecked returns a channel closed once the target has had its first active
// check.
func (st *targetState) firstChecked() <-chan struct{} {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.firstCheck == nil {
		st.firstCheck = make(chan struct{})
		if st.checked {
			close(st.firstCheck)
		}
	}
	return st.firstCheck
}

// AwaitChecks waits until each target of the backend has had its first active check,
// and reports whether they all had before ctx ended. A backend without active checks
// has none to wait for. Start runs each target's first check at once and a check
// ends within health.timeout, so a started backend waits no longer than that; a
// target whose checks an earlier backend of the same name already ran (a reload) has
// had its first.
func (b *Backend) AwaitChecks(ctx context.Context) bool {
	if !b.pool.set.active {
		return true
	}
	for _, st := range b.pool.states {
		ch := st.firstChecked()
		select {
		case <-ch:
			continue
		default:
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// TargetHealth is whether one target of a backend is in service.
type TargetHealth struct {
	URL string
	Up  bool
}

// Health reports the backend's targets in config order; a target is up unless failed
// requests ejected it, for an ejection that has not run out, or active checks found it
// down.
func (b *Backend) Health() []TargetHealth {
	now := b.pool.now().UnixNano()
	h := make([]TargetHealth, len(b.targets))
	for i, t := range b.targets {
		h[i] = TargetHealth{URL: t.URL, Up: b.pool.states[i].up(now)}
	}
	return h
}

// Healthy reports whether any target of the backend is up, as Health counts it.
func (b *Backend) Healthy() bool {
	now := b.pool.now().UnixNano()
	for _, st := range b.pool.states {
		if st.up(now) {
			return true
		}
	}
	return false
}

var strGet = []byte("GET")

// every runs run now and then each interval until ctx ends, on a goroutine of the
// pool's wait group. A target's active checks and its load reads each run on their
// own: a check that takes its whole timeout must not hold up the reads (the load
// would go stale, and the target rank after every target read), nor a /metrics that
// hangs for the reads' timeout the checks that would find the target down.
func (p *pool) every(ctx context.Context, interval time.Duration, run func()) {
	defer p.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	run()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// A tick and the stop may be ready together, and select picks either:
			// a retired backend starts no check or read after its stop.
			if ctx.Err() == nil {
				run()
			}
		}
	}
}

// healthAuthorizer is a provider whose upstream wants credentials on every request,
// health checks included: a hosted API (OpenAI's /v1/models, Azure's deployments,
// Anthropic's) answers 401 to a check without them.
type healthAuthorizer interface {
	authorize(h *fasthttp.RequestHeader)
}

// check makes one active health check: GET health.path on the target's host, with the
// backend's credentials and headers as its requests carry them, passing on a 2xx answer
// within health.timeout.
func (b *Backend) check(i int) {
	p := &b.pool
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	req.Header.SetMethodBytes(strGet)
	req.SetRequestURI(p.healthURLs[i])
	if a, ok := b.p.(healthAuthorizer); ok {
		a.authorize(&req.Header)
	}
	err := p.checkers[i].DoTimeout(req, resp, p.set.checkTimeout)
	status := 0
	if err == nil {
		status = resp.StatusCode()
	}
	ok := status >= 200 && status < 300
	fasthttp.ReleaseRequest(req)
	fasthttp.ReleaseResponse(resp)
	st := p.states[i]
	// Under p.mu: a check that ends after its backend was retired or closed is
	// dropped, not counted with the settings a reload replaced.
	p.mu.Lock()
	if p.retired || p.closed {
		p.mu.Unlock()
		return
	}
	sh := st.observe(ok, p.now(), &p.set)
	p.mu.Unlock()
	switch {
	case sh.back:
		b.noteShift(i, sh, HealthChange{Cause: CauseCheckPassed})
		p.kick(i)
	case sh.out:
		c := HealthChange{Cause: CauseCheckFailed, Status: status}
		if err != nil {
			c.Err = classify(headerFit(err, p.checkers[i].ReadBufferSize, false))
		}
		b.noteShift(i, sh, c)
		if p.queue.waiting.Load() != 0 {
			p.leftService()
		}
	}
}

// Retire ends the backend's background work for good, as when a reload replaces it
// (Activate retires the backend it replaces): its active checks and load reads stop,
// one under way is dropped, and the backend no longer counts as running checks on its
// targets, so that a target the checks took down comes back once no backend in service
// checks it. The backend's requests in flight finish as before, still counting for
// their targets' health; its idle connections are closed, and each one its requests
// leave idle from then on (they count under max_connections against its successor's
// requests); Close closes the rest. Calling it again does nothing.
func (b *Backend) Retire() {
	p := &b.pool
	// A check or read under way ends now, connecting or not, its outcome dropped
	// (retired is set by then), rather than running on to its timeout against a
	// target that hangs, or to connect_timeout against one that black-holes. Its
	// connection is closed once the lock is let go: closing a TLS one writes an alert,
	// which a peer that reads nothing can hold for seconds. Again, it does nothing.
	defer p.probes.stop()
	// Held while the checks are given back: a Close under way waits, and gives back
	// what is left.
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.retired || p.closed {
		return
	}
	p.retired = true
	if p.cancel != nil {
		p.cancel()
	}
	if p.set.active {
		for i, t := range b.targets {
			b.noteShift(i, p.pools.releaseChecks(b.Name, t.URL), HealthChange{Cause: CauseChecksOff})
		}
	}
	b.dropIdleConns()
}

// activate records b as the backend in service under its name, and returns the one
// it replaces, if any.
func (p *Pools) activate(b *Backend) *Backend {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.active[b.Name]
	p.active[b.Name] = b
	for k, st := range p.targets {
		if k.backend == b.Name {
			st.removed.Store(!slices.Contains(b.pool.states, st))
		}
	}
	if old == b {
		return nil
	}
	return old
}

// deactivate forgets b as the backend in service under its name, once it is closed.
func (p *Pools) deactivate(b *Backend) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.active[b.Name] == b {
		delete(p.active, b.Name)
	}
}

// releaseChecks gives back a checking backend's share in the target's checks, as
// release does, leaving its reference to the target's state; it returns the target's
// shift back into service when that was the last share and the checks had found the
// target down.
func (p *Pools) releaseChecks(backend, url string) shift {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st := p.targets[poolKey{backend, url}]; st != nil {
		if st.checkers--; st.checkers == 0 {
			return st.forgetChecks(p.now())
		}
	}
	return shift{}
}

// errProbesStopped is the error of a check or load read dialling after its backend
// stopped them.
var errProbesStopped = errors.New("health checks and load reads stopped")

// probeConns holds the connections of a backend's active checks and load reads, and
// the context of their dials, so that Retire and Close end the ones under way:
// fasthttp's DoTimeout takes no context, and a target that accepts a check and never
// answers (a vLLM whose engine is stuck) would hold it for its whole timeout, which
// Close waits out, and with it the gateway's exit; one whose address black-holes (a
// deleted pod's IP, its SYNs unanswered) would hold the check's dial for
// connect_timeout. Closed, the connection fails the check
// at once; cancelled, the dial does, wherever it is (resolving, connecting, in a
// proxy's or the TLS handshake), having made no connection.
type probeConns struct {
	mu      sync.Mutex
	stopped bool
	// ctx is the dials' context, made by the first and cancelled by stop.
	ctx    context.Context
	cancel context.CancelFunc
	// open are at most two per target (a checker's MaxConns).
	open []*probeConn
}

// dial is dial under r's context, its connections held in r.
func (r *probeConns) dial(dial contextDial) fasthttp.DialFuncWithTimeout {
	return func(addr string, timeout time.Duration) (net.Conn, error) {
		r.mu.Lock()
		if r.stopped {
			r.mu.Unlock()
			return nil, errProbesStopped
		}
		if r.ctx == nil {
			r.ctx, r.cancel = context.WithCancel(context.Background())
		}
		ctx := r.ctx
		r.mu.Unlock()
		c, err := dial(ctx, addr, timeout)
		if err != nil {
			if ctx.Err() != nil {
				// The stop's, whatever the dial made of it (a proxy's connection
				// closed under its CONNECT reads as a failed CONNECT).
				return nil, errProbesStopped
			}
			return nil, err
		}
		pc := &probeConn{Conn: c, r: r}
		r.mu.Lock()
		if r.stopped {
			r.mu.Unlock()
			_ = c.Close()
			return nil, errProbesStopped
		}
		r.open = append(r.open, pc)
		r.mu.Unlock()
		return pc, nil
	}
}

// stop ends the dials under way, closes the connections open, and fails every dial
// from now on.
func (r *probeConns) stop() {
	r.mu.Lock()
	r.stopped = true
	cancel := r.cancel
	open := r.open
	r.open = nil
	r.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	for _, c := range open {
		_ = c.Conn.Close()
	}
}

// probeConn is a connection of a backend's checks or reads, held in its probeConns
// until closed.
type probeConn struct {
	net.Conn
	r *probeConns
}

func (c *probeConn) Close() error {
	r := c.r
	r.mu.Lock()
	if i := slices.Index(r.open, c); i >= 0 {
		r.open = slices.Delete(r.open, i, i+1)
	}
	r.mu.Unlock()
	return c.Conn.Close()
}

// Handshake is that of the connection dialled, which has made any TLS handshake
// already: fasthttp takes a connection with this method for a TLS one, and does not
// wrap it in a TLS client of its own.
func (c *probeConn) Handshake() error {
	if h, ok := c.Conn.(interface{ Handshake() error }); ok {
		return h.Handshake()
	}
	return nil
}
