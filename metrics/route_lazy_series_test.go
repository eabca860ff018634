package metrics

import (
	"bufio"
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/valyala/fasthttp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// ownAnswers is the shape of a route the gateway answers itself: of the series
// created by first use, it has none.
var ownAnswers = Shape{Codes: []int{429}}

// amount is what a series holds: a counter's value, a histogram's observations.
func amount(m *dto.Metric) float64 {
	if h := m.GetHistogram(); h != nil {
		return float64(h.GetSampleCount())
	}
	return value(m)
}

// discarded is what the counts of removed routes added to m's discard series:
// counter increments and observations.
func discarded(t *testing.T, m *Metrics) (counts float64, observations uint64) {
	t.Helper()
	var c, o dto.Metric
	if err := m.discard.Write(&c); err != nil {
		t.Fatal(err)
	}
	if err := m.discardObs.(prometheus.Metric).Write(&o); err != nil {
		t.Fatal(err)
	}
	return c.GetCounter().GetValue(), o.GetHistogram().GetSampleCount()
}

// lazyUses are the counts of a route that find their series missing on a route of
// shape ownAnswers, with the series each lands in, how much one count adds there,
// how many series of the family the route then has, and the route's handle on it.
var lazyUses = []struct {
	name   string
	use    func(r *Route)
	family string
	labels map[string]string
	each   float64
	series int
	child  func(r *Route) any
}{
	{"status first seen", func(r *Route) { r.Done(502, time.Millisecond, 0, 0, 0, 0, 0) },
		"tollgate_requests_total", map[string]string{"endpoint": "chat", "backend": None, "variant": None, "code": "502"}, 1, 2,
		func(r *Route) any { return loaded(r.codes[slot(502)].Load()) }},
	{"status outside 100..599", func(r *Route) { r.Done(0, time.Millisecond, 0, 0, 0, 0, 0) },
		"tollgate_requests_total", map[string]string{"endpoint": "chat", "backend": None, "variant": None, "code": invalidCode}, 1, 2,
		func(r *Route) any { return loaded(r.codes[slot(0)].Load()) }},
	{"input tokens", func(r *Route) { r.Done(429, time.Millisecond, 0, 0, 3, 0, 0) },
		"tollgate_tokens_total", map[string]string{"endpoint": "chat", "backend": None, "type": "input"}, 3, 1,
		func(r *Route) any { return loaded(r.tokenCounts[tokensIn].Load()) }},
	{"output tokens", func(r *Route) { r.Done(429, time.Millisecond, 0, 0, 0, 2, 0) },
		"tollgate_tokens_total", map[string]string{"endpoint": "chat", "backend": None, "type": "output"}, 2, 1,
		func(r *Route) any { return loaded(r.tokenCounts[tokensOut].Load()) }},
	{"cost", func(r *Route) { r.Done(429, time.Millisecond, 0, 0, 0, 0, 0.25) },
		"tollgate_cost_usd_total", map[string]string{"endpoint": "chat", "backend": None}, 0.25, 1,
		func(r *Route) any { return loaded(r.tokenCounts[tokensCost].Load()) }},
	{"cache reads", func(r *Route) { r.CachedInput(4, 0) },
		"tollgate_cached_input_tokens_total", map[string]string{"endpoint": "chat", "backend": None, "type": "cache_read"}, 4, 1,
		func(r *Route) any { return loaded(r.tokenCounts[tokensCacheRead].Load()) }},
	{"cache writes", func(r *Route) { r.CachedInput(0, 5) },
		"tollgate_cached_input_tokens_total", map[string]string{"endpoint": "chat", "backend": None, "type": "cache_write"}, 5, 1,
		func(r *Route) any { return loaded(r.tokenCounts[tokensCacheWrite].Load()) }},
	{"web searches", func(r *Route) { r.WebSearches(3) },
		"tollgate_web_search_requests_total", map[string]string{"endpoint": "chat", "backend": None}, 3, 1,
		func(r *Route) any { return loaded(r.tokenCounts[tokensWebSearch].Load()) }},
	{"time to first token", func(r *Route) { r.Done(429, time.Second, 10*time.Millisecond, 0, 0, 0, 0) },
		"tollgate_time_to_first_token_seconds", map[string]string{"endpoint": "chat", "backend": None, "variant": None}, 1, 1,
		func(r *Route) any { return loaded(r.latency[latencyTTFT].Load()) }},
	{"time per output token", func(r *Route) { r.Done(429, time.Second, 0, time.Millisecond, 0, 0, 0) },
		"tollgate_time_per_output_token_seconds", map[string]string{"endpoint": "chat", "backend": None, "variant": None}, 1, 1,
		func(r *Route) any { return loaded(r.latency[latencyTPOT].Load()) }},
	{"stream error", func(r *Route) { r.StreamFailed(StreamUpstreamError) },
		"tollgate_stream_errors_total", map[string]string{"endpoint": "chat", "backend": None, "variant": None, "code": "upstream_error"}, 1, 1,
		func(r *Route) any { return loaded(r.streamErrors[StreamUpstreamError].Load()) }},
}

// atOnce runs f(g) in n goroutines, g from 0 to n-1, let go together, and during,
// when not nil, while they run; it returns when all are done.
func atOnce(n int, during func(), f func(g int)) {
	start := make(chan struct{})
	var wg sync.WaitGroup
	for g := range n {
		wg.Go(func() {
			<-start
			f(g)
		})
	}
	close(start)
	if during != nil {
		during()
	}
	wg.Wait()
}

// Many requests finding a series missing at once (a burst of a status no config
// expected on the route) create it once: every one of them counts in the one series
// the route keeps, and none is lost to a second series or to a handle replaced under
// it.
func TestLazySeriesFirstUsesAtOnceMakeOneSeries(t *testing.T) {
	const goroutines, perG = 64, 20
	for _, tt := range lazyUses {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m := New(reg)
			r := m.ShapedRoute("chat", None, None, ownAnswers)
			if tt.child(r) != nil {
				t.Fatal("the series exists before its first use")
			}
			seen := make([]any, goroutines)
			atOnce(goroutines, nil, func(g int) {
				tt.use(r)
				seen[g] = tt.child(r)
				for range perG - 1 {
					tt.use(r)
				}
			})
			final := tt.child(r)
			if final == nil {
				t.Fatal("no series after its first uses")
			}
			for g, c := range seen {
				if c != final {
					t.Fatalf("goroutine %d counted in a series the route no longer holds", g)
				}
			}
			fams := scrape(t, reg, "")
			if got, want := amount(series(t, fams, tt.family, tt.labels)), tt.each*goroutines*perG; got != want {
				t.Errorf("%s%v holds %v, want %v: a count was lost", tt.family, tt.labels, got, want)
			}
			if n := countWith(fams, tt.family, nil); n != tt.series {
				t.Errorf("%s: %d series, want %d: %s", tt.family, n, tt.series, describe(fams[tt.family]))
			}
			if c, o := discarded(t, m); c != 0 || o != 0 {
				t.Errorf("a live route discarded %v counts and %d observations", c, o)
			}
		})
	}
}

// loaded is p, a route's handle on a series, or nil when the route has none.
func loaded[P comparable](p P) any {
	var none P
	if p == none {
		return nil
	}
	return p
}

// A count on a route whose series were removed finds its series missing and goes to
// the discard series: it creates none, the first use of each kind at once from many
// requests included, and the series removed stay removed.
func TestLazySeriesOfRemovedRouteGoToDiscard(t *testing.T) {
	const goroutines, perG = 32, 10
	for _, tt := range lazyUses {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m := New(reg)
			withClock(m)
			l := m.Lease()
			r := l.ShapedRoute("chat", None, None, ownAnswers)
			l.Release()
			c0, o0 := discarded(t, m)
			atOnce(goroutines, nil, func(int) {
				for range perG {
					tt.use(r)
				}
			})
			if tt.child(r) != nil {
				t.Error("a removed route made a series for its first use")
			}
			fams := scrape(t, reg, "")
			for _, f := range routeFamilies {
				if n := countWith(fams, f.name, nil); n != 0 {
					t.Errorf("%s: %d series from a removed route, want none: %s", f.name, n, describe(fams[f.name]))
				}
			}
			c, o := discarded(t, m)
			got := c - c0
			if strings.HasSuffix(tt.family, "_seconds") {
				got = float64(o - o0)
			}
			if want := tt.each * goroutines * perG; got != want {
				t.Errorf("discard series counted %v, want %v", got, want)
			}
		})
	}
}

// A release racing the first uses of every kind of series leaves none of them
// behind once the route's series are gone: each lands in a series that goes with
// the route's, or in the discard series.
func TestLazySeriesFirstUsesRacingRelease(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	clock := withClock(m)
	l := m.Lease()
	r := l.ShapedRoute("chat", None, None, ownAnswers)
	atOnce(16, l.Release, func(int) {
		for range 20 {
			for _, u := range lazyUses {
				u.use(r)
			}
		}
	})
	clock.t = clock.t.Add(removedKeep)
	scrape(t, reg, "")
	fams := scrape(t, reg, "")
	for _, f := range routeFamilies {
		if n := countWith(fams, f.name, nil); n != 0 {
			t.Errorf("%s: %d series left after the route's lease let go, want none: %s", f.name, n, describe(fams[f.name]))
		}
	}
}

// lazySeriesScenario counts on routes of every shape the series they were made
// with, those made by a first use (a token or stream on an own answer, a rare
// status, cost on a route without a price sharing the series of one with it) and,
// on a removed route, counts that make none.
func lazySeriesScenario(m *Metrics) {
	withClock(m)
	l := m.Lease()
	chat := l.Route("chat", "llama", "stable")
	chat.Done(200, 1500*time.Millisecond, 200*time.Millisecond, 10*time.Millisecond, 1000, 100, 0.5)
	chat.Done(529, 30*time.Millisecond, 0, 0, 0, 0, 0)
	chat.Done(-1, time.Millisecond, 0, 0, 0, 0, 0)
	chat.CachedInput(768, 32)
	chat.WebSearches(2)
	chat.StreamFailed(StreamTimeout)
	chat.StreamFailed(StreamError(200))

	canary := l.ShapedRoute("chat", "llama", "canary", Shape{Upstream: true})
	canary.Done(200, 2*time.Second, 0, 0, 50, 60, 0.25)

	own := l.ShapedRoute("chat", None, None, ownAnswers)
	own.Done(429, time.Millisecond, 0, 0, 0, 0, 0)
	own.Done(502, time.Second, 300*time.Millisecond, 20*time.Millisecond, 7, 3, 0.125)
	own.CachedInput(5, 2)
	own.WebSearches(1)
	own.StreamFailed(StreamShutdown)

	embed := l.ShapedRoute("embed", "bge", "stable", Shape{Upstream: true})
	embed.Done(200, 40*time.Millisecond, 0, 0, 12, 0, 0)
	embed.StreamFailed(StreamBadResponse)

	old := m.Lease()
	gone := old.ShapedRoute("old", "llama", "v0", ownAnswers)
	old.Release()
	gone.Done(503, time.Second, time.Millisecond, time.Millisecond, 1, 1, 1)
	gone.CachedInput(1, 1)
	gone.WebSearches(1)
	gone.StreamFailed(StreamCut)
}

// routeExposition is the text exposition of the families route label sets have
// series in, as the admin listener serves it.
func routeExposition(t *testing.T, reg prometheus.Gatherer) []byte {
	t.Helper()
	var ctx fasthttp.RequestCtx
	var req fasthttp.Request
	req.SetRequestURI("http://127.0.0.1/metrics")
	ctx.Init(&req, nil, nil)
	Handler(reg)(&ctx)
	if code := ctx.Response.StatusCode(); code != fasthttp.StatusOK {
		t.Fatalf("GET /metrics: status %d: %s", code, ctx.Response.Body())
	}
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(ctx.Response.Body()))
	for sc.Scan() {
		line := sc.Text()
		name := strings.TrimPrefix(strings.TrimPrefix(line, "# HELP "), "# TYPE ")
		for _, f := range routeFamilies {
			if strings.HasPrefix(name, f.name) {
				out.WriteString(line)
				out.WriteByte('\n')
				break
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// The series of routes, whether their shape or their first use made them, are
// exposed as testdata/route_lazy_series.txt says: names, labels, values and order.
func TestLazySeriesExposition(t *testing.T) {
	reg := prometheus.NewRegistry()
	lazySeriesScenario(New(reg))
	got := routeExposition(t, reg)
	golden := filepath.Join("testdata", "route_lazy_series.txt")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestLazySeriesExposition -update to write it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("exposition differs from %s:\n%s", golden, lineDiff(string(want), string(got)))
	}
}

// lineDiff lists the lines only want has (-) and only got has (+), in order.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	inW, inG := make(map[string]int), make(map[string]int)
	for _, l := range w {
		inW[l]++
	}
	for _, l := range g {
		inG[l]++
	}
	var b strings.Builder
	for _, l := range w {
		if inG[l] == 0 {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range g {
		if inW[l] == 0 {
			b.WriteString("+ " + l + "\n")
		}
	}
	if b.Len() == 0 {
		return "the same lines in another order"
	}
	return b.String()
}

func BenchmarkRouteCachedInputAndStreamFailed(b *testing.B) {
	r := New(prometheus.NewRegistry()).Route("chat", "llama", "stable")
	b.ReportAllocs()
	for b.Loop() {
		r.CachedInput(384, 64)
		r.StreamFailed(StreamTimeout)
	}
}

// An own answer's series made by their first use cost what preset ones do.
func BenchmarkOwnAnswerRouteDoneFirstUsedSeries(b *testing.B) {
	r := New(prometheus.NewRegistry()).ShapedRoute("chat", None, None, ownAnswers)
	r.Done(502, time.Second, time.Millisecond, time.Millisecond, 1, 1, 1)
	b.ReportAllocs()
	for b.Loop() {
		r.Done(502, time.Second, time.Millisecond, time.Millisecond, 2, 2, 0.5)
	}
}
