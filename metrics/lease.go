package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// removedKeep is how long the series of a label set that no lease holds any more
// stay when they have counted something: long enough for Prometheus to scrape
// their last values (a scrape interval is 15 s to 1 min, and Prometheus looks 5
// minutes back for a sample) so that the last requests of a removed route or
// target, the errors of a backend an operator reloaded away from among them, are
// not lost; short enough that reloads renaming things leave no series for good.
// Series that counted nothing go at once: there is nothing to read in them.
const removedKeep = 10 * time.Minute

// Lease holds the label sets one configuration uses. Each label set counts the
// leases holding it; when the last of them is released, its series are deleted
// from every family (those that counted something removedKeep later), so that a
// reload that removes or renames an endpoint, a route's variant, a target or a
// limit leaves no series of it behind in /metrics for good (pods given new IPs by
// each rollout would otherwise add series without end).
//
// A configuration that replaces another takes its lease before the old one is
// released: the label sets both use keep their series and counts, as do those
// taken again while kept. A label set that comes back after its series were
// deleted starts again from 0, which rate() reads as a counter reset.
//
// Release the lease only once nothing uses its handles any more (the gateway
// releases it after the last request on the configuration): a count on a handle
// whose series were deleted is lost, and never brings them back.
//
// A Lease is safe for concurrent use. Two Metrics on one registry keep separate
// counts: one of them deletes a label set the other still uses.
type Lease struct {
	m *Metrics
	// pinned leases (Metrics' own) keep what they hold for good.
	pinned bool

	// What the lease holds, once per time it was asked for; under m.refMu.
	routes     []*Route
	attempts   []*Attempt
	endpoints  []*Endpoint
	rejections []*rejection
}

// hold counts the leases holding a label set; since, when none does, is when the
// last let go of series kept for their counts to be scraped. Under Metrics.refMu.
type hold struct {
	held  int
	since time.Time
}

// take adds a lease to h, reviving a set kept after its last lease let go.
func (m *Metrics) take(h *hold) {
	if h.held++; h.held == 1 && !h.since.IsZero() {
		h.since = time.Time{}
		m.retiring--
	}
}

// letGo takes a lease from h and reports whether the set's series are to be
// removed now: none holds it, and counted reports that its series counted
// nothing. A set that counted something is kept, and swept removedKeep later.
func (m *Metrics) letGo(h *hold, counted func() bool) bool {
	if h.held--; h.held > 0 {
		return false
	}
	if !counted() {
		return true
	}
	h.since = m.now()
	m.retiring++
	return false
}

// Lease returns an empty lease on m's label sets.
func (m *Metrics) Lease() *Lease {
	return &Lease{m: m}
}

// Route returns the series of one route and holds them until Release. backend
// and variant are None for requests the gateway answers itself; endpoint is
// UnknownEndpoint when the request named no endpoint.
func (l *Lease) Route(endpoint, backend, variant string) *Route {
	m := l.m
	m.refMu.Lock()
	defer m.refMu.Unlock()
	m.sweep()
	k := [3]string{endpoint, backend, variant}
	r := m.routeSets[k]
	if r == nil {
		r = m.newRoute(k)
		m.routeSets[k] = r
	}
	m.take(&r.hold)
	if !l.pinned {
		l.routes = append(l.routes, r)
	}
	return r
}

// Attempt returns the attempt counters of one backend target and holds them
// until Release. target is the target's label value (host:port, with its path
// where targets share it), never credentials or a query.
func (l *Lease) Attempt(backend, target string) *Attempt {
	m := l.m
	m.refMu.Lock()
	defer m.refMu.Unlock()
	k := [2]string{backend, target}
	a := m.attemptSets[k]
	if a == nil {
		a = &Attempt{labels: k}
		for o := range numOutcomes {
			a.outcomes[o] = m.attempts.WithLabelValues(backend, target, o.String())
		}
		m.attemptSets[k] = a
	}
	m.take(&a.hold)
	if !l.pinned {
		l.attempts = append(l.attempts, a)
	}
	return a
}

// Endpoint returns the series of one endpoint and holds them until Release.
func (l *Lease) Endpoint(name string) *Endpoint {
	m := l.m
	m.refMu.Lock()
	defer m.refMu.Unlock()
	e := m.endpointSets[name]
	if e == nil {
		e = &Endpoint{inFlight: m.inFlight.WithLabelValues(name), name: name}
		m.endpointSets[name] = e
	}
	m.take(&e.hold)
	if !l.pinned {
		l.endpoints = append(l.endpoints, e)
	}
	return e
}

// Rejection returns the counter of 429s from one limit of an endpoint and holds
// it until Release. limit is a name from the config (for example
// "api_key:tokens:minute"), never a key or a user.
func (l *Lease) Rejection(endpoint, limit string) prometheus.Counter {
	m := l.m
	m.refMu.Lock()
	defer m.refMu.Unlock()
	k := [2]string{endpoint, limit}
	r := m.rejectionSets[k]
	if r == nil {
		r = &rejection{c: m.rejections.WithLabelValues(endpoint, limit), labels: k}
		m.rejectionSets[k] = r
	}
	m.take(&r.hold)
	if !l.pinned {
		l.rejections = append(l.rejections, r)
	}
	return r.c
}

// Release lets go of every label set the lease holds. The series of those no
// other lease holds are deleted: at once when they counted nothing, else
// removedKeep later (a lease taking the set again meanwhile keeps them).
// Releasing a lease twice, or a nil one, does nothing more.
func (l *Lease) Release() {
	if l == nil || l.pinned {
		return
	}
	m := l.m
	m.refMu.Lock()
	defer m.refMu.Unlock()
	for _, r := range l.routes {
		if m.letGo(&r.hold, r.counted) {
			r.remove()
		}
	}
	for _, a := range l.attempts {
		if m.letGo(&a.hold, a.counted) {
			a.remove(m)
		}
	}
	for _, e := range l.endpoints {
		if m.letGo(&e.hold, e.counted) {
			e.remove(m)
		}
	}
	for _, r := range l.rejections {
		if m.letGo(&r.hold, r.counted) {
			r.remove(m)
		}
	}
	l.routes, l.attempts, l.endpoints, l.rejections = nil, nil, nil, nil
	m.sweep()
}

// sweep removes the kept sets whose removedKeep has run out; the caller holds
// m.refMu.
func (m *Metrics) sweep() {
	if m.retiring == 0 {
		return
	}
	now := m.now()
	due := func(h *hold) bool {
		if h.held > 0 || h.since.IsZero() || now.Sub(h.since) < removedKeep {
			return false
		}
		h.since = time.Time{}
		m.retiring--
		return true
	}
	for _, r := range m.routeSets {
		if due(&r.hold) {
			r.remove()
		}
	}
	for _, a := range m.attemptSets {
		if due(&a.hold) {
			a.remove(m)
		}
	}
	for _, e := range m.endpointSets {
		if due(&e.hold) {
			e.remove(m)
		}
	}
	for _, r := range m.rejectionSets {
		if due(&r.hold) {
			r.remove(m)
		}
	}
}

// sweeper runs the sweep on every gather of the registry, so that kept series go
// on time with no reload to take or release a lease. It describes and collects no
// metric of its own.
type sweeper struct{ m *Metrics }

func (sweeper) Describe(chan<- *prometheus.Desc) {}

func (s sweeper) Collect(chan<- prometheus.Metric) {
	s.m.refMu.Lock()
	defer s.m.refMu.Unlock()
	s.m.sweep()
}

// counted reports whether any of ms, counters, gauges or histograms, holds
// anything but 0.
func counted[M prometheus.Metric](ms ...M) bool {
	for _, c := range ms {
		var d dto.Metric
		if c.Write(&d) != nil {
			return true
		}
		if d.GetCounter().GetValue() != 0 || d.GetGauge().GetValue() != 0 || d.GetHistogram().GetSampleCount() != 0 {
			return true
		}
	}
	return false
}

// counted reports whether a request counted in the route's series.
func (r *Route) counted() bool {
	for i := range r.codes {
		if ref := r.codes[i].Load(); ref != nil && counted(ref.c) {
			return true
		}
	}
	if d, ok := r.duration.(prometheus.Metric); ok && counted(d) {
		return true
	}
	return counted(r.streamErrors[:]...)
}

// remove deletes the route's series; the caller holds m.refMu.
func (r *Route) remove() {
	m, k := r.m, r.labels
	r.dead = true
	delete(m.routeSets, k)
	for i := range r.codes {
		if r.codes[i].Load() != nil {
			m.requests.DeleteLabelValues(k[0], k[1], k[2], codeLabel(i))
		}
	}
	m.duration.DeleteLabelValues(k[:]...)
	m.ttft.DeleteLabelValues(k[:]...)
	m.tpot.DeleteLabelValues(k[:]...)
	for e := range numStreamErrors {
		m.streamErrors.DeleteLabelValues(k[0], k[1], k[2], e.String())
	}
	m.dropTokens(r.tokens)
}

// tokenSeries are the series of one (endpoint, backend), which its routes share
// whatever their variant; held (under Metrics.refMu) counts those routes, kept
// or held. When the last goes they go with it: a route that counted tokens was
// kept itself.
type tokenSeries struct {
	labels                [2]string
	in, out               prometheus.Counter
	cacheRead, cacheWrite prometheus.Counter
	cost                  prometheus.Counter
	held                  int
}

// holdTokens holds the token series of (endpoint, backend), creating them when no
// route holds them; the caller holds m.refMu.
func (m *Metrics) holdTokens(endpoint, backend string) *tokenSeries {
	k := [2]string{endpoint, backend}
	ts := m.tokenSets[k]
	if ts == nil {
		ts = &tokenSeries{
			labels:     k,
			in:         m.tokens.WithLabelValues(endpoint, backend, "input"),
			out:        m.tokens.WithLabelValues(endpoint, backend, "output"),
			cacheRead:  m.cachedTokens.WithLabelValues(endpoint, backend, "cache_read"),
			cacheWrite: m.cachedTokens.WithLabelValues(endpoint, backend, "cache_write"),
			cost:       m.cost.WithLabelValues(endpoint, backend),
		}
		m.tokenSets[k] = ts
	}
	ts.held++
	return ts
}

// dropTokens lets go of token series a removed route held, deleting them when no
// route holds them any more; the caller holds m.refMu.
func (m *Metrics) dropTokens(ts *tokenSeries) {
	if ts.held--; ts.held > 0 {
		return
	}
	k := ts.labels
	delete(m.tokenSets, k)
	m.tokens.DeleteLabelValues(k[0], k[1], "input")
	m.tokens.DeleteLabelValues(k[0], k[1], "output")
	m.cachedTokens.DeleteLabelValues(k[0], k[1], "cache_read")
	m.cachedTokens.DeleteLabelValues(k[0], k[1], "cache_write")
	m.cost.DeleteLabelValues(k[0], k[1])
}

func (a *Attempt) counted() bool { return counted(a.outcomes[:]...) }

func (a *Attempt) remove(m *Metrics) {
	delete(m.attemptSets, a.labels)
	for o := range numOutcomes {
		m.attempts.DeleteLabelValues(a.labels[0], a.labels[1], o.String())
	}
}

func (e *Endpoint) counted() bool { return counted(e.inFlight) }

func (e *Endpoint) remove(m *Metrics) {
	delete(m.endpointSets, e.name)
	m.inFlight.DeleteLabelValues(e.name)
}

func (r *rejection) counted() bool { return counted(r.c) }

func (r *rejection) remove(m *Metrics) {
	delete(m.rejectionSets, r.labels)
	m.rejections.DeleteLabelValues(r.labels[0], r.labels[1])
}
