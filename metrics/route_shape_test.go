package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// routeFamilies are the families a route label set has series in, with how many
// series of each a route with every series has before any request (a histogram's
// label set counts once).
var routeFamilies = []struct {
	name string
	full int
}{
	{"tollgate_requests_total", len(presetCodes)},
	{"tollgate_request_duration_seconds", 1},
	{"tollgate_time_to_first_token_seconds", 1},
	{"tollgate_time_per_output_token_seconds", 1},
	{"tollgate_stream_errors_total", int(numStreamErrors)},
	{"tollgate_tokens_total", 2},
	{"tollgate_cached_input_tokens_total", 2},
	{"tollgate_web_search_requests_total", 1},
	{"tollgate_cost_usd_total", 1},
}

// A route label set has at 0 from its start only the series its shape says its
// requests can move: an answer the gateway gives itself counts no token and no
// stream, an embeddings route streams never, a backend without prices costs nothing
// and only Anthropic's reports cache writes and web searches.
func TestShapedRouteHasOnlyItsSeries(t *testing.T) {
	tests := []struct {
		name  string
		shape Shape
		want  map[string]int // by family; a family left out has no series
	}{
		{"own answers", Shape{Codes: []int{400, 429, 503}}, map[string]int{
			"tollgate_requests_total": 3, "tollgate_request_duration_seconds": 1,
		}},
		{"upstream, no stream", Shape{Upstream: true}, map[string]int{
			"tollgate_requests_total": len(presetCodes), "tollgate_request_duration_seconds": 1,
			"tollgate_tokens_total": 2, "tollgate_cached_input_tokens_total": 1,
		}},
		{"upstream codes and own ones", Shape{Upstream: true, Codes: []int{400, 529}}, map[string]int{
			"tollgate_requests_total": len(presetCodes) + 1, "tollgate_request_duration_seconds": 1,
			"tollgate_tokens_total": 2, "tollgate_cached_input_tokens_total": 1,
		}},
		{"streams", Shape{Upstream: true, Stream: true}, map[string]int{
			"tollgate_requests_total": len(presetCodes), "tollgate_request_duration_seconds": 1,
			"tollgate_time_to_first_token_seconds": 1, "tollgate_time_per_output_token_seconds": 1,
			"tollgate_stream_errors_total": int(numStreamErrors), "tollgate_tokens_total": 2,
			"tollgate_cached_input_tokens_total": 1,
		}},
		{"cache writes and cost", Shape{Upstream: true, CacheWrite: true, Cost: true}, map[string]int{
			"tollgate_requests_total": len(presetCodes), "tollgate_request_duration_seconds": 1,
			"tollgate_tokens_total": 2, "tollgate_cached_input_tokens_total": 2, "tollgate_cost_usd_total": 1,
		}},
		{"web searches", Shape{Upstream: true, WebSearch: true}, map[string]int{
			"tollgate_requests_total": len(presetCodes), "tollgate_request_duration_seconds": 1,
			"tollgate_tokens_total": 2, "tollgate_cached_input_tokens_total": 1, "tollgate_web_search_requests_total": 1,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			New(reg).ShapedRoute("chat", "llama", "stable", tt.shape)
			fams := scrape(t, reg, "")
			for _, f := range routeFamilies {
				if n := countWith(fams, f.name, nil); n != tt.want[f.name] {
					t.Errorf("%s: %d series, want %d: %s", f.name, n, tt.want[f.name], describe(fams[f.name]))
				}
			}
		})
	}
	reg := prometheus.NewRegistry()
	New(reg).Route("chat", "llama", "stable")
	fams := scrape(t, reg, "")
	for _, f := range routeFamilies {
		if n := countWith(fams, f.name, nil); n != f.full {
			t.Errorf("Route: %s has %d series, want %d (every series)", f.name, n, f.full)
		}
	}
}

// What a shape left out and counts after all (a status, a token, a stream no config
// expected there) is counted: its series is created by its first use, and goes with
// the route's when the last lease lets go of it.
func TestShapedRouteCountsWhatItsShapeLeftOut(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	clock := withClock(m)
	l := m.Lease()
	r := l.ShapedRoute("chat", None, None, Shape{Codes: []int{429}})
	for range 2 {
		r.Done(502, time.Second, 100*time.Millisecond, 10*time.Millisecond, 30, 20, 0.25)
		r.CachedInput(5, 3)
		r.WebSearches(2)
		r.StreamFailed(StreamTimeout)
	}
	fams := scrape(t, reg, "")
	labels := map[string]string{"endpoint": "chat", "backend": None, "variant": None}
	with := func(k, v string) map[string]string {
		w := map[string]string{k: v}
		for lk, lv := range labels {
			w[lk] = lv
		}
		return w
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"tollgate_requests_total", with("code", "502"), 2},
		{"tollgate_requests_total", with("code", "429"), 0},
		{"tollgate_stream_errors_total", with("code", "upstream_timeout"), 2},
		{"tollgate_tokens_total", map[string]string{"endpoint": "chat", "backend": None, "type": "input"}, 60},
		{"tollgate_tokens_total", map[string]string{"endpoint": "chat", "backend": None, "type": "output"}, 40},
		{"tollgate_cached_input_tokens_total", map[string]string{"endpoint": "chat", "backend": None, "type": "cache_read"}, 10},
		{"tollgate_cached_input_tokens_total", map[string]string{"endpoint": "chat", "backend": None, "type": "cache_write"}, 6},
		{"tollgate_cost_usd_total", map[string]string{"endpoint": "chat", "backend": None}, 0.5},
		{"tollgate_web_search_requests_total", map[string]string{"endpoint": "chat", "backend": None}, 4},
	} {
		if got := value(series(t, fams, c.name, c.labels)); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	for _, name := range []string{"tollgate_time_to_first_token_seconds", "tollgate_time_per_output_token_seconds"} {
		if got := series(t, fams, name, labels).GetHistogram().GetSampleCount(); got != 2 {
			t.Errorf("%s observed %d times, want 2", name, got)
		}
	}
	if n := countWith(fams, "tollgate_stream_errors_total", nil); n != 1 {
		t.Errorf("%d stream error series, want the 1 used: %s", n, describe(fams["tollgate_stream_errors_total"]))
	}
	l.Release()
	clock.t = clock.t.Add(removedKeep)
	scrape(t, reg, "")
	fams = scrape(t, reg, "")
	for _, f := range routeFamilies {
		if n := countWith(fams, f.name, nil); n != 0 {
			t.Errorf("%s: %d series after the route's lease let go, want none: %s", f.name, n, describe(fams[f.name]))
		}
	}
}

// A label set asked for again with a larger shape (a reload making a backend a
// fallback, an endpoint a chat one) gets the series it lacked, at 0, and those it had
// keep their counts, by the old lease's release too; a smaller shape takes nothing
// away while the label set is held.
func TestShapedRouteGrowsKeepingCounts(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	withClock(m)
	old := m.Lease()
	refusals := old.ShapedRoute("chat", "claude", None, Shape{Codes: []int{400, 503}})
	refusals.Done(400, time.Millisecond, 0, 0, 0, 0, 0)
	refusals.Done(503, time.Millisecond, 0, 0, 0, 0, 0)
	next := m.Lease()
	fallback := next.ShapedRoute("chat", "claude", None, full)
	if fallback != refusals {
		t.Fatal("two shapes of one label set got two routes")
	}
	old.Release()
	fallback.Done(200, time.Second, time.Millisecond, time.Millisecond, 7, 3, 0)
	again := m.Lease()
	again.ShapedRoute("chat", "claude", None, Shape{Codes: []int{400}})
	fams := scrape(t, reg, "")
	labels := map[string]string{"endpoint": "chat", "backend": "claude", "variant": None}
	for code, want := range map[string]float64{"400": 1, "503": 1, "200": 1, "502": 0} {
		l := map[string]string{"code": code}
		for k, v := range labels {
			l[k] = v
		}
		if got := value(series(t, fams, "tollgate_requests_total", l)); got != want {
			t.Errorf("code=%s: %v, want %v", code, got, want)
		}
	}
	for _, f := range routeFamilies {
		if n := countWith(fams, f.name, nil); n != f.full {
			t.Errorf("%s: %d series, want every series of the larger shape (%d)", f.name, n, f.full)
		}
	}
	if got := value(series(t, fams, "tollgate_tokens_total", map[string]string{"endpoint": "chat", "backend": "claude", "type": "input"})); got != 7 {
		t.Errorf("input tokens %v, want 7", got)
	}
	next.Release()
	again.Release()
}

// Token and cost series are shared by an endpoint's routes to one backend: a route
// whose shape lacks one shares that of another route that has it once it first
// counts there, rather than a second series.
func TestShapedRoutesShareTokenSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	priced := m.ShapedRoute("chat", "gpt", "stable", Shape{Upstream: true, Cost: true})
	other := m.ShapedRoute("chat", "gpt", "canary", Shape{Upstream: true})
	priced.Done(200, time.Second, 0, 0, 1, 1, 0.25)
	other.Done(200, time.Second, 0, 0, 1, 1, 0.5)
	fams := scrape(t, reg, "")
	if got := value(series(t, fams, "tollgate_cost_usd_total", map[string]string{"endpoint": "chat", "backend": "gpt"})); got != 0.75 {
		t.Errorf("cost of (chat, gpt) = %v, want 0.75 from both routes", got)
	}
	if n := countWith(fams, "tollgate_tokens_total", nil); n != 2 {
		t.Errorf("%d token series, want input and output once: %s", n, describe(fams["tollgate_tokens_total"]))
	}
}
