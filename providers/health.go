package providers

import (
	"context"
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
}

// available reports whether the target takes ordinary requests.
func (st *targetState) available() bool { return !st.ejected.Load() && !st.down.Load() }

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
			st.restore(b.pool.now())
			b.pool.kick(l.i)
		} else if st.fails.Load() != 0 {
			st.fails.Store(0)
		}
	case failure:
		if l.probe || st.fails.Add(1) >= b.pool.set.ejectAfter {
			st.eject(b.pool.now(), &b.pool.set, l.probe)
		}
	default:
		if l.probe {
			st.probing.Store(false)
		}
	}
}

// eject takes the target out of service. The length doubles with each ejection that
// follows the last one before the target has served for the longest length, so that a
// target that keeps failing is tried less and less often.
func (st *targetState) eject(now time.Time, set *poolSettings, probe bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ejected.Load() && !probe {
		// A request sent before the ejection: it is already counted.
		return
	}
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
}

// restore brings an ejected target back after its probe succeeded.
func (st *targetState) restore(now time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ejected.Load() {
		st.backAt = now
		st.ejected.Store(false)
	}
	st.fails.Store(0)
	st.probing.Store(false)
}

// observe counts one active check. A check that passes once an ejection has run out
// ends it, as a successful trial would: without traffic (a gateway out of its load
// balancer until ready) no trial comes.
//
// The first check of a target decides at once, whatever the thresholds: a gateway
// that starts while a backend is down would otherwise count its targets healthy, and
// be ready behind its load balancer, for unhealthy_threshold intervals. Envoy and
// nginx's mandatory checks start hosts the same way.
func (st *targetState) observe(ok bool, now time.Time, set *poolSettings) {
	st.mu.Lock()
	defer st.mu.Unlock()
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
		return
	}
	st.passed = 0
	if st.failed++; st.failed >= unhealthyAfter && !st.down.Load() {
		st.leftAt.Store(now.UnixNano())
		st.down.Store(true)
	}
}

// forgetChecks clears what active checks found, their first check included.
func (st *targetState) forgetChecks() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.passed, st.failed = 0, 0
	st.down.Store(false)
	if st.checked {
		// Closed: the next first check gets a channel of its own. An open one is
		// kept for whoever waits on it.
		st.firstCheck = nil
	}
	st.checked = false
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

// watch runs a target's active checks and load reads until ctx ends.
func (b *Backend) watch(ctx context.Context, i int) {
	p := &b.pool
	defer p.wg.Done()
	var checks, reads <-chan time.Time
	var buf []byte
	if p.set.active {
		t := time.NewTicker(p.set.interval)
		defer t.Stop()
		checks = t.C
		b.check(i)
	}
	if p.set.balance == vllmQueue {
		t := time.NewTicker(p.set.metricsInterval)
		defer t.Stop()
		reads = t.C
		buf = b.readLoad(i, buf)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-checks:
			b.check(i)
		case <-reads:
			buf = b.readLoad(i, buf)
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
	ok := err == nil && resp.StatusCode() >= 200 && resp.StatusCode() < 300
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
	was := st.available()
	st.observe(ok, p.now(), &p.set)
	now := st.available()
	p.mu.Unlock()
	switch {
	case !was && now:
		p.kick(i)
	case was && !now && p.queue.waiting.Load() != 0:
		p.leftService()
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
		for _, t := range b.targets {
			p.pools.releaseChecks(b.Name, t.URL)
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
// release does, leaving its reference to the target's state.
func (p *Pools) releaseChecks(backend, url string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st := p.targets[poolKey{backend, url}]; st != nil {
		if st.checkers--; st.checkers == 0 {
			st.forgetChecks()
		}
	}
}
