package metrics

import (
	"bytes"
	"errors"
	"io"
	"math"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/valyala/fasthttp"
)

// scrape serves the registry through Handler, as the admin listener does,
// and parses the answer with the exposition parsers.
func scrape(t testing.TB, g prometheus.Gatherer, accept string) map[string]*dto.MetricFamily {
	t.Helper()
	var ctx fasthttp.RequestCtx
	var req fasthttp.Request
	req.SetRequestURI("http://127.0.0.1/metrics")
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	ctx.Init(&req, nil, nil)
	Handler(g)(&ctx)
	if code := ctx.Response.StatusCode(); code != fasthttp.StatusOK {
		t.Fatalf("GET /metrics: status %d: %s", code, ctx.Response.Body())
	}
	body := bytes.NewReader(ctx.Response.Body())
	ct := string(ctx.Response.Header.ContentType())
	format := expfmt.ResponseFormat(map[string][]string{"Content-Type": {ct}})
	if format.FormatType() == expfmt.TypeTextPlain {
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(body)
		if err != nil {
			t.Fatalf("parse text exposition: %v", err)
		}
		return fams
	}
	fams := make(map[string]*dto.MetricFamily)
	dec := expfmt.NewDecoder(body, format)
	for {
		var mf dto.MetricFamily
		err := dec.Decode(&mf)
		if errors.Is(err, io.EOF) {
			return fams
		}
		if err != nil {
			t.Fatalf("decode %s exposition: %v", format, err)
		}
		fams[mf.GetName()] = &mf
	}
}

// series finds the metric of a family with exactly the given labels.
func series(t testing.TB, fams map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	mf, ok := fams[name]
	if !ok {
		t.Fatalf("family %s not exported", name)
	}
	for _, m := range mf.GetMetric() {
		if labelsEqual(m.GetLabel(), labels) {
			return m
		}
	}
	t.Fatalf("%s%v not exported; have %s", name, labels, describe(mf))
	return nil
}

func hasSeries(fams map[string]*dto.MetricFamily, name string, labels map[string]string) bool {
	for _, m := range fams[name].GetMetric() {
		if labelsEqual(m.GetLabel(), labels) {
			return true
		}
	}
	return false
}

func labelsEqual(got []*dto.LabelPair, want map[string]string) bool {
	if len(got) != len(want) {
		return false
	}
	for _, lp := range got {
		if v, ok := want[lp.GetName()]; !ok || v != lp.GetValue() {
			return false
		}
	}
	return true
}

func describe(mf *dto.MetricFamily) string {
	var s []string
	for _, m := range mf.GetMetric() {
		var l []string
		for _, lp := range m.GetLabel() {
			l = append(l, lp.GetName()+"="+lp.GetValue())
		}
		s = append(s, "{"+strings.Join(l, ",")+"}")
	}
	sort.Strings(s)
	return strings.Join(s, " ")
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	return math.NaN()
}

func TestExposition(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)

	stable := m.Route("chat", "llama", "stable")
	canary := m.Route("chat", "llama-v2", "canary")
	stable.Done(200, 1500*time.Millisecond, 200*time.Millisecond, 10*time.Millisecond, 1000, 100, 0.00012)
	stable.Done(200, 500*time.Millisecond, 0, 0, 10, 0, 0)
	stable.Done(502, 30*time.Millisecond, 0, 0, 0, 0, 0)
	canary.Done(200, 2*time.Second, 300*time.Millisecond, 20*time.Millisecond, 50, 60, 0.5)
	m.Route(UnknownEndpoint, None, None).Done(404, time.Millisecond, 0, 0, 0, 0, 0)

	ep := m.Endpoint("chat")
	ep.Begin()
	ep.Begin()
	ep.End()
	m.Rejection("chat", "api_key:requests:minute").Inc()
	a := m.Attempt("llama", "10.0.0.1:8000")
	a.Observe(OutcomeOK)
	a.Observe(OutcomeOK)
	a.Observe(OutcomeTimeout)
	a.Observe(OutcomeForStatus(503))
	m.SetBackendsUp([]TargetHealth{{Backend: "llama", Target: "10.0.0.1:8000", Up: true}, {Backend: "llama", Target: "10.0.0.2:8000"}})
	m.ConfigReloaded(nil)
	m.ConfigReloaded(errors.New("bad yaml"))
	m.ConfigReloaded(nil)
	m.SetLimiterDegraded(true)
	m.SetRouteWeights([]RouteWeight{{"chat", "llama", "stable", 90}, {"chat", "llama-v2", "canary", 10}})
	m.SetCanaryStates([]CanaryState{{Endpoint: "chat", State: "stepping"}})

	fams := scrape(t, reg, "text/plain")

	tests := []struct {
		name   string
		family string
		labels map[string]string
		want   float64
	}{
		{"ok requests of a route", "tollgate_requests_total", map[string]string{"endpoint": "chat", "backend": "llama", "variant": "stable", "code": "200"}, 2},
		{"failed requests of a route", "tollgate_requests_total", map[string]string{"endpoint": "chat", "backend": "llama", "variant": "stable", "code": "502"}, 1},
		{"requests of another variant", "tollgate_requests_total", map[string]string{"endpoint": "chat", "backend": "llama-v2", "variant": "canary", "code": "200"}, 1},
		{"requests answered by the gateway", "tollgate_requests_total", map[string]string{"endpoint": "unknown", "backend": "none", "variant": "none", "code": "404"}, 1},
		{"input tokens", "tollgate_tokens_total", map[string]string{"endpoint": "chat", "backend": "llama", "type": "input"}, 1010},
		{"output tokens", "tollgate_tokens_total", map[string]string{"endpoint": "chat", "backend": "llama", "type": "output"}, 100},
		{"cost from pricing", "tollgate_cost_usd_total", map[string]string{"endpoint": "chat", "backend": "llama"}, 0.00012},
		{"cost passed in", "tollgate_cost_usd_total", map[string]string{"endpoint": "chat", "backend": "llama-v2"}, 0.5},
		{"rejections", "tollgate_ratelimit_rejections_total", map[string]string{"endpoint": "chat", "limit": "api_key:requests:minute"}, 1},
		{"attempts ok", "tollgate_upstream_attempts_total", map[string]string{"backend": "llama", "target": "10.0.0.1:8000", "outcome": "ok"}, 2},
		{"attempts timeout", "tollgate_upstream_attempts_total", map[string]string{"backend": "llama", "target": "10.0.0.1:8000", "outcome": "timeout"}, 1},
		{"attempts 5xx", "tollgate_upstream_attempts_total", map[string]string{"backend": "llama", "target": "10.0.0.1:8000", "outcome": "status_5xx"}, 1},
		{"attempts never seen are zero", "tollgate_upstream_attempts_total", map[string]string{"backend": "llama", "target": "10.0.0.1:8000", "outcome": "refused"}, 0},
		{"in flight", "tollgate_in_flight_requests", map[string]string{"endpoint": "chat"}, 1},
		{"backend up", "tollgate_backend_up", map[string]string{"backend": "llama", "target": "10.0.0.1:8000"}, 1},
		{"backend down", "tollgate_backend_up", map[string]string{"backend": "llama", "target": "10.0.0.2:8000"}, 0},
		{"reloads ok", "tollgate_config_reloads_total", map[string]string{"result": "success"}, 2},
		{"reloads failed", "tollgate_config_reloads_total", map[string]string{"result": "error"}, 1},
		{"last reload applied", "tollgate_config_last_reload_successful", map[string]string{}, 1},
		{"limiter degraded", "tollgate_limiter_degraded", map[string]string{}, 1},
		{"stable weight", "tollgate_route_weight", map[string]string{"endpoint": "chat", "backend": "llama", "variant": "stable"}, 90},
		{"canary weight", "tollgate_route_weight", map[string]string{"endpoint": "chat", "backend": "llama-v2", "variant": "canary"}, 10},
		{"canary current state", "tollgate_canary_state", map[string]string{"endpoint": "chat", "state": "stepping"}, 1},
		{"canary other state", "tollgate_canary_state", map[string]string{"endpoint": "chat", "state": "rolled_back"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := value(series(t, fams, tt.family, tt.labels))
			if math.Abs(got-tt.want) > 1e-12 {
				t.Errorf("%s%v = %v, want %v", tt.family, tt.labels, got, tt.want)
			}
		})
	}

	histograms := []struct {
		name    string
		family  string
		labels  map[string]string
		count   uint64
		sum     float64
		buckets []float64
	}{
		{"request duration", "tollgate_request_duration_seconds", map[string]string{"endpoint": "chat", "backend": "llama", "variant": "stable"}, 3, 2.03, DurationBuckets},
		{"ttft skips zero", "tollgate_time_to_first_token_seconds", map[string]string{"endpoint": "chat", "backend": "llama", "variant": "stable"}, 1, 0.2, TTFTBuckets},
		{"tpot skips zero", "tollgate_time_per_output_token_seconds", map[string]string{"endpoint": "chat", "backend": "llama-v2", "variant": "canary"}, 1, 0.02, TPOTBuckets},
	}
	for _, tt := range histograms {
		t.Run(tt.name, func(t *testing.T) {
			h := series(t, fams, tt.family, tt.labels).GetHistogram()
			if h == nil {
				t.Fatalf("%s is not a histogram", tt.family)
			}
			if h.GetSampleCount() != tt.count || math.Abs(h.GetSampleSum()-tt.sum) > 1e-9 {
				t.Errorf("count, sum = %d, %v; want %d, %v", h.GetSampleCount(), h.GetSampleSum(), tt.count, tt.sum)
			}
			bs := h.GetBucket()
			// The text format spells out the +Inf bucket; the registry does not.
			if n := len(bs); n > 0 && math.IsInf(bs[n-1].GetUpperBound(), 1) {
				bs = bs[:n-1]
			}
			if len(bs) != len(tt.buckets) {
				t.Fatalf("%d classic buckets, want %d", len(bs), len(tt.buckets))
			}
			for i, b := range bs {
				if b.GetUpperBound() != tt.buckets[i] {
					t.Errorf("bucket %d: le=%v, want %v", i, b.GetUpperBound(), tt.buckets[i])
				}
			}
		})
	}

	t.Run("runtime and process collectors", func(t *testing.T) {
		for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_resident_memory_bytes"} {
			if _, ok := fams[name]; !ok {
				t.Errorf("%s not exported", name)
			}
		}
	})
}

func TestNativeHistograms(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	r := m.Route("chat", "llama", "stable")
	for i := range 100 {
		r.Done(200, time.Duration(i+1)*10*time.Millisecond, time.Duration(i+1)*time.Millisecond, time.Millisecond, 1, 1, 0)
	}
	// Native histograms travel only in the protobuf format.
	fams := scrape(t, reg, `application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited`)
	for _, name := range []string{"tollgate_request_duration_seconds", "tollgate_time_to_first_token_seconds", "tollgate_time_per_output_token_seconds"} {
		t.Run(name, func(t *testing.T) {
			h := series(t, fams, name, map[string]string{"endpoint": "chat", "backend": "llama", "variant": "stable"}).GetHistogram()
			if h.Schema == nil || len(h.GetPositiveSpan()) == 0 {
				t.Errorf("no native histogram: schema %v, %d spans", h.Schema, len(h.GetPositiveSpan()))
			}
			if len(h.GetBucket()) == 0 {
				t.Error("classic buckets missing next to the native ones")
			}
			if h.GetSampleCount() != 100 {
				t.Errorf("count %d, want 100", h.GetSampleCount())
			}
		})
	}
}

// A generation may run for minutes (a backend's default timeout is 10
// minutes): the classic buckets tell a 4-minute request from a 9-minute one
// instead of putting both past the last bucket.
func TestDurationBucketsCoverLongGenerations(t *testing.T) {
	tests := []struct {
		name     string
		latency  time.Duration
		firstLE  float64 // the smallest bucket that counts it
		beforeLE float64 // the bucket just below, which does not
	}{
		{"two and a half minutes", 150 * time.Second, 180, 120},
		{"four minutes", 4 * time.Minute, 300, 180},
		{"nine minutes", 9 * time.Minute, 600, 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			New(reg).Route("chat", "llama", "stable").Done(200, tt.latency, 0, 0, 0, 0, 0)
			fams := scrape(t, reg, "")
			h := series(t, fams, "tollgate_request_duration_seconds", map[string]string{"endpoint": "chat", "backend": "llama", "variant": "stable"}).GetHistogram()
			counts := map[float64]uint64{}
			for _, b := range h.GetBucket() {
				counts[b.GetUpperBound()] = b.GetCumulativeCount()
			}
			if c, ok := counts[tt.firstLE]; !ok || c != 1 {
				t.Errorf("le=%v counts %d (present %v), want 1", tt.firstLE, c, ok)
			}
			if c, ok := counts[tt.beforeLE]; !ok || c != 0 {
				t.Errorf("le=%v counts %d (present %v), want 0", tt.beforeLE, c, ok)
			}
		})
	}
}

func TestRouteStatusCodes(t *testing.T) {
	tests := []struct {
		name   string
		status int
		code   string
	}{
		{"success", 200, "200"},
		{"lowest valid", 100, "100"},
		{"highest valid", 599, "599"},
		{"client closed", 499, "499"},
		{"below range", 99, "invalid"},
		{"above range", 600, "invalid"},
		{"zero", 0, "invalid"},
		{"negative", -1, "invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			r := New(reg).Route("chat", "llama", "stable")
			r.Done(tt.status, time.Millisecond, 0, 0, 0, 0, 0)
			r.Done(tt.status, time.Millisecond, 0, 0, 0, 0, 0)
			fams := scrape(t, reg, "")
			got := value(series(t, fams, "tollgate_requests_total", map[string]string{"endpoint": "chat", "backend": "llama", "variant": "stable", "code": tt.code}))
			if got != 2 {
				t.Errorf("code=%q counted %v times, want 2", tt.code, got)
			}
			want := len(presetCodes)
			if !slices.Contains(presetCodes[:], tt.status) {
				want++
			}
			if n := len(fams["tollgate_requests_total"].GetMetric()); n != want {
				t.Errorf("%d series, want %d (the preset codes and this one)", n, want)
			}
		})
	}
}

// Every stream error code has its series from the start (rate() works before the
// first failure), and each failure counts on its own code.
func TestRouteStreamFailed(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := New(reg).Route("chat", "llama", "stable")
	r.StreamFailed(StreamCut)
	r.StreamFailed(StreamTimeout)
	r.StreamFailed(StreamTimeout)
	r.StreamFailed(StreamError(200)) // out of range: counted as a cut
	fams := scrape(t, reg, "")
	for code, want := range map[string]float64{"upstream_stream_cut": 2, "upstream_timeout": 2, "upstream_bad_response": 0} {
		got := value(series(t, fams, "tollgate_stream_errors_total", map[string]string{"endpoint": "chat", "backend": "llama", "variant": "stable", "code": code}))
		if got != want {
			t.Errorf("code=%s: %v, want %v", code, got, want)
		}
	}
	if allocs := testing.AllocsPerRun(100, func() { r.StreamFailed(StreamBadResponse) }); allocs != 0 {
		t.Errorf("StreamFailed allocates %v times", allocs)
	}
}

func TestRouteDoneConcurrent(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	r := m.Route("chat", "llama", "stable")
	codes := []int{200, 429, 500, 502, 200, 200}
	const goroutines, perG = 8, 500
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range perG {
				r.Done(codes[(g+i)%len(codes)], time.Millisecond, 0, 0, 1, 1, 0)
			}
		})
	}
	wg.Wait()
	fams := scrape(t, reg, "")
	total := 0.0
	for _, s := range fams["tollgate_requests_total"].GetMetric() {
		total += value(s)
	}
	if total != goroutines*perG {
		t.Errorf("counted %v requests, want %d", total, goroutines*perG)
	}
	if n := len(fams["tollgate_requests_total"].GetMetric()); n != len(presetCodes) {
		t.Errorf("%d code series, want the %d preset: %s", n, len(presetCodes), describe(fams["tollgate_requests_total"]))
	}
}

// A route's usual statuses have their request counters at 0 from its start: a
// counter created at its first request reaches Prometheus already holding it, and
// rate() and increase() never count it, so a burst of 500s shorter than a scrape
// interval would leave the error-rate panel and alert at 0 (and an endpoint without
// errors would show "No data" where its error rate is 0).
func TestRoutePresetCodes(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(reg).Route("chat", "llama", "stable")
	fams := scrape(t, reg, "")
	for _, c := range []string{"200", "429", "499", "500", "502", "503", "504"} {
		if got := value(series(t, fams, "tollgate_requests_total", map[string]string{"endpoint": "chat", "backend": "llama", "variant": "stable", "code": c})); got != 0 {
			t.Errorf("code=%s: %v before any request, want 0", c, got)
		}
	}
}

func TestNewTwiceSharesCollectors(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(reg).Route("chat", "llama", "stable").Done(200, time.Millisecond, 0, 0, 0, 0, 0)
	New(reg).Route("chat", "llama", "stable").Done(200, time.Millisecond, 0, 0, 0, 0, 0)
	second := New(reg)
	second.WatchTracing(func() TraceStats { return TraceStats{Kept: 1} })
	fams := scrape(t, reg, "")
	got := value(series(t, fams, "tollgate_requests_total", map[string]string{"endpoint": "chat", "backend": "llama", "variant": "stable", "code": "200"}))
	if got != 2 {
		t.Errorf("requests = %v, want 2 on the shared counter", got)
	}
	if got := value(series(t, fams, "tollgate_traces_total", map[string]string{"decision": "kept"})); got != 1 {
		t.Errorf("traces kept = %v, want 1 from the second Metrics' tracer", got)
	}
}

func TestNewOnDefaultRegistererKeepsRuntimeCollectors(t *testing.T) {
	// The default registry already has the Go and process collectors.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	New(reg)
}

func TestSetRouteWeights(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	m.SetRouteWeights([]RouteWeight{{"chat", "llama", "stable", 95}, {"chat", "llama-v2", "canary", 5}})
	m.SetRouteWeights([]RouteWeight{{"chat", "llama", "stable", 100}, {"embed", "bge", "bge", 100}})
	fams := scrape(t, reg, "")
	tests := []struct {
		name   string
		labels map[string]string
		want   float64
		exists bool
	}{
		{"updated route", map[string]string{"endpoint": "chat", "backend": "llama", "variant": "stable"}, 100, true},
		{"added route", map[string]string{"endpoint": "embed", "backend": "bge", "variant": "bge"}, 100, true},
		{"removed route", map[string]string{"endpoint": "chat", "backend": "llama-v2", "variant": "canary"}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := hasSeries(fams, "tollgate_route_weight", tt.labels); got != tt.exists {
				t.Fatalf("series exists = %v, want %v", got, tt.exists)
			}
			if tt.exists {
				if got := value(series(t, fams, "tollgate_route_weight", tt.labels)); got != tt.want {
					t.Errorf("weight = %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestSetCanaryStates(t *testing.T) {
	tests := []struct {
		name  string
		steps [][]CanaryState
		want  map[string]float64 // "endpoint/state" -> value; absent series are not listed
	}{
		{
			name:  "one hot over the known states",
			steps: [][]CanaryState{{{"chat", "rolled_back"}}},
			want:  map[string]float64{"chat/none": 0, "chat/stepping": 0, "chat/paused": 0, "chat/rolled_back": 1, "chat/promoted": 0},
		},
		{
			name:  "state change moves the one",
			steps: [][]CanaryState{{{"chat", "stepping"}}, {{"chat", "promoted"}}},
			want:  map[string]float64{"chat/none": 0, "chat/stepping": 0, "chat/paused": 0, "chat/rolled_back": 0, "chat/promoted": 1},
		},
		{
			name:  "endpoint without canary any more is removed",
			steps: [][]CanaryState{{{"chat", "stepping"}, {"code", "paused"}}, {{"code", "paused"}}},
			want:  map[string]float64{"code/none": 0, "code/stepping": 0, "code/paused": 1, "code/rolled_back": 0, "code/promoted": 0},
		},
		{
			name:  "unknown state gets a series until it changes",
			steps: [][]CanaryState{{{"chat", "warming"}}, {{"chat", "stepping"}}},
			want:  map[string]float64{"chat/none": 0, "chat/stepping": 1, "chat/paused": 0, "chat/rolled_back": 0, "chat/promoted": 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m := New(reg)
			for _, s := range tt.steps {
				m.SetCanaryStates(s)
			}
			got := map[string]float64{}
			for _, s := range scrape(t, reg, "")["tollgate_canary_state"].GetMetric() {
				var ep, st string
				for _, lp := range s.GetLabel() {
					switch lp.GetName() {
					case "endpoint":
						ep = lp.GetValue()
					case "state":
						st = lp.GetValue()
					}
				}
				got[ep+"/"+st] = value(s)
			}
			if len(got) != len(tt.want) {
				t.Errorf("got series %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if g, ok := got[k]; !ok || g != v {
					t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
				}
			}
		})
	}
}

func TestSetBackendsUp(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	m.SetBackendsUp([]TargetHealth{{"llama", "a:1", true}, {"llama", "b:1", true}})
	m.SetBackendUp("llama", "b:1", false)
	m.SetBackendUp("gpt", "api.openai.com:443", true)
	m.SetBackendsUp([]TargetHealth{{"llama", "b:1", false}, {"gpt", "api.openai.com:443", true}})
	fams := scrape(t, reg, "")
	tests := []struct {
		name   string
		labels map[string]string
		want   float64
		exists bool
	}{
		{"removed target", map[string]string{"backend": "llama", "target": "a:1"}, 0, false},
		{"down target", map[string]string{"backend": "llama", "target": "b:1"}, 0, true},
		{"target set singly then kept", map[string]string{"backend": "gpt", "target": "api.openai.com:443"}, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := hasSeries(fams, "tollgate_backend_up", tt.labels); got != tt.exists {
				t.Fatalf("series exists = %v, want %v", got, tt.exists)
			}
			if tt.exists {
				if got := value(series(t, fams, "tollgate_backend_up", tt.labels)); got != tt.want {
					t.Errorf("up = %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestWatchTracing(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	if _, ok := scrape(t, reg, "")["tollgate_traces_total"]; ok {
		t.Fatal("trace statistics exported before WatchTracing")
	}
	m.WatchTracing(func() TraceStats {
		return TraceStats{Kept: 3, Discarded: 7, Evicted: 1, SpansDropped: 2, ExportFailures: 4, Pending: 5}
	})
	fams := scrape(t, reg, "")
	tests := []struct {
		family string
		labels map[string]string
		want   float64
	}{
		{"tollgate_traces_total", map[string]string{"decision": "kept"}, 3},
		{"tollgate_traces_total", map[string]string{"decision": "discarded"}, 7},
		{"tollgate_traces_total", map[string]string{"decision": "evicted"}, 1},
		{"tollgate_trace_spans_dropped_total", map[string]string{}, 2},
		{"tollgate_trace_export_failures_total", map[string]string{}, 4},
		{"tollgate_traces_pending", map[string]string{}, 5},
	}
	for _, tt := range tests {
		t.Run(tt.family+describeLabels(tt.labels), func(t *testing.T) {
			if got := value(series(t, fams, tt.family, tt.labels)); got != tt.want {
				t.Errorf("= %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWatchLimiter(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	if _, ok := scrape(t, reg, "")["tollgate_limiter_checks_total"]; ok {
		t.Fatal("limiter statistics exported before WatchLimiter")
	}
	m.WatchLimiter(func() LimiterStats {
		return LimiterStats{Redis: 3, Prefetched: 7, RefusedLocally: 6, Fallback: 1, Unavailable: 2, RoundTrips: 4, DroppedSettlements: 5}
	})
	fams := scrape(t, reg, "")
	tests := []struct {
		family string
		labels map[string]string
		want   float64
	}{
		{"tollgate_limiter_checks_total", map[string]string{"answered": "redis"}, 3},
		{"tollgate_limiter_checks_total", map[string]string{"answered": "prefetched"}, 7},
		{"tollgate_limiter_checks_total", map[string]string{"answered": "refused_locally"}, 6},
		{"tollgate_limiter_checks_total", map[string]string{"answered": "fallback"}, 1},
		{"tollgate_limiter_checks_total", map[string]string{"answered": "unavailable"}, 2},
		{"tollgate_limiter_redis_round_trips_total", map[string]string{}, 4},
		{"tollgate_limiter_settlements_dropped_total", map[string]string{}, 5},
	}
	for _, tt := range tests {
		t.Run(tt.family+describeLabels(tt.labels), func(t *testing.T) {
			if got := value(series(t, fams, tt.family, tt.labels)); got != tt.want {
				t.Errorf("= %v, want %v", got, tt.want)
			}
		})
	}
}

func describeLabels(l map[string]string) string {
	var s []string
	for k, v := range l {
		s = append(s, k+"="+v)
	}
	sort.Strings(s)
	return "{" + strings.Join(s, ",") + "}"
}

func TestOutcomeForStatus(t *testing.T) {
	tests := []struct {
		status int
		want   Outcome
	}{
		{200, OutcomeOK}, {204, OutcomeOK}, {304, OutcomeOK}, {400, OutcomeStatus4xx},
		{429, OutcomeStatus4xx}, {500, OutcomeStatus5xx}, {503, OutcomeStatus5xx}, {0, OutcomeError},
	}
	for _, tt := range tests {
		t.Run(tt.want.String(), func(t *testing.T) {
			if got := OutcomeForStatus(tt.status); got != tt.want {
				t.Errorf("OutcomeForStatus(%d) = %v, want %v", tt.status, got, tt.want)
			}
		})
	}
}

// registeredNames lists the metric families the package registers, read from
// the collectors' descriptors so that vectors without children count too.
func registeredNames(t testing.TB) map[string]bool {
	t.Helper()
	rec := &recordingRegisterer{names: map[string]bool{}}
	New(rec)
	if len(rec.names) == 0 {
		t.Fatal("no descriptors recorded")
	}
	return rec.names
}

type recordingRegisterer struct{ names map[string]bool }

var fqNameRE = regexp.MustCompile(`fqName: "([^"]+)"`)

func (r *recordingRegisterer) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 256)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		if m := fqNameRE.FindStringSubmatch(d.String()); m != nil {
			r.names[m[1]] = true
		}
	}
	return nil
}

func (r *recordingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c)
	}
}

func (r *recordingRegisterer) Unregister(prometheus.Collector) bool { return false }

func TestRegisteredNames(t *testing.T) {
	names := registeredNames(t)
	want := []string{
		"tollgate_requests_total", "tollgate_request_duration_seconds", "tollgate_time_to_first_token_seconds",
		"tollgate_time_per_output_token_seconds", "tollgate_tokens_total", "tollgate_cost_usd_total",
		"tollgate_ratelimit_rejections_total", "tollgate_upstream_attempts_total", "tollgate_in_flight_requests",
		"tollgate_backend_up", "tollgate_config_reloads_total", "tollgate_limiter_degraded",
		"tollgate_route_weight", "tollgate_canary_state", "go_goroutines", "process_resident_memory_bytes",
		"tollgate_limiter_checks_total", "tollgate_limiter_redis_round_trips_total",
		"tollgate_limiter_settlements_dropped_total", "tollgate_stream_errors_total",
		"tollgate_cached_input_tokens_total", "tollgate_web_search_requests_total",
	}
	for _, n := range want {
		t.Run(n, func(t *testing.T) {
			if !names[n] {
				t.Errorf("%s not registered", n)
			}
		})
	}
}
