package gateway

// Observability as an SRE meets it: the label names the shipped alerts and dashboard
// use exist on a real scrape, label values stay bounded whatever clients send, stream
// timings run end to end, and fallback spans have their structure.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"gopkg.in/yaml.v3"

	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// contractConfig: chat with a per-user limit, a canary endpoint, embeddings, a
// fallback endpoint and a canary.
func contractConfig(up, canary string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 64KiB, shutdown_grace: 5s}
backends:
  up: {provider: openai, base_url: "http://` + up + `/v1", model: up-model, timeout: 20s, pricing: {input_per_million: 1, output_per_million: 2},
       max_concurrency: 64, queue: {size: 16, fair: api_key}}
  can: {provider: openai, base_url: "http://` + canary + `/v1", model: up-model, timeout: 20s}
  dead: {provider: openai, base_url: "http://127.0.0.1:1/v1", model: up-model, timeout: 2s}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: up}]
    limits: [{per: user, requests: 2, window: minute}]
  - {name: embed, type: embeddings, routes: [{backend: up}], cache: {ttl: 1h}}
  - name: ab
    type: chat
    routes: [{backend: up, weight: 50, variant: stable}, {backend: can, weight: 50, variant: canary}]
    sticky: {from: header, name: X-User-ID}
    canary: {backend: can, steps: [50, 100], interval: 1h, min_requests: 1000, max_error_rate: 0.5}
  - {name: fb, type: chat, routes: [{backend: dead}], fallbacks: [up]}
logging: {level: info, format: json}
`
}

func contractPost(t *testing.T, g *gw, path, body string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", g.url+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := &http.Client{Timeout: 15 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// contractTraffic serves chat, stream, embeddings, an upstream 500, a 429, a
// canary, a fallback, an unknown model and a random path.
func contractTraffic(t *testing.T) *gw {
	t.Helper()
	_, up := startMock(t, mockllm.Options{MaxTokens: 4, TPOT: time.Millisecond})
	_, can := startMock(t, mockllm.Options{MaxTokens: 4})
	g := startGateway(t, contractConfig(up, can))
	want := func(resp *http.Response, body string, code int) {
		t.Helper()
		if resp.StatusCode != code {
			t.Fatalf("status %d, want %d: %s", resp.StatusCode, code, body)
		}
	}
	chat := `{"model":"chat","messages":[{"role":"user","content":"hi"}],"user":"alice-secret-user"}`
	resp, b := contractPost(t, g, "/v1/chat/completions", chat, nil)
	want(resp, b, 200)
	resp, b = contractPost(t, g, "/v1/chat/completions", `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}],"user":"alice-secret-user"}`, nil)
	want(resp, b, 200)
	resp, b = contractPost(t, g, "/v1/chat/completions", chat, nil)
	want(resp, b, 429)
	resp, b = contractPost(t, g, "/v1/embeddings", `{"model":"embed","input":"hello"}`, nil)
	want(resp, b, 200)
	// Again, answered from embed's cache.
	resp, b = contractPost(t, g, "/v1/embeddings", `{"model":"embed","input":"hello"}`, nil)
	want(resp, b, 200)
	if c := resp.Header.Get("X-Tollgate-Cache"); c != "hit" {
		t.Fatalf("repeated embeddings: x-tollgate-cache %q, want hit", c)
	}
	resp, b = contractPost(t, g, "/v1/chat/completions", `{"model":"ab","messages":[{"role":"user","content":"hi"}]}`, map[string]string{"x-mock-status": "500", "X-User-ID": "u1"})
	if resp.StatusCode < 500 {
		t.Fatalf("want 5xx, got %d %s", resp.StatusCode, b)
	}
	for i := range 12 {
		resp, b = contractPost(t, g, "/v1/chat/completions", `{"model":"ab","messages":[{"role":"user","content":"hi"}]}`, map[string]string{"X-User-ID": fmt.Sprintf("user-%d", i)})
		want(resp, b, 200)
	}
	resp, b = contractPost(t, g, "/v1/chat/completions", `{"model":"fb","messages":[{"role":"user","content":"hi"}]}`, nil)
	want(resp, b, 200)
	resp, b = contractPost(t, g, "/v1/chat/completions", `{"model":"no-such-model-xyz123","messages":[]}`, nil)
	want(resp, b, 404)
	resp, b = contractPost(t, g, "/v1/random-path-abc987", `{}`, nil)
	if resp.StatusCode != 404 {
		t.Logf("random path: %d", resp.StatusCode)
	}
	contractPost(t, g, "/endpoints/xyz123-ep/invocations", `{"messages":[]}`, nil)
	for _, path := range []string{"/v1/models/abc987-model", "/abc987/metrics", "/v1/chat/completions"} {
		req, _ := http.NewRequest("GET", g.url+path, nil)
		if r, err := http.DefaultClient.Do(req); err == nil {
			r.Body.Close()
		}
	}
	return g
}

func contractScrape(t *testing.T, g *gw) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	return fams
}

// TestScrapeMatchesContract: the SRE builds queries from README's metric
// list; a missing metric, wrong type or a client-controlled label value (a
// model name, a path, a user id) either breaks dashboards or blows up series
// cardinality.
func TestScrapeMatchesContract(t *testing.T) {
	t.Parallel()
	g := contractTraffic(t)
	fams := contractScrape(t, g)
	types := map[string]dto.MetricType{
		"tollgate_requests_total":                dto.MetricType_COUNTER,
		"tollgate_request_duration_seconds":      dto.MetricType_HISTOGRAM,
		"tollgate_time_to_first_token_seconds":   dto.MetricType_HISTOGRAM,
		"tollgate_time_per_output_token_seconds": dto.MetricType_HISTOGRAM,
		"tollgate_tokens_total":                  dto.MetricType_COUNTER,
		"tollgate_cached_input_tokens_total":     dto.MetricType_COUNTER,
		"tollgate_cost_usd_total":                dto.MetricType_COUNTER,
		"tollgate_upstream_attempts_total":       dto.MetricType_COUNTER,
		"tollgate_stream_errors_total":           dto.MetricType_COUNTER,
		"tollgate_in_flight_requests":            dto.MetricType_GAUGE,
		"tollgate_route_weight":                  dto.MetricType_GAUGE,
		"tollgate_canary_state":                  dto.MetricType_GAUGE,
		"tollgate_backend_up":                    dto.MetricType_GAUGE,
		"tollgate_backend_in_flight":             dto.MetricType_GAUGE,
		"tollgate_backend_queue_waiting":         dto.MetricType_GAUGE,
		"tollgate_backend_queue_tenants":         dto.MetricType_GAUGE,
		"tollgate_backend_queue_requests_total":  dto.MetricType_COUNTER,
		"tollgate_backend_queue_wait_seconds":    dto.MetricType_HISTOGRAM,
		"tollgate_config_reloads_total":          dto.MetricType_COUNTER,
		"tollgate_config_last_reload_successful": dto.MetricType_GAUGE,
		"tollgate_ratelimit_rejections_total":    dto.MetricType_COUNTER,
		"tollgate_limiter_degraded":              dto.MetricType_GAUGE,
		"tollgate_cache_requests_total":          dto.MetricType_COUNTER,
		"tollgate_cache_bytes":                   dto.MetricType_GAUGE,
		"tollgate_cache_entries":                 dto.MetricType_GAUGE,
		"tollgate_cache_evictions_total":         dto.MetricType_COUNTER,
		"go_goroutines":                          dto.MetricType_GAUGE,
	}
	var errs []string
	for name, typ := range types {
		f, ok := fams[name]
		if !ok {
			errs = append(errs, name+": missing")
			continue
		}
		if f.GetType() != typ {
			errs = append(errs, fmt.Sprintf("%s: type %v, want %v", name, f.GetType(), typ))
		}
	}
	for name, f := range fams {
		for _, m := range f.Metric {
			for _, l := range m.Label {
				v := l.GetValue()
				for _, bad := range []string{"alice", "xyz123", "abc987", "user-", "u1"} {
					if strings.Contains(v, bad) {
						errs = append(errs, fmt.Sprintf("%s{%s=%q}: client-controlled label value", name, l.GetName(), v))
					}
				}
			}
		}
	}
	sort.Strings(errs)
	for _, e := range errs {
		t.Error(e)
	}
}

var (
	contractSelector = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^{}]*)\}`)
	contractMatcher  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)
	contractBy       = regexp.MustCompile(`\b(by|without|on|ignoring)\s*\(([^)]*)\)`)
	contractName     = regexp.MustCompile(`\b(tollgate_[a-zA-Z0-9_]+)`)
)

func contractExprs(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	b, err := os.ReadFile("../configs/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct{ Alert, Record, Expr string }
		}
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	for _, gr := range f.Groups {
		for _, r := range gr.Rules {
			out["alert "+r.Alert+r.Record] = r.Expr
		}
	}
	db, err := os.ReadFile("../configs/grafana/tollgate.json")
	if err != nil {
		t.Fatal(err)
	}
	var d any
	if err := json.Unmarshal(db, &d); err != nil {
		t.Fatal(err)
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, vv := range x {
				if s, ok := vv.(string); ok && (k == "expr" || k == "query" || k == "definition") && strings.Contains(s, "tollgate_") {
					out["dashboard "+path+"."+k] = s
				}
				walk(path+"."+k, vv)
			}
		case []any:
			for i, vv := range x {
				walk(fmt.Sprintf("%s[%d]", path, i), vv)
			}
		}
	}
	walk("", d)
	return out
}

// TestShippedQueriesUseExportedLabels: every tollgate_ metric and every
// label a shipped alert or panel selects or groups by must exist on a real
// scrape; a label typo makes a panel silently empty or an alert never fire.
func TestShippedQueriesUseExportedLabels(t *testing.T) {
	t.Parallel()
	g := contractTraffic(t)
	fams := contractScrape(t, g)
	// The per-key families exist only with client keys, which the contract's gateway
	// has none of: a keyed gateway's are added.
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	for name, f := range contractScrape(t, startGateway(t, keyMetricsConfig(addr))) {
		if _, ok := fams[name]; !ok {
			fams[name] = f
		}
	}
	labelsOf := func(name string) (map[string]bool, bool) {
		f, ok := fams[name]
		if !ok {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				if base, ok2 := strings.CutSuffix(name, s); ok2 {
					if f, ok = fams[base]; ok {
						break
					}
				}
			}
		}
		if !ok {
			return nil, false
		}
		ls := map[string]bool{"job": true, "instance": true, "le": true, "__name__": true}
		for _, m := range f.Metric {
			for _, l := range m.Label {
				ls[l.GetName()] = true
			}
		}
		return ls, true
	}
	for where, expr := range contractExprs(t) {
		var used []string
		for _, n := range contractName.FindAllString(expr, -1) {
			ls, ok := labelsOf(n)
			if !ok {
				t.Errorf("%s: metric %s not exported", where, n)
				continue
			}
			used = append(used, n)
			_ = ls
		}
		for _, sel := range contractSelector.FindAllStringSubmatch(expr, -1) {
			ls, ok := labelsOf(sel[1])
			if !ok {
				continue
			}
			for _, m := range contractMatcher.FindAllStringSubmatch(sel[2], -1) {
				if !ls[m[1]] {
					t.Errorf("%s: %s has no label %q", where, sel[1], m[1])
				}
			}
		}
		// grouping labels must exist on at least one metric used in the expression
		for _, by := range contractBy.FindAllStringSubmatch(expr, -1) {
			for _, l := range strings.Split(by[2], ",") {
				l = strings.TrimSpace(l)
				if l == "" {
					continue
				}
				found := false
				for _, n := range used {
					if ls, _ := labelsOf(n); ls[l] {
						found = true
					}
				}
				if !found && len(used) > 0 {
					t.Errorf("%s: groups by %q, which none of %v carries", where, l, used)
				}
			}
		}
	}
}

func contractAccessLines(t *testing.T, g *gw) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(g.logs.String(), "\n") {
		if !strings.Contains(line, `"msg":"request"`) {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("access line not JSON: %v: %s", err, line)
		}
		out = append(out, m)
	}
	return out
}

// TestSlowStreamTimings: a stream of 10 tokens 30 ms apart. The SRE
// reads latency_ms, ttft_ms and the duration/TTFT/TPOT histograms to tell a
// slow first token from a slow generation: duration must run to the end of
// the stream, TTFT to the first token, TPOT the gap between tokens.
func TestSlowStreamTimings(t *testing.T) {
	t.Parallel()
	_, up := startMock(t, mockllm.Options{MaxTokens: 10, TTFT: 50 * time.Millisecond, TPOT: 30 * time.Millisecond})
	g := startGateway(t, mockConfig(up, "", "")+"logging: {level: info, format: json}\n")
	resp, b := contractPost(t, g, "/v1/chat/completions", `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d %s", resp.StatusCode, b)
	}
	var lines []map[string]any
	deadline := time.Now().Add(3 * time.Second)
	for len(lines) == 0 && time.Now().Before(deadline) {
		lines = contractAccessLines(t, g)
		time.Sleep(10 * time.Millisecond)
	}
	if len(lines) != 1 {
		t.Fatalf("%d access lines, want 1", len(lines))
	}
	l := lines[0]
	lat, _ := l["latency_ms"].(float64)
	ttft, _ := l["ttft_ms"].(float64)
	out, _ := l["output_tokens"].(float64)
	if lat < 300 || ttft < 45 || ttft >= lat || out != 10 {
		t.Errorf("access log latency_ms=%v ttft_ms=%v output_tokens=%v; want latency >= 320 (to the stream's end), ttft ~50, 10 tokens", lat, ttft, out)
	}
	fams := contractScrape(t, g)
	hist := func(name string) *dto.Histogram {
		for _, m := range fams[name].GetMetric() {
			if m.GetHistogram().GetSampleCount() > 0 {
				return m.GetHistogram()
			}
		}
		t.Fatalf("%s: no observation", name)
		return nil
	}
	if d := hist("tollgate_request_duration_seconds").GetSampleSum(); d < 0.3 {
		t.Errorf("request_duration_seconds sum %v, want >= 0.3 s (to the stream's end)", d)
	}
	if d := hist("tollgate_time_to_first_token_seconds").GetSampleSum(); d < 0.045 {
		t.Errorf("ttft sum %v, want >= 0.05 s", d)
	}
	if d := hist("tollgate_time_per_output_token_seconds").GetSampleSum(); d < 0.025 {
		t.Errorf("tpot sum %v, want >= 0.03 s", d)
	}
}

// TestFallbackSpans: the primary backend refuses connections and the
// request falls back. The SRE expects, under the server span, one client span
// per attempt: the failed one Error with error.type and server.address of the
// dead target, the fallback one OK with its own backend and usage.
func TestFallbackSpans(t *testing.T) {
	addr := startStaticUpstream(t)
	exp := tracetest.NewInMemoryExporter()
	yaml := `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  dead: {provider: openai, base_url: "http://127.0.0.1:1/v1", model: dead-model, timeout: 2s}
  up: {provider: openai, base_url: "http://` + addr + `/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: dead}], fallbacks: [up]}
tracing: {exporter: otlp-grpc, sample_ratio: 1}
logging: {level: error}
`
	s := newServerWith(t, yaml, Options{Logger: discardLogger(), SpanExporter: exp})
	ctx := newProxyCtx(benchChatBody)
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("status %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	flush(t, s)
	all := exp.GetSpans()
	spans := byName(all)
	server := spans["POST /v1/chat/completions"]
	dead, up := spans["chat dead-model"], spans["chat up-model"]
	if len(server) != 1 || len(dead) != 1 || len(up) != 1 {
		t.Fatalf("want a server span and one client span per backend:\n%s", contractSpanSummary(all))
	}
	for _, c := range []tracetest.SpanStub{dead[0], up[0]} {
		if c.Parent.SpanID() != server[0].SpanContext.SpanID() || c.SpanKind.String() != "client" {
			t.Errorf("%s: parent %v kind %v, want child of server span, kind client", c.Name, c.Parent.SpanID(), c.SpanKind)
		}
	}
	if dead[0].Status.Code != codes.Error {
		t.Errorf("failed attempt status %v, want Error", dead[0].Status.Code)
	}
	if v, _ := attr(dead[0].Snapshot(), "error.type"); v.AsString() == "" {
		t.Errorf("failed attempt has no error.type")
	}
	if v, _ := attr(dead[0].Snapshot(), "server.address"); v.AsString() != "127.0.0.1" {
		t.Errorf("failed attempt server.address %q", v.Emit())
	}
	if up[0].Status.Code == codes.Error || server[0].Status.Code == codes.Error {
		t.Errorf("fallback %v / server %v status, want not Error", up[0].Status.Code, server[0].Status.Code)
	}
	if v, _ := attr(up[0].Snapshot(), "gen_ai.usage.output_tokens"); v.AsInt64() != 9 {
		t.Errorf("fallback usage %v", v.Emit())
	}
	if v, _ := attr(up[0].Snapshot(), "gen_ai.response.model"); v.AsString() != "up-model" {
		t.Errorf("fallback gen_ai.response.model %q", v.Emit())
	}
	if v, _ := attr(server[0].Snapshot(), "error.type"); v.AsString() != "" {
		t.Errorf("server span of a request that succeeded after fallback carries error.type %q\n%s", v.Emit(), contractSpanSummary(all))
	}
}
