package gateway

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tollgate/tollgate/internal/redistest"
)

// refusingExporter is a trace collector that refuses every batch.
type refusingExporter struct{ calls atomic.Int64 }

func (e *refusingExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error {
	e.calls.Add(1)
	return errors.New("collector unavailable")
}

func (e *refusingExporter) Shutdown(context.Context) error { return nil }

// counterValue reads the counter or gauge of s's registry whose labels include the
// given name, value pairs.
func counterValue(t *testing.T, s *Server, name string, labels ...string) float64 {
	t.Helper()
	fams, err := s.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.Metric {
			have := map[string]string{}
			for _, l := range m.Label {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue next
				}
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	t.Fatalf("%s%v not exported", name, labels)
	return 0
}

// waitRetiredClosed waits for the configs retired by reloads to close in the
// background (their tracers shut down, their limiters closed).
func waitRetiredClosed(t *testing.T, s *Server) {
	t.Helper()
	if !waitWithin(10*time.Second, func() bool { return s.closing.Load() == 0 }) {
		t.Fatal("the retired config did not close within 10s")
	}
}

// Prometheus counters must not go down while the process lives: a reload that
// changes tracing: keeps tollgate_traces_total counting from where it was, and the
// retired tracer's last export, refused by the collector, shows in
// tollgate_trace_export_failures_total.
func TestReloadKeepsTraceCounters(t *testing.T) {
	up := startStaticUpstream(t)
	exp := &refusingExporter{}
	s := newServerWith(t, tracedYAML(up, "", `{exporter: otlp-grpc, sample_ratio: 1}`, "5s"),
		Options{Logger: discardLogger(), SpanExporter: exp})
	for range 3 {
		ctx := newProxyCtx(benchChatBody)
		proxyOnce(s, ctx)
		if ctx.Response.StatusCode() != 200 {
			t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
	if kept := counterValue(t, s, "tollgate_traces_total", "decision", "kept"); kept != 3 {
		t.Fatalf("before the reload tollgate_traces_total{decision=kept} = %v, want 3", kept)
	}
	// The operator changes the sampling ratio; the retired tracer exports its queued
	// batch to the collector, which refuses it.
	if err := os.WriteFile(s.path, []byte(tracedYAML(up, "", `{exporter: otlp-grpc, sample_ratio: 0.5}`, "5s")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	waitRetiredClosed(t, s)
	if exp.calls.Load() == 0 {
		t.Fatal("the retired tracer never exported its queued spans")
	}
	if got := counterValue(t, s, "tollgate_traces_total", "decision", "kept"); got != 3 {
		t.Errorf("after a reload that changed tracing:, tollgate_traces_total{decision=kept} = %v, want 3", got)
	}
	if got := counterValue(t, s, "tollgate_trace_export_failures_total"); got != float64(exp.calls.Load()) {
		t.Errorf("tollgate_trace_export_failures_total = %v, want %d (the batches the collector refused)", got, exp.calls.Load())
	}
}

// A reload that changes limiter: (here its timeout) keeps the buckets, and the
// limiter's counters go on from where they were. Both timeouts are ones no loaded test
// machine reaches: a check past the default 50ms is answered from the replica's share
// (README), not counted as answered by Redis.
func TestReloadKeepsLimiterCounters(t *testing.T) {
	rds := redistest.Start(t)
	up := startStaticUpstream(t)
	cfg := func(timeout string) string {
		return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://` + up + `/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], limits: [{per: endpoint, requests: 1000, window: second}]}
limiter: {store: redis, redis: {url: "` + rds.URL() + `"}, prefetch: 0s, timeout: ` + timeout + `}
logging: {level: error, access_log: false}
`
	}
	s := newServerWith(t, cfg("3s"), Options{Logger: discardLogger()})
	send := func() {
		t.Helper()
		ctx := newProxyCtx(benchChatBody)
		proxyOnce(s, ctx)
		if ctx.Response.StatusCode() != 200 {
			t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
	for range 5 {
		send()
	}
	checks := counterValue(t, s, "tollgate_limiter_checks_total", "answered", "redis")
	trips := counterValue(t, s, "tollgate_limiter_redis_round_trips_total")
	if checks != 5 || trips < 1 {
		t.Fatalf("before the reload: checks{answered=redis} %v, want 5; round trips %v", checks, trips)
	}
	if err := os.WriteFile(s.path, []byte(cfg("4s")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	waitRetiredClosed(t, s)
	if got := counterValue(t, s, "tollgate_limiter_checks_total", "answered", "redis"); got != checks {
		t.Errorf("after a reload that changed limiter.timeout, checks{answered=redis} = %v, want %v", got, checks)
	}
	if got := counterValue(t, s, "tollgate_limiter_redis_round_trips_total"); got < trips {
		t.Errorf("after the reload round trips = %v, was %v", got, trips)
	}
	send()
	if got := counterValue(t, s, "tollgate_limiter_checks_total", "answered", "redis"); got != checks+1 {
		t.Errorf("a check on the new limiter: checks{answered=redis} = %v, want %v", got, checks+1)
	}
}
