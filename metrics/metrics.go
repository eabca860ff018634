// Package metrics holds every Prometheus collector Tollgate exports, registered
// on one registry that the caller passes in.
//
// Label sets are resolved when a configuration is built, not per request: the
// gateway asks a Lease for a *Route per (endpoint, backend, variant), an
// *Attempt per (backend, target) and an *Endpoint per endpoint, keeps them in its
// config snapshot, and calls their methods on the request path without
// allocating. Releasing the lease when the snapshot retires removes the series no
// other lease holds (those that counted something once they had time to be
// scraped), so that a reload that renames things does not leave their series
// behind. Gauges that mirror state owned elsewhere (route weights, canary
// states, backend health, limiter mode) are set from snapshots.
package metrics

import (
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Label values for requests that never reached a backend (rejected by auth,
// by a limit, or naming no known endpoint). Using fixed words keeps those
// series bounded and visible in the same queries as routed traffic.
const (
	// None is the backend and variant label value of a request answered by
	// the gateway itself.
	None = "none"
	// UnknownEndpoint is the endpoint label value of a request whose model
	// matched no endpoint; the requested name is never used as a label.
	UnknownEndpoint = "unknown"
)

// Buckets of the classic histograms, in seconds. Requests to LLMs last from a
// few milliseconds (a cached embedding) to minutes (a long generation, which
// backends allow up to 10 minutes by default), so the request buckets span
// 10 ms to 600 s; time to first token is mostly under a
// few seconds and gets finer steps there; time per output token lives between
// 1 ms and 1 s.
var (
	DurationBuckets = []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 180, 300, 600}
	TTFTBuckets     = []float64{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 20, 30, 60, 120}
	TPOTBuckets     = []float64{0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1}
)

// Native histogram settings shared by the three latency histograms: a growth
// factor of 1.1 (schema 3, 8 buckets per doubling) gives under 5 % relative
// error on quantiles, and 160 buckets cover 2^20 (1 ms to 17 min). Past 160,
// client_golang first widens the zero bucket, up to nativeMaxZeroThreshold
// (2^-10 s, about 1 ms: fast refusals, which need no finer split), then halves
// the resolution. NativeHistogramMinResetDuration stays 0, so that it never
// resets the histogram instead: with a duration set, a histogram past its limit
// that long after its last reset is reset whole, classic buckets, _sum and
// _count included, and the dashboards and alerts, which read the classic
// buckets, would see every series drop to zero and lose what was observed since
// the last scrape.
const (
	nativeBucketFactor     = 1.1
	nativeMaxBuckets       = 160
	nativeMaxZeroThreshold = 0x1p-10
)

// CanaryStates are the canary states the router reports; tollgate_canary_state
// carries one series per endpoint and state, 1 for the current one.
var CanaryStates = []string{"none", "stepping", "paused", "rolled_back", "promoted"}

// Metrics is the set of Tollgate collectors on one registry. It is safe for
// concurrent use and meant to live as long as the process: config reloads
// build new Routes from the same Metrics.
type Metrics struct {
	requests        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	ttft            *prometheus.HistogramVec
	tpot            *prometheus.HistogramVec
	tokens          *prometheus.CounterVec
	cachedTokens    *prometheus.CounterVec
	webSearches     *prometheus.CounterVec
	cost            *prometheus.CounterVec
	rejections      *prometheus.CounterVec
	attempts        *prometheus.CounterVec
	inFlight        *prometheus.GaugeVec
	backendUp       *prometheus.GaugeVec
	reloads         *prometheus.CounterVec
	reloadOKGauge   prometheus.Gauge
	limiterDegraded prometheus.Gauge
	routeWeight     *prometheus.GaugeVec
	canaryState     *prometheus.GaugeVec
	streamErrors    *prometheus.CounterVec
	// cache holds the answer caches' collectors (Cache).
	cache cacheVecs
	// keys holds the client keys' collectors (Lease.Key).
	keys keyVecs

	reloadOK, reloadErr prometheus.Counter

	// The snapshot setters replace whole sets; they remember what they set
	// last so that series of removed routes and targets disappear.
	mu          sync.Mutex
	lastWeights map[[3]string]struct{}
	lastCanary  map[string]string
	lastUp      map[[2]string]struct{}

	tracing  *traceCollector
	limiter  *limiterCollector
	backends *backendCollector
	bodies   *bodyCollector
	// logDrops reads the log queue's count of dropped lines (WatchLogDrops).
	logDrops atomic.Pointer[func() uint64]

	// refMu guards the label sets that leases hold, by label values, their
	// holds and the dead field of routes. Only leases (config builds and
	// retirements), scrapes and a route's first request of a rare status take it.
	refMu         sync.Mutex
	routeSets     map[[3]string]*Route
	tokenSets     map[[2]string]*tokenSeries
	attemptSets   map[[2]string]*Attempt
	endpointSets  map[string]*Endpoint
	rejectionSets map[[2]string]*rejection
	keySets       map[string]*Key
	cacheSets     map[string]*Cache
	// pinned holds the label sets asked for on Metrics itself, for good.
	pinned *Lease
	// discard and discardObs are what a series first used on a removed route
	// counts in: the route's series are gone, and creating one would leave it for
	// good.
	discard    prometheus.Counter
	discardObs prometheus.Observer
	// kept are the label sets let go of but kept for their last counts to be
	// scraped (removedKeep); now is the clock that times them.
	kept []labelSet
	now  func() time.Time
}

// New creates the Tollgate collectors and registers them, with the Go runtime
// and process collectors, on reg. Calling it again with the same registry
// returns a Metrics sharing the already registered collectors, so tests and
// restarts within one process do not panic; any other registration error is a
// programming error and panics, as prometheus.MustRegister does.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		lastWeights:   make(map[[3]string]struct{}),
		lastCanary:    make(map[string]string),
		lastUp:        make(map[[2]string]struct{}),
		routeSets:     make(map[[3]string]*Route),
		tokenSets:     make(map[[2]string]*tokenSeries),
		attemptSets:   make(map[[2]string]*Attempt),
		endpointSets:  make(map[string]*Endpoint),
		rejectionSets: make(map[[2]string]*rejection),
		keySets:       make(map[string]*Key),
		cacheSets:     make(map[string]*Cache),
		discard:       prometheus.NewCounter(prometheus.CounterOpts{Name: "tollgate_discarded"}),
		discardObs:    prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tollgate_discarded"}),
	}
	m.pinned = &Lease{m: m, pinned: true}
	m.now = time.Now
	m.requests = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_requests_total",
		Help: "Requests answered, by endpoint, backend, variant and HTTP status code.",
	}, []string{"endpoint", "backend", "variant", "code"}))
	m.duration = register(reg, newHistogram("tollgate_request_duration_seconds",
		"Time from the request's arrival to the last byte of its response.", DurationBuckets))
	m.ttft = register(reg, newHistogram("tollgate_time_to_first_token_seconds",
		"Time from the request's arrival to the first generated token sent to the client.", TTFTBuckets))
	m.tpot = register(reg, newHistogram("tollgate_time_per_output_token_seconds",
		"Mean time between output tokens after the first, per request.", TPOTBuckets))
	m.tokens = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_tokens_total",
		Help: "Tokens processed, by endpoint, backend and type (input or output).",
	}, []string{"endpoint", "backend", "type"}))
	// A counter of its own, not a type of tollgate_tokens_total: cached tokens are
	// a part of the input ones, and a sum over type would count them twice.
	m.cachedTokens = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_cached_input_tokens_total",
		Help: "Input tokens, counted in tollgate_tokens_total too, that the upstream read from (type cache_read) or wrote to (type cache_write) its prompt cache.",
	}, []string{"endpoint", "backend", "type"}))
	m.webSearches = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_web_search_requests_total",
		Help: "Web searches the upstream ran for the answers (Anthropic's usage.server_tool_use.web_search_requests), billed apart from tokens.",
	}, []string{"endpoint", "backend"}))
	m.cost = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_cost_usd_total",
		Help: "Cost in US dollars from the backends' prices: per million tokens, and per thousand web searches.",
	}, []string{"endpoint", "backend"}))
	m.rejections = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_ratelimit_rejections_total",
		Help: "Requests refused with 429 by a limit, by endpoint and limit.",
	}, []string{"endpoint", "limit"}))
	m.attempts = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_upstream_attempts_total",
		Help: "Calls to upstream targets, by backend, target and outcome.",
	}, []string{"backend", "target", "outcome"}))
	m.inFlight = register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tollgate_in_flight_requests",
		Help: "Requests being served, by endpoint.",
	}, []string{"endpoint"}))
	m.backendUp = register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tollgate_backend_up",
		Help: "1 when the target passes its health checks, else 0.",
	}, []string{"backend", "target"}))
	m.reloads = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_config_reloads_total",
		Help: "Configuration reloads, by result (success or error).",
	}, []string{"result"}))
	m.reloadOKGauge = register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tollgate_config_last_reload_successful",
		Help: "1 when the last configuration reload was applied (or none failed since start), 0 when it was refused and the previous configuration still runs.",
	}))
	m.reloadOKGauge.Set(1)
	m.limiterDegraded = register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tollgate_limiter_degraded",
		Help: "1 while the limiter cannot reach its shared store and applies on_redis_error.",
	}))
	m.routeWeight = register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tollgate_route_weight",
		Help: "Live weight of a route in percent, by endpoint, backend and variant.",
	}, []string{"endpoint", "backend", "variant"}))
	m.canaryState = register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tollgate_canary_state",
		Help: "1 for the endpoint's current canary state, 0 for the others.",
	}, []string{"endpoint", "state"}))
	m.streamErrors = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_stream_errors_total",
		Help: "Streams answered 200 that the upstream then failed (the stream ended with an error event), by endpoint, backend, variant and error code.",
	}, []string{"endpoint", "backend", "variant", "code"}))
	m.cache = newCacheVecs(reg)
	m.keys = newKeyVecs(reg)
	register(reg, prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "tollgate_log_lines_dropped_total",
		Help: "Log lines dropped because the log reader (the process's stderr) fell behind and the 4 MiB log queue was full.",
	}, m.logLinesDropped))
	m.tracing = register(reg, &traceCollector{})
	m.limiter = register(reg, &limiterCollector{})
	m.backends = register(reg, &backendCollector{})
	m.bodies = register(reg, &bodyCollector{})
	// Unchecked (it describes nothing), so each Metrics on reg registers its own.
	register(reg, sweeper{m})

	// Both results exist from the start so that rate() over them works
	// before the first failure.
	m.reloadOK = m.reloads.WithLabelValues("success")
	m.reloadErr = m.reloads.WithLabelValues("error")

	register(reg, collectors.NewGoCollector())
	register(reg, collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func newHistogram(name, help string, buckets []float64) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(histogramOpts(name, help, buckets), []string{"endpoint", "backend", "variant"})
}

// histogramOpts are the options of a latency histogram: classic buckets and a
// native histogram bounded as the native settings above say.
func histogramOpts(name, help string, buckets []float64) prometheus.HistogramOpts {
	return prometheus.HistogramOpts{
		Name:                            name,
		Help:                            help,
		Buckets:                         buckets,
		NativeHistogramBucketFactor:     nativeBucketFactor,
		NativeHistogramMaxBucketNumber:  nativeMaxBuckets,
		NativeHistogramMaxZeroThreshold: nativeMaxZeroThreshold,
	}
}

// register registers c on reg, or returns the collector already registered
// under the same descriptors.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	panic(err)
}

// Route holds the pre-resolved series of one (endpoint, backend, variant).
// Build it with the config; its methods are safe for concurrent use and do
// not allocate.
type Route struct {
	m      *Metrics
	labels [3]string
	// tokens are the series the route shares with the endpoint's other routes
	// to its backend, nil while it has none; dead says that the route's series
	// were removed. Both under m.refMu.
	tokens *tokenSeries
	hold
	dead bool

	duration prometheus.Observer

	// The series only some label sets can move (Shape) are created with the
	// shape that says they can, or by their first use (off the hot path, as a
	// rare status's counter is), so that what a shape left out is still counted.
	// Each is nil until then; requests read it through lazy.
	latency      [numLatencies]atomic.Pointer[child[prometheus.Observer]]
	tokenCounts  [numTokenKinds]atomic.Pointer[child[prometheus.Counter]]
	streamErrors [numStreamErrors]atomic.Pointer[child[prometheus.Counter]]
	// codes holds the request counter per HTTP status: statuses 100..599 map to
	// 0..499, anything else to the last slot.
	codes [numCodes]atomic.Pointer[child[prometheus.Counter]]
}

const (
	minCode  = 100
	maxCode  = 599
	numCodes = maxCode - minCode + 2
)

// invalidCode is the code label of a status outside 100..599.
const invalidCode = "invalid"

// child boxes one series of a route (a counter or an observer, both interfaces)
// for an atomic.Pointer.
type child[T any] struct{ c T }

// lazy returns the series p holds, or, at its first use on the route, the one
// create(r, k) makes (firstUse). The lock and its defer stay in firstUse: in lazy
// they cost a series that exists about 1 ns a lookup (BenchmarkRouteCachedInput*).
func lazy[T, K any](r *Route, p *atomic.Pointer[child[T]], discard T, create func(*Route, K) T, k K) T {
	if c := p.Load(); c != nil {
		return c.c
	}
	return firstUse(r, discard, create, k)
}

// firstUse returns the series create(r, k) makes, under the lock that releasing a
// lease takes: a route already removed gets discard instead, so that it does not
// bring back a series of its own that no lease would ever remove, and first uses
// at once make one series, which every one of them counts in.
func firstUse[T, K any](r *Route, discard T, create func(*Route, K) T, k K) T {
	r.m.refMu.Lock()
	defer r.m.refMu.Unlock()
	if r.dead {
		return discard
	}
	return create(r, k)
}

// ensure returns the series p holds, or stores and returns the one create makes
// when it holds none; the caller holds m.refMu, so create runs once per series.
func ensure[T any](p *atomic.Pointer[child[T]], create func() T) T {
	if c := p.Load(); c != nil {
		return c.c
	}
	c := &child[T]{c: create()}
	p.Store(c)
	return c.c
}

// The latency histograms a stream moves, by their index in Route.latency.
const (
	latencyTTFT = iota
	latencyTPOT
	numLatencies
)

// tokenKind indexes the series of tokenSeries: the token counts, the web searches
// and the cost.
type tokenKind uint8

const (
	tokensIn tokenKind = iota
	tokensOut
	tokensCacheRead
	tokensCacheWrite
	tokensWebSearch
	tokensCost
	numTokenKinds
)

// StreamError is how a stream failed after its 200 went out: the code of the error
// event that ended it, or gateway_shutdown for one the gateway cut at shutdown.
type StreamError uint8

// The stream errors, the values of tollgate_stream_errors_total's code label.
const (
	StreamCut           StreamError = iota // upstream_stream_cut: the stream ended early
	StreamTimeout                          // upstream_timeout: a timeout ended it
	StreamBadResponse                      // upstream_bad_response: an event was not valid
	StreamUpstreamError                    // upstream_error: the upstream sent an error event
	StreamShutdown                         // gateway_shutdown: shutdown_grace ran out and the gateway cut it
	numStreamErrors
)

var streamErrorNames = [numStreamErrors]string{"upstream_stream_cut", "upstream_timeout", "upstream_bad_response", "upstream_error", "gateway_shutdown"}

// String is the error code.
func (e StreamError) String() string {
	if e >= numStreamErrors {
		return streamErrorNames[StreamCut]
	}
	return streamErrorNames[e]
}

// Shape says which series of a route label set exist from its start: those its
// requests can move. A series that can never move is still an active series to
// Prometheus, billed and queried (an embeddings endpoint has no first token, and
// an answer the gateway gave itself no tokens), so it is left out; one that can
// must exist at 0 from the start, or rate() and increase() would miss its first
// count (a counter created by its first event reaches Prometheus already holding
// it). A series a shape left out and that counts after all is created by its
// first use, off the hot path: nothing is lost. A label set asked for again with
// more (a fallback that is also a route's backend, a reload that adds a price or
// makes an endpoint stream) gets the series it lacked; those it has keep their
// counts, and stay while any lease holds it.
type Shape struct {
	// Codes are statuses, besides those Upstream brings, whose request counters
	// exist at 0 from the start: the gateway's own answers on the label set.
	Codes []int
	// Upstream says that upstream answers count on the label set: their usual
	// statuses (presetCodes) and their token counts, prompt cache reads included.
	Upstream bool
	// Stream says that its requests may stream: time to first token, time per
	// output token and the stream errors.
	Stream bool
	// CacheWrite says that its backend reports prompt cache writes (only
	// Anthropic's usage has them).
	CacheWrite bool
	// WebSearch says that its backend reports the web searches it ran (only
	// Anthropic's usage has them).
	WebSearch bool
	// Cost says that its backend has a price other than 0.
	Cost bool
}

// full is the shape of a route that has every series.
var full = Shape{Upstream: true, Stream: true, CacheWrite: true, WebSearch: true, Cost: true}

// Route returns every series of one route, held for the life of m (Lease.Route
// holds them for a configuration). backend and variant are None for requests
// the gateway answers itself; endpoint is UnknownEndpoint when the request named
// no endpoint.
func (m *Metrics) Route(endpoint, backend, variant string) *Route {
	return m.pinned.Route(endpoint, backend, variant)
}

// ShapedRoute returns the series of one route that s says its requests can move,
// held for the life of m (Lease.ShapedRoute holds them for a configuration).
func (m *Metrics) ShapedRoute(endpoint, backend, variant string, s Shape) *Route {
	return m.pinned.ShapedRoute(endpoint, backend, variant, s)
}

// newRoute creates the series every route has; the caller holds m.refMu.
func (m *Metrics) newRoute(k [3]string) *Route {
	return &Route{m: m, labels: k, duration: m.duration.WithLabelValues(k[:]...)}
}

// shape creates the series s says the route can move that it lacks; the caller
// holds m.refMu.
func (r *Route) shape(s Shape) {
	if s.Upstream {
		for _, c := range presetCodes {
			r.newCode(slot(c))
		}
		r.newToken(tokensIn)
		r.newToken(tokensOut)
		r.newToken(tokensCacheRead)
	}
	for _, c := range s.Codes {
		r.newCode(slot(c))
	}
	if s.Stream {
		r.newLatency(latencyTTFT)
		r.newLatency(latencyTPOT)
		for e := range numStreamErrors {
			r.newStreamError(e)
		}
	}
	if s.CacheWrite {
		r.newToken(tokensCacheWrite)
	}
	if s.WebSearch {
		r.newToken(tokensWebSearch)
	}
	if s.Cost {
		r.newToken(tokensCost)
	}
}

// presetCodes are the statuses whose request counters exist at 0 from the start on
// the label sets upstream answers count on (Shape.Upstream): those the gateway
// answers itself and the usual upstream ones. A counter created at its first
// request would reach Prometheus already holding it, and rate() and increase()
// count only growth between samples: an outage shorter than a scrape interval
// would never show on the dashboard or in the error-rate alert. Rarer statuses
// (Anthropic's 529) are created on first use.
var presetCodes = [...]int{200, 400, 401, 403, 404, 408, 413, 422, 429, 499, 500, 502, 503, 504}

// StreamFailed counts a stream the upstream failed after its 200 went out.
func (r *Route) StreamFailed(e StreamError) {
	if e >= numStreamErrors {
		e = StreamCut
	}
	lazy(r, &r.streamErrors[e], r.m.discard, (*Route).newStreamError, e).Inc()
}

// Done records one finished request: its status, total duration, time to
// first token and mean time per output token (a zero or negative value means
// "not applicable", e.g. for embeddings, and is not observed), its token counts
// and its cost in USD, which the caller computes from the backend's pricing
// (providers.Pricing owns the price list and the arithmetic).
func (r *Route) Done(status int, dur, ttft, tpot time.Duration, inTok, outTok int64, costUSD float64) {
	r.code(status).Inc()
	r.duration.Observe(dur.Seconds())
	if ttft > 0 {
		r.observer(latencyTTFT).Observe(ttft.Seconds())
	}
	if tpot > 0 {
		r.observer(latencyTPOT).Observe(tpot.Seconds())
	}
	if inTok > 0 {
		r.token(tokensIn).Add(float64(inTok))
	}
	if outTok > 0 {
		r.token(tokensOut).Add(float64(outTok))
	}
	if costUSD > 0 {
		r.token(tokensCost).Add(costUSD)
	}
}

// CachedInput counts the input tokens of one finished request that the upstream read
// from and wrote to its prompt cache, which Done counted among the input tokens.
func (r *Route) CachedInput(read, written int64) {
	if read > 0 {
		r.token(tokensCacheRead).Add(float64(read))
	}
	if written > 0 {
		r.token(tokensCacheWrite).Add(float64(written))
	}
}

// WebSearches counts the web searches the upstream ran for one finished request.
func (r *Route) WebSearches(n int64) {
	if n > 0 {
		r.token(tokensWebSearch).Add(float64(n))
	}
}

func (r *Route) code(status int) prometheus.Counter {
	i := slot(status)
	return lazy(r, &r.codes[i], r.m.discard, (*Route).newCode, i)
}

func (r *Route) token(k tokenKind) prometheus.Counter {
	return lazy(r, &r.tokenCounts[k], r.m.discard, (*Route).newToken, k)
}

func (r *Route) observer(i int) prometheus.Observer {
	return lazy(r, &r.latency[i], r.m.discardObs, (*Route).newLatency, i)
}

// slot is the index of status in Route.codes.
func slot(status int) int {
	if status >= minCode && status <= maxCode {
		return status - minCode
	}
	return numCodes - 1
}

// newCode returns the request counter of status slot i, created when the route
// has none; the caller holds m.refMu.
func (r *Route) newCode(i int) prometheus.Counter {
	return ensure(&r.codes[i], func() prometheus.Counter {
		return r.m.requests.WithLabelValues(r.labels[0], r.labels[1], r.labels[2], codeLabel(i))
	})
}

// newStreamError returns the counter of stream error e, created when the route
// has none; the caller holds m.refMu.
func (r *Route) newStreamError(e StreamError) prometheus.Counter {
	return ensure(&r.streamErrors[e], func() prometheus.Counter {
		return r.m.streamErrors.WithLabelValues(r.labels[0], r.labels[1], r.labels[2], e.String())
	})
}

// newLatency returns latency histogram i, created when the route has none; the
// caller holds m.refMu.
func (r *Route) newLatency(i int) prometheus.Observer {
	return ensure(&r.latency[i], func() prometheus.Observer {
		vec := r.m.ttft
		if i == latencyTPOT {
			vec = r.m.tpot
		}
		return vec.WithLabelValues(r.labels[:]...)
	})
}

// newToken returns the token or cost counter k the route shares with the
// endpoint's other routes to its backend, created when none of them has it; the
// caller holds m.refMu.
func (r *Route) newToken(k tokenKind) prometheus.Counter {
	return ensure(&r.tokenCounts[k], func() prometheus.Counter {
		if r.tokens == nil {
			r.tokens = r.m.holdTokens(r.labels[0], r.labels[1])
		}
		return r.m.tokenCounter(r.tokens, k)
	})
}

// codeLabel is the code label of status slot i.
func codeLabel(i int) string {
	if i == numCodes-1 {
		return invalidCode
	}
	return strconv.Itoa(i + minCode)
}

// Endpoint holds the per-endpoint series that exist before a route is chosen.
type Endpoint struct {
	inFlight prometheus.Gauge
	name     string
	hold
}

// Endpoint returns the series of one endpoint, held for the life of m.
func (m *Metrics) Endpoint(name string) *Endpoint {
	return m.pinned.Endpoint(name)
}

// Begin counts a request as in flight; pair every Begin with one End.
func (e *Endpoint) Begin() { e.inFlight.Inc() }

// End counts a request as no longer in flight.
func (e *Endpoint) End() { e.inFlight.Dec() }

// Rejection returns the counter of 429s from one limit of an endpoint, held for
// the life of m. limit is a name from the config (for example
// "api_key:tokens:minute"), never a key or a user.
func (m *Metrics) Rejection(endpoint, limit string) prometheus.Counter {
	return m.pinned.Rejection(endpoint, limit)
}

// rejection is the 429 counter of one (endpoint, limit).
type rejection struct {
	c      prometheus.Counter
	labels [2]string
	hold
}

// Outcome classifies one upstream attempt.
type Outcome uint8

// Outcomes of an upstream attempt, the values of the outcome label.
const (
	OutcomeOK        Outcome = iota // a 2xx (or 1xx/3xx) response
	OutcomeStatus4xx                // the upstream answered 4xx
	OutcomeStatus5xx                // the upstream answered 5xx
	OutcomeTimeout                  // no answer in time
	OutcomeRefused                  // connection refused or reset before a response
	OutcomeError                    // any other transport or protocol error
	OutcomeCanceled                 // the client went away first
	OutcomeShutdown                 // the gateway cut its stream when shutdown_grace ran out
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"ok", "status_4xx", "status_5xx", "timeout", "refused", "error", "canceled", "shutdown"}

// String returns the outcome's label value.
func (o Outcome) String() string {
	if o >= numOutcomes {
		return "error"
	}
	return outcomeNames[o]
}

// OutcomeForStatus classifies an upstream HTTP status.
func OutcomeForStatus(status int) Outcome {
	switch {
	case status >= 500:
		return OutcomeStatus5xx
	case status >= 400:
		return OutcomeStatus4xx
	case status >= 100:
		return OutcomeOK
	default:
		return OutcomeError
	}
}

// Attempt holds the pre-created outcome series of one (backend, target).
type Attempt struct {
	outcomes [numOutcomes]prometheus.Counter
	labels   [2]string
	hold
}

// Attempt returns the attempt counters of one backend target, held for the life
// of m. target is the target's label value (host:port, with its path where
// targets share it), never credentials or a query.
func (m *Metrics) Attempt(backend, target string) *Attempt {
	return m.pinned.Attempt(backend, target)
}

// Observe counts one attempt with its outcome.
func (a *Attempt) Observe(o Outcome) {
	if o >= numOutcomes {
		o = OutcomeError
	}
	a.outcomes[o].Inc()
}
