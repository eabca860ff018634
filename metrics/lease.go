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
	sets []labelSet
}

// labelSet is the series of one label set of a family (a route's, a target's
// attempts, an endpoint's, a limit's rejections), as leases hold them.
type labelSet interface {
	holds() *hold
	// counted reports whether its series count anything.
	counted() bool
	// remove deletes its series; the caller holds m.refMu.
	remove(m *Metrics)
}

// hold counts the leases holding a label set; since, when none does, is when the
// last let go of series kept for their counts to be scraped. Under Metrics.refMu.
type hold struct {
	held  int
	since time.Time
}

func (h *hold) holds() *hold { return h }

// acquire returns the set of sets under k, made by create when there is none,
// and holds it for l; the caller holds l.m.refMu.
func acquire[K comparable, S labelSet](l *Lease, sets map[K]S, k K, create func() S) S {
	s, ok := sets[k]
	if !ok {
		s = create()
		sets[k] = s
	}
	l.m.take(s.holds())
	if !l.pinned {
		l.sets = append(l.sets, s)
	}
	return s
}

// take adds a lease to h, reviving a set kept after its last lease let go (the
// sweep then drops it from the sets kept).
func (m *Metrics) take(h *hold) {
	h.held++
	h.since = time.Time{}
}

// letGo takes a lease from s and removes its series when none holds it any more:
// at once when they counted nothing, else it is kept and swept removedKeep later.
func (m *Metrics) letGo(s labelSet) {
	h := s.holds()
	if h.held--; h.held > 0 {
		return
	}
	if !s.counted() {
		s.remove(m)
		return
	}
	h.since = m.now()
	m.kept = append(m.kept, s)
}

// Lease returns an empty lease on m's label sets.
func (m *Metrics) Lease() *Lease {
	return &Lease{m: m}
}

// Route returns every series of one route and holds them until Release. backend
// and variant are None for requests the gateway answers itself; endpoint is
// UnknownEndpoint when the request named no endpoint.
func (l *Lease) Route(endpoint, backend, variant string) *Route {
	return l.ShapedRoute(endpoint, backend, variant, full)
}

// ShapedRoute returns the series of one route that s says its requests can move,
// and holds them until Release. A route asked for again, by this lease or
// another, gets the series this shape adds to those it has.
func (l *Lease) ShapedRoute(endpoint, backend, variant string, s Shape) *Route {
	m := l.m
	m.refMu.Lock()
	defer m.refMu.Unlock()
	m.sweep()
	k := [3]string{endpoint, backend, variant}
	r := acquire(l, m.routeSets, k, func() *Route { return m.newRoute(k) })
	r.shape(s)
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
	return acquire(l, m.attemptSets, k, func() *Attempt {
		a := &Attempt{labels: k}
		for o := range numOutcomes {
			a.outcomes[o] = m.attempts.WithLabelValues(backend, target, o.String())
		}
		return a
	})
}

// Endpoint returns the series of one endpoint and holds them until Release.
func (l *Lease) Endpoint(name string) *Endpoint {
	m := l.m
	m.refMu.Lock()
	defer m.refMu.Unlock()
	return acquire(l, m.endpointSets, name, func() *Endpoint {
		return &Endpoint{inFlight: m.inFlight.WithLabelValues(name), name: name}
	})
}

// Rejection returns the counter of 429s from one limit of an endpoint and holds
// it until Release. limit is a name from the config (for example
// "api_key:tokens:minute"), never a key or a user.
func (l *Lease) Rejection(endpoint, limit string) prometheus.Counter {
	m := l.m
	m.refMu.Lock()
	defer m.refMu.Unlock()
	k := [2]string{endpoint, limit}
	return acquire(l, m.rejectionSets, k, func() *rejection {
		return &rejection{c: m.rejections.WithLabelValues(endpoint, limit), labels: k}
	}).c
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
	for _, s := range l.sets {
		m.letGo(s)
	}
	l.sets = nil
	m.sweep()
}

// sweep removes the kept sets whose removedKeep has run out; the caller holds
// m.refMu.
// A kept set taken again since is dropped from the list and stays.
func (m *Metrics) sweep() {
	if len(m.kept) == 0 {
		return
	}
	now := m.now()
	kept := m.kept[:0]
	for _, s := range m.kept {
		switch h := s.holds(); {
		case h.held > 0 || h.since.IsZero():
		case now.Sub(h.since) >= removedKeep:
			h.since = time.Time{}
			s.remove(m)
		default:
			kept = append(kept, s)
		}
	}
	clear(m.kept[len(kept):])
	m.kept = kept
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
	for i := range r.streamErrors {
		if ref := r.streamErrors[i].Load(); ref != nil && counted(ref.c) {
			return true
		}
	}
	return false
}

// remove deletes the route's series; the caller holds m.refMu.
func (r *Route) remove(m *Metrics) {
	k := r.labels
	r.dead = true
	delete(m.routeSets, k)
	for i := range r.codes {
		if r.codes[i].Load() != nil {
			m.requests.DeleteLabelValues(k[0], k[1], k[2], codeLabel(i))
		}
	}
	m.duration.DeleteLabelValues(k[:]...)
	if r.latency[latencyTTFT].Load() != nil {
		m.ttft.DeleteLabelValues(k[:]...)
	}
	if r.latency[latencyTPOT].Load() != nil {
		m.tpot.DeleteLabelValues(k[:]...)
	}
	for e := range numStreamErrors {
		if r.streamErrors[e].Load() != nil {
			m.streamErrors.DeleteLabelValues(k[0], k[1], k[2], e.String())
		}
	}
	if r.tokens != nil {
		m.dropTokens(r.tokens)
	}
}

// tokenSeries are the series of one (endpoint, backend), which its routes share
// whatever their variant; held (under Metrics.refMu) counts the routes that
// hold them, kept or held. When the last goes they go with it: a route that
// counted tokens was kept itself. c holds each series once a route's shape or
// first use created it (under Metrics.refMu).
type tokenSeries struct {
	labels [2]string
	c      [numTokenKinds]prometheus.Counter
	held   int
}

// holdTokens holds the token series of (endpoint, backend), making their set
// when no route holds it; the caller holds m.refMu.
func (m *Metrics) holdTokens(endpoint, backend string) *tokenSeries {
	k := [2]string{endpoint, backend}
	ts := m.tokenSets[k]
	if ts == nil {
		ts = &tokenSeries{labels: k}
		m.tokenSets[k] = ts
	}
	ts.held++
	return ts
}

// tokenCounter returns series k of ts, creating it when no route has yet; the
// caller holds m.refMu.
func (m *Metrics) tokenCounter(ts *tokenSeries, k tokenKind) prometheus.Counter {
	if c := ts.c[k]; c != nil {
		return c
	}
	ep, b := ts.labels[0], ts.labels[1]
	switch k {
	case tokensIn:
		ts.c[k] = m.tokens.WithLabelValues(ep, b, "input")
	case tokensOut:
		ts.c[k] = m.tokens.WithLabelValues(ep, b, "output")
	case tokensCacheRead:
		ts.c[k] = m.cachedTokens.WithLabelValues(ep, b, "cache_read")
	case tokensCacheWrite:
		ts.c[k] = m.cachedTokens.WithLabelValues(ep, b, "cache_write")
	case tokensWebSearch:
		ts.c[k] = m.webSearches.WithLabelValues(ep, b)
	default:
		ts.c[k] = m.cost.WithLabelValues(ep, b)
	}
	return ts.c[k]
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
	m.webSearches.DeleteLabelValues(k[0], k[1])
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
