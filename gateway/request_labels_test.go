package gateway

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// startTracedGateway serves yaml like startGateway, its spans going to an in-memory
// exporter.
func startTracedGateway(t *testing.T, yaml string) (*gw, *tracetest.InMemoryExporter) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tollgate.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	exp := tracetest.NewInMemoryExporter()
	logs := &syncBuffer{}
	s, err := New(path, Options{Logger: slogTo(logs), SpanExporter: exp})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &gw{Server: s, url: "http://" + s.Addr(), path: path, cancel: cancel, done: make(chan error, 1), logs: logs}
	go func() { g.done <- s.Serve(ctx) }()
	t.Cleanup(g.stop)
	return g, exp
}

// requestSpans waits until the server span of the request with id has ended and
// returns every span of its trace by name.
func requestSpans(t *testing.T, g *gw, exp *tracetest.InMemoryExporter, id string) map[string][]tracetest.SpanStub {
	t.Helper()
	var out map[string][]tracetest.SpanStub
	chaosEventually(t, 10*time.Second, func() (bool, string) {
		flush(t, g.Server)
		all := exp.GetSpans()
		for _, s := range all {
			if v, ok := attr(s.Snapshot(), "tollgate.request_id"); ok && v.AsString() == id {
				out = map[string][]tracetest.SpanStub{}
				for _, c := range all {
					if c.SpanContext.TraceID() == s.SpanContext.TraceID() {
						out[c.Name] = append(out[c.Name], c)
					}
				}
				return true, ""
			}
		}
		return false, "no server span for request " + id
	})
	return out
}

// requestsWith sums tollgate_requests_total over the series whose labels hold all of
// want.
func requestsWith(t *testing.T, g *gw, want map[string]string) float64 {
	t.Helper()
	fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := promtest.Sum(fams, "tollgate_requests_total", func(l map[string]string) bool {
		for k, v := range want {
			if l[k] != v {
				return false
			}
		}
		return true
	})
	return n
}

// seriesVariants lists the variant labels of the tollgate_requests_total series of
// endpoint that counted a request.
func seriesVariants(t *testing.T, g *gw, endpoint string) map[string]float64 {
	t.Helper()
	fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, m := range fams["tollgate_requests_total"].GetMetric() {
		l := labelMap(m)
		if l["endpoint"] == endpoint && m.GetCounter().GetValue() > 0 {
			out[l["backend"]+"/"+l["variant"]] += m.GetCounter().GetValue()
		}
	}
	return out
}

func labelMap(m *dto.Metric) map[string]string {
	l := map[string]string{}
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

func fallbackVariantConfig(up string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 64KiB, shutdown_grace: 5s}
backends:
  up: {provider: openai, base_url: "http://` + up + `/v1", model: up-model, timeout: 20s}
  spare: {provider: openai, base_url: "http://` + up + `/v1", model: up-model, timeout: 20s}
  dead: {provider: openai, base_url: "http://127.0.0.1:1/v1", model: up-model, timeout: 2s}
endpoints:
  - name: ab
    type: chat
    routes: [{backend: up, weight: 0, variant: stable}, {backend: dead, weight: 100, variant: canary}]
    fallbacks: [spare]
  - name: back
    type: chat
    routes: [{backend: up, weight: 0, variant: stable}, {backend: dead, weight: 100, variant: canary}]
    fallbacks: [up]
  - name: plain
    type: chat
    routes: [{backend: up, variant: main}]
    fallbacks: [spare]
tracing: {exporter: otlp-grpc, sample_ratio: 1}
logging: {level: info, format: json}
`
}

// TestFallbackServedRequestHasNoVariant: a request routed to the canary whose backend
// fails is served by a fallback. A variant labels a route (README: x-tollgate-variant
// says which backend and route served it) and a fallback is none: the canary's gates
// do not count its attempts, so neither may the canary's series in the dashboard's
// "p99 latency and error rate by variant" panel, nor its header, access log line or
// server span. That holds also for a fallback that is another route's backend: it
// served as a fallback, not as that route. The routing span keeps the decision made
// (the canary), and a request a route served carries its variant everywhere.
func TestFallbackServedRequestHasNoVariant(t *testing.T) {
	t.Parallel()
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	g, exp := startTracedGateway(t, fallbackVariantConfig(up))
	for _, c := range []struct {
		endpoint, backend, variant string
	}{
		{"ab", "spare", ""},
		{"back", "up", ""},
		{"plain", "up", "main"},
	} {
		t.Run(c.endpoint, func(t *testing.T) {
			id := "fbv-" + c.endpoint
			resp, b := postRaw(t, &http.Client{Timeout: 20 * time.Second}, g.url+"/v1/chat/completions",
				`{"model":"`+c.endpoint+`","messages":[{"role":"user","content":"hi"}]}`, map[string]string{"X-Request-Id": id})
			if resp.StatusCode != 200 {
				t.Fatalf("status %d %s", resp.StatusCode, b)
			}
			if got := resp.Header.Get("X-Tollgate-Backend"); got != c.backend {
				t.Errorf("x-tollgate-backend %q, want %q", got, c.backend)
			}
			if got, ok := resp.Header["X-Tollgate-Variant"]; c.variant == "" && ok || c.variant != "" && resp.Header.Get("X-Tollgate-Variant") != c.variant {
				t.Errorf("x-tollgate-variant %q, want %q", got, c.variant)
			}
			// No variant is "none" in the access log, as in the metrics.
			wantVariant := c.variant
			if wantVariant == "" {
				wantVariant = "none"
			}
			line := afAccess(t, g, id)
			if line["backend"] != c.backend || line["variant"] != wantVariant {
				t.Errorf("access log backend %q variant %q, want %q and %q", line["backend"], line["variant"], c.backend, wantVariant)
			}
			spans := requestSpans(t, g, exp, id)
			server := spans["POST /v1/chat/completions"]
			if len(server) != 1 {
				t.Fatalf("%d server spans", len(server))
			}
			v, ok := attr(server[0].Snapshot(), "tollgate.variant")
			if c.variant == "" && ok || c.variant != "" && v.AsString() != c.variant {
				t.Errorf("server span tollgate.variant %q (set %v), want %q", v.Emit(), ok, c.variant)
			}
			if v, _ := attr(server[0].Snapshot(), "tollgate.backend"); v.AsString() != c.backend {
				t.Errorf("server span tollgate.backend %q, want %q", v.Emit(), c.backend)
			}
			route := spans["tollgate.route"]
			want := "canary"
			if c.variant != "" {
				want = c.variant
			}
			if len(route) != 1 {
				t.Fatalf("%d routing spans", len(route))
			}
			if v, _ := attr(route[0].Snapshot(), "tollgate.variant"); v.AsString() != want {
				t.Errorf("routing span tollgate.variant %q, want the decision %q", v.Emit(), want)
			}
			for _, a := range spans["chat up-model"] {
				backend, _ := attr(a.Snapshot(), "tollgate.backend")
				v, ok := attr(a.Snapshot(), "tollgate.variant")
				wantV := ""
				if backend.AsString() == "dead" {
					wantV = "canary"
				} else {
					wantV = c.variant
				}
				if wantV == "" && ok || wantV != "" && v.AsString() != wantV {
					t.Errorf("attempt span on %s: tollgate.variant %q (set %v), want %q", backend.Emit(), v.Emit(), ok, wantV)
				}
			}
		})
	}
}

// TestFallbackSeriesHaveNoVariant: the metrics of a request served by a fallback are
// labelled variant="none", as its header, access log line and server span name no
// variant (TestFallbackServedRequestHasNoVariant): the canary's series in the
// dashboard's per-variant panels hold what the canary's own backend answered, as its
// gates do.
func TestFallbackSeriesHaveNoVariant(t *testing.T) {
	t.Parallel()
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	g, _ := startTracedGateway(t, fallbackVariantConfig(up))
	for _, c := range []struct {
		endpoint, series string
	}{
		{"ab", "spare/none"},
		{"back", "up/none"},
		{"plain", "up/main"},
	} {
		t.Run(c.endpoint, func(t *testing.T) {
			resp, b := postRaw(t, &http.Client{Timeout: 20 * time.Second}, g.url+"/v1/chat/completions",
				`{"model":"`+c.endpoint+`","messages":[{"role":"user","content":"hi"}]}`, nil)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d %s", resp.StatusCode, b)
			}
			var got map[string]float64
			// The request is counted once its answer is written: poll for it.
			pollFor(10*time.Second, func() bool {
				got = seriesVariants(t, g, c.endpoint)
				return len(got) > 0
			})
			if len(got) != 1 || got[c.series] != 1 {
				t.Errorf("tollgate_requests_total of %s by backend/variant: %v, want only %s 1", c.endpoint, got, c.series)
			}
		})
	}
}

// TestRateLimitedRequestHasNoVariant: a request refused by its limits (429) never
// reached a variant: the access log, like the metrics, the headers and the server
// span, names none.
func TestRateLimitedRequestHasNoVariant(t *testing.T) {
	t.Parallel()
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	g, exp := startTracedGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 64KiB, shutdown_grace: 5s}
backends:
  up: {provider: openai, base_url: "http://`+up+`/v1", model: up-model, timeout: 20s}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: up}]
    limits: [{per: endpoint, requests: 1, window: day}]
tracing: {exporter: otlp-grpc, sample_ratio: 1}
logging: {level: info, format: json}
`)
	c := &http.Client{Timeout: 20 * time.Second}
	const body = `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
	if resp, b := postRaw(t, c, g.url+"/v1/chat/completions", body, map[string]string{"X-Request-Id": "rl-ok"}); resp.StatusCode != 200 {
		t.Fatalf("first: %d %s", resp.StatusCode, b)
	}
	if line := afAccess(t, g, "rl-ok"); line["variant"] != "up" {
		t.Errorf("served request's access log variant %q, want up (the route's backend, as it has no variant of its own)", line["variant"])
	}
	resp, b := postRaw(t, c, g.url+"/v1/chat/completions", body, map[string]string{"X-Request-Id": "rl-429"})
	if resp.StatusCode != 429 {
		t.Fatalf("second: %d %s, want 429", resp.StatusCode, b)
	}
	if v, ok := resp.Header["X-Tollgate-Variant"]; ok {
		t.Errorf("429 carries x-tollgate-variant %q", v)
	}
	line := afAccess(t, g, "rl-429")
	if line["variant"] != "none" || line["backend"] != "none" {
		t.Errorf("429 access log backend %q variant %q, want none and none, as the metrics say", line["backend"], line["variant"])
	}
	var n float64
	pollFor(10*time.Second, func() bool {
		n = requestsWith(t, g, map[string]string{"endpoint": "chat", "code": "429"})
		return n > 0
	})
	if n := requestsWith(t, g, map[string]string{"endpoint": "chat", "code": "429", "backend": "none", "variant": "none"}); n != 1 {
		t.Errorf("tollgate_requests_total{code=429,backend=none,variant=none} = %v, want 1; series: %v", n, seriesVariants(t, g, "chat"))
	}
	server := requestSpans(t, g, exp, "rl-429")["POST /v1/chat/completions"]
	if len(server) != 1 {
		t.Fatalf("%d server spans", len(server))
	}
	for _, k := range []string{"tollgate.variant", "tollgate.backend"} {
		if v, ok := attr(server[0].Snapshot(), k); ok {
			t.Errorf("429 server span has %s %q", k, v.Emit())
		}
	}
}

// streamNoUsageConfig has a backend asked for no stream usage (a server whose API
// refuses stream_options): its streams end without a usage chunk.
func streamNoUsageConfig(up string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 64KiB, shutdown_grace: 5s}
backends:
  up: {provider: openai, base_url: "http://` + up + `/v1", model: up-model, timeout: 20s, pricing: {input_per_million: 1, output_per_million: 1}}
  bare: {provider: openai, base_url: "http://` + up + `/v1", model: up-model, timeout: 20s, stream_usage: false, pricing: {input_per_million: 1, output_per_million: 1}}
endpoints:
  - {name: counted, type: chat, routes: [{backend: up}]}
  - {name: uncounted, type: chat, routes: [{backend: bare}]}
tracing: {exporter: otlp-grpc, sample_ratio: 1}
logging: {level: info, format: json}
`
}

// TestStreamWithoutUsageEstimatesTokens: a stream whose upstream sent no usage is
// counted as what it streamed, the prompt as admission estimates it and the output
// by the text relayed, as a stream cut before its usage is: gen_ai.usage.* carry that
// estimate marked tollgate.usage.estimated, on the attempt's span and the server's,
// the access log with usage_estimated, the token and cost counters alike. A stream
// with usage carries the upstream's counts everywhere, unmarked.
func TestStreamWithoutUsageEstimatesTokens(t *testing.T) {
	t.Parallel()
	_, up := startMock(t, mockllm.Options{MaxTokens: 3})
	g, exp := startTracedGateway(t, streamNoUsageConfig(up))
	c := &http.Client{Timeout: 20 * time.Second}
	for _, tc := range []struct {
		endpoint, backend string
		known             bool
	}{
		{"counted", "up", true},
		{"uncounted", "bare", false},
	} {
		t.Run(tc.endpoint, func(t *testing.T) {
			id := "su-" + tc.endpoint
			resp, b := postRaw(t, c, g.url+"/v1/chat/completions",
				`{"model":"`+tc.endpoint+`","stream":true,"messages":[{"role":"user","content":"hi"}]}`, map[string]string{"X-Request-Id": id})
			if resp.StatusCode != 200 || !strings.Contains(string(b), "[DONE]") {
				t.Fatalf("status %d %s", resp.StatusCode, b)
			}
			if strings.Contains(string(b), `"usage":{`) {
				t.Fatalf("the client did not ask for usage but got it: %s", b)
			}
			spans := requestSpans(t, g, exp, id)
			server, attempt := spans["POST /v1/chat/completions"], spans["chat up-model"]
			if len(server) != 1 || len(attempt) != 1 {
				t.Fatalf("%d server and %d attempt spans, want 1 and 1", len(server), len(attempt))
			}
			for _, s := range []tracetest.SpanStub{server[0], attempt[0]} {
				for _, k := range []string{"gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"} {
					if v, ok := attr(s.Snapshot(), k); !ok || v.AsInt64() <= 0 {
						t.Errorf("%s span: %s = %v (set %v), want a count", s.Name, k, v.Emit(), ok)
					}
				}
				if v, ok := attr(s.Snapshot(), "tollgate.usage.estimated"); ok != !tc.known || ok && !v.AsBool() {
					t.Errorf("%s span: tollgate.usage.estimated %v (set %v), want it set for a stream without usage alone", s.Name, v.Emit(), ok)
				}
			}
			line := afAccess(t, g, id)
			in, _ := line["input_tokens"].(float64)
			out, _ := line["output_tokens"].(float64)
			if est, _ := line["usage_estimated"].(bool); in <= 0 || out <= 0 || est == tc.known {
				t.Errorf("access log input_tokens=%v output_tokens=%v usage_estimated=%v", line["input_tokens"], line["output_tokens"], line["usage_estimated"])
			}
			fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			toks, _ := promtest.Sum(fams, "tollgate_tokens_total", func(l map[string]string) bool { return l["backend"] == tc.backend })
			cost, _ := promtest.Sum(fams, "tollgate_cost_usd_total", func(l map[string]string) bool { return l["backend"] == tc.backend })
			if toks <= 0 || cost <= 0 || toks != in+out {
				t.Errorf("tollgate_tokens_total{backend=%s} = %v, cost %v; access log says %v tokens", tc.backend, toks, cost, in+out)
			}
		})
	}
}
