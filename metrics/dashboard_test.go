package metrics

import (
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"gopkg.in/yaml.v3"
)

const (
	dashboardPath = "../configs/grafana/tollgate.json"
	alertsPath    = "../configs/prometheus/alerts.yml"
)

type dashboard struct {
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type variable struct {
	Type       string          `json:"type"`
	Name       string          `json:"name"`
	Query      json.RawMessage `json:"query"`
	Definition string          `json:"definition"`
	Datasource *datasourceRef  `json:"datasource"`
	IncludeAll bool            `json:"includeAll"`
	AllValue   string          `json:"allValue"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource *datasourceRef           `json:"datasource"`
	GridPos    struct{ X, Y, W, H int } `json:"gridPos"`
	Targets    []panelTarget            `json:"targets"`
	Panels     []panel                  `json:"panels"` // a collapsed row's panels
	Field      struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
		Overrides []struct {
			Matcher struct {
				ID      string `json:"id"`
				Options any    `json:"options"`
			} `json:"matcher"`
			Properties []struct {
				ID    string `json:"id"`
				Value any    `json:"value"`
			} `json:"properties"`
		} `json:"overrides"`
	} `json:"fieldConfig"`
}

// unitOf is the unit the panel draws its target refID in: an override's for that
// refId, else the panel's default.
func (p *panel) unitOf(refID string) string {
	unit := p.Field.Defaults.Unit
	for _, o := range p.Field.Overrides {
		if o.Matcher.ID == "byFrameRefID" && o.Matcher.Options == refID {
			for _, pr := range o.Properties {
				if pr.ID == "unit" {
					unit, _ = pr.Value.(string)
				}
			}
		}
	}
	return unit
}

type panelTarget struct {
	RefID        string         `json:"refId"`
	Expr         string         `json:"expr"`
	LegendFormat string         `json:"legendFormat"`
	Datasource   *datasourceRef `json:"datasource"`
}

func loadDashboard(t testing.TB) *dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	return &d
}

// allPanels flattens rows, collapsed or not.
func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

func panelByTitle(t testing.TB, d *dashboard, title string) panel {
	t.Helper()
	for _, p := range allPanels(d.Panels) {
		if p.Title == title {
			return p
		}
	}
	t.Fatalf("dashboard has no panel %q", title)
	return panel{}
}

func (v variable) queryString() string {
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var q struct {
		Query string `json:"query"`
	}
	_ = json.Unmarshal(v.Query, &q)
	return q.Query
}

const datasourceUID = "${datasource}"

func TestDashboardStructure(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" || d.SchemaVersion == 0 {
		t.Errorf("uid %q, title %q, schemaVersion %d: all are required", d.UID, d.Title, d.SchemaVersion)
	}

	t.Run("datasource variable", func(t *testing.T) {
		for _, v := range d.Templating.List {
			if v.Type == "datasource" && v.Name == "datasource" && v.queryString() == "prometheus" {
				return
			}
		}
		t.Error("no datasource variable named datasource for Prometheus")
	})

	for _, name := range []string{"endpoint", "backend", "variant"} {
		t.Run("variable "+name, func(t *testing.T) {
			for _, v := range d.Templating.List {
				if v.Name != name {
					continue
				}
				if v.Type != "query" || v.Datasource == nil || v.Datasource.UID != datasourceUID {
					t.Errorf("type %q datasource %+v: want a query on %s", v.Type, v.Datasource, datasourceUID)
				}
				if !v.IncludeAll || v.AllValue != ".*" {
					t.Errorf("includeAll %v allValue %q: the All option must match every value", v.IncludeAll, v.AllValue)
				}
				if !strings.Contains(v.queryString(), "label_values(") || !strings.Contains(v.queryString(), ", "+name+")") {
					t.Errorf("query %q does not list %s values", v.queryString(), name)
				}
				return
			}
			t.Error("missing")
		})
	}

	t.Run("unique panel ids", func(t *testing.T) {
		seen := map[int]string{}
		for _, p := range allPanels(d.Panels) {
			if p.ID <= 0 {
				t.Errorf("panel %q has id %d", p.Title, p.ID)
			}
			if prev, ok := seen[p.ID]; ok {
				t.Errorf("panels %q and %q share id %d", prev, p.Title, p.ID)
			}
			seen[p.ID] = p.Title
		}
	})

	t.Run("layout", func(t *testing.T) {
		ps := allPanels(d.Panels)
		for i, p := range ps {
			g := p.GridPos
			if g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
				t.Errorf("panel %q has gridPos %+v outside the 24-column grid", p.Title, g)
			}
			for _, q := range ps[i+1:] {
				h := q.GridPos
				if g.X < h.X+h.W && h.X < g.X+g.W && g.Y < h.Y+h.H && h.Y < g.Y+g.H {
					t.Errorf("panels %q and %q overlap", p.Title, q.Title)
				}
			}
		}
	})

	for _, p := range allPanels(d.Panels) {
		if p.Type == "row" {
			continue
		}
		t.Run("panel "+p.Title, func(t *testing.T) {
			if p.Datasource == nil || p.Datasource.UID != datasourceUID {
				t.Errorf("datasource %+v, want uid %s", p.Datasource, datasourceUID)
			}
			if len(p.Targets) == 0 {
				t.Fatal("no query")
			}
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("target %s has no expression", tg.RefID)
				}
				if tg.RefID == "" || refs[tg.RefID] {
					t.Errorf("target refId %q missing or repeated", tg.RefID)
				}
				refs[tg.RefID] = true
				if tg.Datasource != nil && tg.Datasource.UID != datasourceUID {
					t.Errorf("target %s datasource %+v", tg.RefID, tg.Datasource)
				}
			}
		})
	}

	t.Run("required panels", func(t *testing.T) {
		for _, title := range []string{
			"Request rate", "Error rate", "Request latency", "Time to first token", "Tokens per second",
			"Cost per hour", "Limit rejections", "Route weights", "Canary state", "Backend health",
			"vLLM requests waiting", "vLLM KV cache usage",
		} {
			panelByTitle(t, d, title)
		}
		var p50, p95, p99 bool
		for _, tg := range panelByTitle(t, d, "Request latency").Targets {
			p50 = p50 || tg.LegendFormat == "p50"
			p95 = p95 || tg.LegendFormat == "p95"
			p99 = p99 || tg.LegendFormat == "p99"
		}
		if !p50 || !p95 || !p99 {
			t.Errorf("latency panel lacks a percentile: p50 %v p95 %v p99 %v", p50, p95, p99)
		}
	})
}

// populate touches every collector so that each family has a series.
func populate(m *Metrics) {
	m.Route("chat", "llama", "stable").Done(200, time.Second, time.Millisecond, time.Millisecond, 1, 1, 0.1)
	m.Endpoint("chat").Begin()
	m.Rejection("chat", "api_key:requests:minute").Inc()
	m.Attempt("llama", "10.0.0.1:8000").Observe(OutcomeOK)
	m.SetBackendsUp([]TargetHealth{{"llama", "10.0.0.1:8000", true}})
	m.SetRouteWeights([]RouteWeight{{"chat", "llama", "stable", 100}})
	m.SetCanaryStates([]CanaryState{{"chat", "stepping"}})
	m.SetLimiterDegraded(false)
	m.ConfigReloaded(nil)
	m.WatchTracing(func() TraceStats { return TraceStats{} })
	m.WatchLimiter(func() LimiterStats { return LimiterStats{} })
	m.Cache("embed").Request(CacheHit)
	m.CacheRemote(m.Cache("embed"))
	m.pinned.Key("team-a", true).Done(1, 1, 0.1)
	m.SetKeyExpiries([]KeyExpiry{{"team-a", time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC)}})
	m.SetKeysRevoked([]string{"team-a"})
	m.WatchBackends(func() []BackendLoad {
		return []BackendLoad{{Backend: "llama", Targets: []TargetLoad{{"10.0.0.1:8000", 1}}, Queued: true, Waiting: 2, Tenants: 1,
			Outcomes: []OutcomeCount{{"served", 3}}, WaitBounds: []float64{0.1}, WaitCounts: []uint64{2, 3}, WaitSum: 0.5}}
	})
}

// exportedFamilies returns every family the gateway exports, with its type.
func exportedFamilies(t testing.TB) map[string]dto.MetricType {
	t.Helper()
	reg := prometheus.NewRegistry()
	populate(New(reg))
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]dto.MetricType, len(fams))
	for _, f := range fams {
		out[f.GetName()] = f.GetType()
	}
	for name := range registeredNames(t) {
		if _, ok := out[name]; !ok {
			t.Fatalf("populate leaves %s without a series; extend it", name)
		}
	}
	return out
}

var (
	promqlStrings   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promqlMatchers  = regexp.MustCompile(`\{[^{}]*\}`)
	promqlRanges    = regexp.MustCompile(`\[[^\]]*\]`)
	promqlGroupings = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promqlIdent     = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	labelValuesArg  = regexp.MustCompile(`label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{,]`)
	promqlKeywords  = map[string]bool{
		"and": true, "or": true, "unless": true, "bool": true, "offset": true, "by": true, "without": true,
		"on": true, "ignoring": true, "group_left": true, "group_right": true, "inf": true, "nan": true,
		"atan2": true, "start": true, "end": true,
	}
)

// metricNames lists the metric names a PromQL expression selects. It is a
// careful scan rather than a parser: strings, label matchers, ranges and
// grouping clauses are blanked first, then every identifier that is not a
// function call, keyword, number part or Grafana variable is a metric.
func metricNames(expr string) []string {
	s := promqlStrings.ReplaceAllString(expr, `""`)
	s = promqlMatchers.ReplaceAllString(s, "{}")
	s = promqlRanges.ReplaceAllString(s, "[]")
	s = promqlGroupings.ReplaceAllString(s, "")
	var names []string
	for _, loc := range promqlIdent.FindAllStringIndex(s, -1) {
		name := s[loc[0]:loc[1]]
		if loc[0] > 0 {
			if prev := s[loc[0]-1]; prev == '$' || prev == '.' || (prev >= '0' && prev <= '9') {
				continue
			}
		}
		if promqlKeywords[strings.ToLower(name)] {
			continue
		}
		if rest := strings.TrimLeft(s[loc[1]:], " \t\n"); strings.HasPrefix(rest, "(") {
			continue // a function
		}
		names = append(names, name)
	}
	return names
}

func TestMetricNames(t *testing.T) {
	tests := []struct {
		expr string
		want []string
	}{
		{`sum by (endpoint) (rate(tollgate_requests_total{code=~"5..", endpoint=~"$endpoint"}[5m]))`, []string{"tollgate_requests_total"}},
		{`histogram_quantile(0.99, sum by (le) (rate(x_bucket{a="b}"}[$__rate_interval])))`, []string{"x_bucket"}},
		{`go_goroutines and on (job, instance) tollgate_limiter_degraded`, []string{"go_goroutines", "tollgate_limiter_degraded"}},
		{`max by (backend) (vllm:gpu_cache_usage_perc{backend=~"$backend"} or vllm:kv_cache_usage_perc)`, []string{"vllm:gpu_cache_usage_perc", "vllm:kv_cache_usage_perc"}},
		{`up{job="tollgate"} == 0`, []string{"up"}},
		{`sum(rate(a[5m])) * 3600 > 1e3`, []string{"a"}},
		{`foo offset 5m / bool bar`, []string{"foo", "bar"}},
		{"a / ignoring(code) group_left(x) b", []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			if got := metricNames(tt.expr); !slices.Equal(got, tt.want) {
				t.Errorf("metricNames = %v, want %v", got, tt.want)
			}
		})
	}
}

// unknownMetrics returns the names queried that the gateway does not export.
// vLLM's metrics and Prometheus's own up are known; a histogram's _bucket,
// _sum and _count series count as the histogram.
func unknownMetrics(names []string, exported map[string]dto.MetricType) []string {
	var bad []string
	for _, n := range names {
		if strings.HasPrefix(n, "vllm:") || n == "up" {
			continue
		}
		if _, ok := exported[n]; ok {
			continue
		}
		known := false
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(n, suffix); ok {
				if typ, ok := exported[base]; ok && (typ == dto.MetricType_HISTOGRAM || suffix != "_bucket" && typ == dto.MetricType_SUMMARY) {
					known = true
				}
			}
		}
		if !known {
			bad = append(bad, n)
		}
	}
	return bad
}

func TestUnknownMetricsCatchesTypos(t *testing.T) {
	exported := exportedFamilies(t)
	tests := []struct {
		name string
		want []string
	}{
		{"tollgate_requests_total", nil},
		{"tollgate_request_duration_seconds_bucket", nil},
		{"tollgate_request_duration_seconds_count", nil},
		{"tollgate_request_total", []string{"tollgate_request_total"}},
		{"tollgate_requests_total_bucket", []string{"tollgate_requests_total_bucket"}},
		{"vllm:num_requests_waiting", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := unknownMetrics([]string{tt.name}, exported); !slices.Equal(got, tt.want) {
				t.Errorf("unknownMetrics = %v, want %v", got, tt.want)
			}
		})
	}
}

func loadAlertExprs(t testing.TB) map[string]string {
	t.Helper()
	b, err := os.ReadFile(alertsPath)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert  string `yaml:"alert"`
				Record string `yaml:"record"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", alertsPath, err)
	}
	exprs := map[string]string{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			exprs[r.Alert+r.Record] = r.Expr
		}
	}
	if len(exprs) == 0 {
		t.Fatal("no rules")
	}
	return exprs
}

func TestQueriedMetricsAreExported(t *testing.T) {
	exported := exportedFamilies(t)
	d := loadDashboard(t)
	type query struct{ where, expr string }
	var queries []query
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			queries = append(queries, query{"panel " + p.Title + " " + tg.RefID, tg.Expr})
		}
	}
	for name, expr := range loadAlertExprs(t) {
		queries = append(queries, query{"alert " + name, expr})
	}
	sort.Slice(queries, func(i, j int) bool { return queries[i].where < queries[j].where })

	for _, q := range queries {
		t.Run(q.where, func(t *testing.T) {
			names := metricNames(q.expr)
			if len(names) == 0 {
				t.Fatalf("no metric found in %q", q.expr)
			}
			if bad := unknownMetrics(names, exported); len(bad) > 0 {
				t.Errorf("queries metrics the gateway does not export: %v", bad)
			}
		})
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		t.Run("variable "+v.Name, func(t *testing.T) {
			m := labelValuesArg.FindStringSubmatch(v.queryString())
			if m == nil {
				t.Fatalf("query %q is not label_values(metric..., label)", v.queryString())
			}
			if bad := unknownMetrics([]string{m[1]}, exported); len(bad) > 0 {
				t.Errorf("lists values of %v, which the gateway does not export", bad)
			}
		})
	}
	t.Run("every alert of the issue", func(t *testing.T) {
		exprs := loadAlertExprs(t)
		var missing []error
		for _, want := range []string{"TollgateHighErrorRate", "TollgateHighLatencyP99", "TollgateHighTimeToFirstToken",
			"TollgateLimiterDegraded", "TollgateCanaryRolledBack", "TollgateBackendDown"} {
			if _, ok := exprs[want]; !ok {
				missing = append(missing, errors.New(want))
			}
		}
		if len(missing) > 0 {
			t.Errorf("missing alerts: %v", errors.Join(missing...))
		}
	})
}
