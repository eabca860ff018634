package metrics

import (
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// countWith counts the series of family name whose labels include want.
func countWith(fams map[string]*dto.MetricFamily, name string, want map[string]string) int {
	n := 0
	for _, m := range fams[name].GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		match := true
		for k, v := range want {
			match = match && have[k] == v
		}
		if match {
			n++
		}
	}
	return n
}

// useAll holds, and counts once in, every kind of series of endpoint chat's route
// to backend b with variant v, its target t and its limit; it returns the route.
func useAll(l *Lease, b, v, t string) *Route {
	r := l.Route("chat", b, v)
	r.Done(200, time.Second, time.Millisecond, time.Millisecond, 10, 5, 0.5)
	r.Done(529, time.Second, 0, 0, 0, 0, 0)
	r.CachedInput(3, 2)
	r.WebSearches(1)
	r.StreamFailed(StreamCut)
	l.Attempt(b, t).Observe(OutcomeOK)
	l.Endpoint("chat").Begin()
	l.Endpoint("chat").End()
	l.Rejection("chat", "api_key:requests:minute").Inc()
	return r
}

// leaseFamilies are the families a route, its target, its endpoint and its limits have
// series in, with the labels that name them.
var leaseFamilies = []struct {
	name   string
	labels map[string]string
}{
	{"tollgate_requests_total", map[string]string{"endpoint": "chat", "backend": "llama", "variant": "v1"}},
	{"tollgate_request_duration_seconds", map[string]string{"endpoint": "chat", "backend": "llama", "variant": "v1"}},
	{"tollgate_time_to_first_token_seconds", map[string]string{"endpoint": "chat", "backend": "llama", "variant": "v1"}},
	{"tollgate_time_per_output_token_seconds", map[string]string{"endpoint": "chat", "backend": "llama", "variant": "v1"}},
	{"tollgate_stream_errors_total", map[string]string{"endpoint": "chat", "backend": "llama", "variant": "v1"}},
	{"tollgate_tokens_total", map[string]string{"endpoint": "chat", "backend": "llama"}},
	{"tollgate_cached_input_tokens_total", map[string]string{"endpoint": "chat", "backend": "llama"}},
	{"tollgate_web_search_requests_total", map[string]string{"endpoint": "chat", "backend": "llama"}},
	{"tollgate_cost_usd_total", map[string]string{"endpoint": "chat", "backend": "llama"}},
	{"tollgate_upstream_attempts_total", map[string]string{"backend": "llama", "target": "10.0.0.1:8000"}},
	{"tollgate_in_flight_requests", map[string]string{"endpoint": "chat"}},
	{"tollgate_ratelimit_rejections_total", map[string]string{"endpoint": "chat"}},
}

// fakeClock sets m's clock to a time the test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func withClock(m *Metrics) *fakeClock {
	c := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	m.now = c.now
	return c
}

// Releasing the last lease on a label set that counted something keeps its series
// for removedKeep, for Prometheus to scrape their last values, then a gather deletes
// them from every family, the statuses first seen on the way (529) included; a lease
// still holding a label set keeps it.
func TestLeaseReleaseRemovesSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	clock := withClock(m)
	old, next := m.Lease(), m.Lease()
	useAll(old, "llama", "v1", "10.0.0.1:8000")
	next.Route("other", "llama", "v1")
	fams := scrape(t, reg, "")
	for _, f := range leaseFamilies {
		if countWith(fams, f.name, f.labels) == 0 {
			t.Fatalf("%s%v not exported while held", f.name, f.labels)
		}
	}
	old.Release()
	old.Release() // a second release does nothing more
	clock.t = clock.t.Add(removedKeep - time.Second)
	fams = scrape(t, reg, "")
	if got := value(series(t, fams, "tollgate_requests_total", map[string]string{"endpoint": "chat", "backend": "llama", "variant": "v1", "code": "529"})); got != 1 {
		t.Errorf("a released route's last count, %v before removedKeep ran out: %v, want 1 kept for the scrapes", time.Second, got)
	}
	clock.t = clock.t.Add(time.Second)
	scrape(t, reg, "") // the gather that finds removedKeep run out deletes them
	fams = scrape(t, reg, "")
	for _, f := range leaseFamilies {
		if n := countWith(fams, f.name, f.labels); n != 0 {
			t.Errorf("%s%v: %d series removedKeep after the last lease let go, want none: %s", f.name, f.labels, n, describe(fams[f.name]))
		}
	}
	if !hasSeries(fams, "tollgate_requests_total", map[string]string{"endpoint": "other", "backend": "llama", "variant": "v1", "code": "200"}) {
		t.Error("the series of a route another lease holds went with the released one")
	}
	next.Release()
	var nilLease *Lease
	nilLease.Release()
}

// Series that counted nothing go as soon as no lease holds them: there is nothing
// in them to scrape (a rollout's new targets replaced before any request).
func TestLeaseReleaseRemovesUnusedSeriesAtOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	withClock(m)
	l := m.Lease()
	l.Route("chat", "llama", "v1")
	l.Attempt("llama", "10.0.0.1:8000")
	e := l.Endpoint("chat")
	e.Begin()
	e.End()
	l.Rejection("chat", "api_key:requests:minute")
	l.Release()
	fams := scrape(t, reg, "")
	for _, f := range leaseFamilies {
		if n := countWith(fams, f.name, f.labels); n != 0 {
			t.Errorf("%s%v: %d series of an unused label set after its last lease let go, want none", f.name, f.labels, n)
		}
	}
}

// A label set that the next lease takes before the old one lets go keeps its series
// and counts (no reset for rate() to read as a restart), and so does one taken again
// while kept; one that comes back after its series were deleted starts again from 0.
func TestLeaseKeptSeriesKeepCounts(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	clock := withClock(m)
	old := m.Lease()
	r := useAll(old, "llama", "v1", "10.0.0.1:8000")
	next := m.Lease()
	if next.Route("chat", "llama", "v1") != r {
		t.Error("two leases on one label set got two routes")
	}
	next.Attempt("llama", "10.0.0.1:8000")
	next.Endpoint("chat")
	next.Rejection("chat", "api_key:requests:minute")
	old.Release()
	kept := func(when string) {
		t.Helper()
		fams := scrape(t, reg, "")
		for _, c := range []struct {
			name   string
			labels map[string]string
			want   float64
		}{
			{"tollgate_requests_total", map[string]string{"endpoint": "chat", "backend": "llama", "variant": "v1", "code": "529"}, 1},
			{"tollgate_tokens_total", map[string]string{"endpoint": "chat", "backend": "llama", "type": "input"}, 10},
			{"tollgate_cost_usd_total", map[string]string{"endpoint": "chat", "backend": "llama"}, 0.5},
			{"tollgate_upstream_attempts_total", map[string]string{"backend": "llama", "target": "10.0.0.1:8000", "outcome": "ok"}, 1},
			{"tollgate_ratelimit_rejections_total", map[string]string{"endpoint": "chat", "limit": "api_key:requests:minute"}, 1},
		} {
			if got := value(series(t, fams, c.name, c.labels)); got != c.want {
				t.Errorf("%s%v = %v %s, want %v kept", c.name, c.labels, got, when, c.want)
			}
		}
	}
	clock.t = clock.t.Add(2 * removedKeep)
	kept("after the old lease let go")

	// Released, then taken again while kept: the same series go on.
	next.Release()
	clock.t = clock.t.Add(removedKeep / 2)
	again := m.Lease()
	useAll(again, "llama", "v1", "10.0.0.1:8000")
	clock.t = clock.t.Add(removedKeep)
	fams := scrape(t, reg, "")
	if got := value(series(t, fams, "tollgate_requests_total", map[string]string{"endpoint": "chat", "backend": "llama", "variant": "v1", "code": "529"})); got != 2 {
		t.Errorf("a label set taken again while kept counts %v, want 2: its series go on", got)
	}

	again.Release()
	clock.t = clock.t.Add(removedKeep)
	scrape(t, reg, "")
	back := m.Lease()
	back.Route("chat", "llama", "v1")
	fams = scrape(t, reg, "")
	if got := value(series(t, fams, "tollgate_tokens_total", map[string]string{"endpoint": "chat", "backend": "llama", "type": "input"})); got != 0 {
		t.Errorf("a route back after its series were deleted starts its tokens at %v, want 0", got)
	}
	if hasSeries(fams, "tollgate_requests_total", map[string]string{"endpoint": "chat", "backend": "llama", "variant": "v1", "code": "529"}) {
		t.Error("a route back after its series were deleted brought back a status first seen before")
	}
}

// Token and cost series are per (endpoint, backend): routes with other variants
// share them, and they stay while any of those routes is held or kept.
func TestLeaseSharedTokenSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	clock := withClock(m)
	v1, none := m.Lease(), m.Lease()
	v1.Route("chat", "llama", "v1").Done(200, time.Second, 0, 0, 7, 0, 0)
	none.Route("chat", "llama", None)
	v1.Release()
	clock.t = clock.t.Add(removedKeep)
	fams := scrape(t, reg, "")
	if got := value(series(t, fams, "tollgate_tokens_total", map[string]string{"endpoint": "chat", "backend": "llama", "type": "input"})); got != 7 {
		t.Errorf("tokens of (chat, llama) = %v with its variant none route still held, want 7", got)
	}
	if countWith(scrape(t, reg, ""), "tollgate_requests_total", map[string]string{"variant": "v1"}) != 0 {
		t.Error("the released variant's request series stayed past removedKeep")
	}
	none.Release()
	fams = scrape(t, reg, "")
	if n := countWith(fams, "tollgate_tokens_total", nil) + countWith(fams, "tollgate_cost_usd_total", nil); n != 0 {
		t.Errorf("%d token and cost series with no route held or kept, want none", n)
	}
}

// A handle used after its series were deleted (by a request the caller failed to
// wait for) counts nowhere: no status first seen then creates a series that nothing
// would ever delete, and the deleted ones do not come back.
func TestLeaseReleasedRouteCreatesNoSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	withClock(m)
	l := m.Lease()
	r := l.Route("chat", "llama", "v1")
	a := l.Attempt("llama", "10.0.0.1:8000")
	l.Release()
	r.Done(529, time.Second, time.Millisecond, time.Millisecond, 1, 1, 1)
	r.Done(200, time.Second, 0, 0, 0, 0, 0)
	r.StreamFailed(StreamTimeout)
	a.Observe(OutcomeStatus5xx)
	fams := scrape(t, reg, "")
	for _, name := range []string{"tollgate_requests_total", "tollgate_tokens_total", "tollgate_stream_errors_total", "tollgate_upstream_attempts_total", "tollgate_request_duration_seconds"} {
		if n := countWith(fams, name, nil); n != 0 {
			t.Errorf("%s: %d series from a released route, want none: %s", name, n, describe(fams[name]))
		}
	}
}

// Series asked for on Metrics itself are held for good: a lease letting go of the
// same label set leaves them.
func TestPinnedSeriesOutliveLeases(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	m.Route(UnknownEndpoint, None, None)
	m.Attempt("llama", "10.0.0.1:8000")
	l := m.Lease()
	l.Route(UnknownEndpoint, None, None)
	l.Attempt("llama", "10.0.0.1:8000")
	l.Release()
	fams := scrape(t, reg, "")
	if !hasSeries(fams, "tollgate_requests_total", map[string]string{"endpoint": UnknownEndpoint, "backend": None, "variant": None, "code": "404"}) {
		t.Error("a pinned route's series went with a lease on it")
	}
	if countWith(fams, "tollgate_upstream_attempts_total", map[string]string{"target": "10.0.0.1:8000"}) != int(numOutcomes) {
		t.Error("a pinned target's series went with a lease on it")
	}
}

// A status first seen on a route while its lease is released lands in a series that
// goes with the route's, or counts nowhere: none is left behind.
func TestLeaseReleaseRacingFirstStatuses(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	clock := withClock(m)
	l := m.Lease()
	r := l.Route("chat", "llama", "v1")
	start := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			<-start
			for status := minCode + g; status <= maxCode; status += 8 {
				r.Done(status, time.Millisecond, 0, 0, 0, 0, 0)
			}
		})
	}
	close(start)
	l.Release()
	wg.Wait()
	clock.t = clock.t.Add(removedKeep)
	scrape(t, reg, "")
	if n := countWith(scrape(t, reg, ""), "tollgate_requests_total", nil); n != 0 {
		t.Errorf("%d request series left after the route's lease let go, want none", n)
	}
}
