//go:build !race

package gateway

import (
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestTracingUnkeepableSampledOutAllocs: with keep_errors: false and no
// keep_slower_than, a trace the ratio does not sample can never be kept, so none of
// its spans is recorded (attributes, events, snapshots) only to be thrown away when
// its root ends: a head decision of Drop costs a non-recording span and a context per
// span. Recording the trace and discarding it cost ~60 allocations per request.
func TestTracingUnkeepableSampledOutAllocs(t *testing.T) {
	yaml := strings.Replace(benchConfig(startStaticUpstream(t)), "logging:",
		"tracing: {exporter: stdout, sample_ratio: 0, keep_errors: false}\nlogging:", 1)
	s := newServerWith(t, yaml, Options{Logger: discardLogger(), SpanExporter: tracetest.NewInMemoryExporter()})
	ctx := newProxyCtx(benchChatBody)
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	// A non-recording span and its context per span, and the server span's start
	// options.
	const budget = 12
	if n := allocsPerRun(200, func() { proxyOnce(s, ctx) }); n > budget {
		t.Fatalf("%.1f allocations per request whose trace cannot be kept, budget %d", n, budget)
	}
}

// TestTracestateTracingOffAllocs: with exporter none the gateway takes no part in the
// trace (README: the client's traceparent and tracestate reach the upstream as sent),
// and reads the client's traceparent only for the access log's trace_id, into the
// request's own buffer: a tracestate beside it, which nothing reads with tracing off,
// is neither copied nor parsed, and the request allocates nothing.
func TestTracestateTracingOffAllocs(t *testing.T) {
	tests := []struct {
		name      string
		accessLog string
	}{
		{"access log off", "access_log: false"},
		{"access log on", "access_log: true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, strings.Replace(benchConfig(startStaticUpstream(t)), "access_log: false", tt.accessLog, 1))
			ctx := newProxyCtx(benchChatBody)
			ctx.Request.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
			ctx.Request.Header.Set("tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
			proxyOnce(s, ctx)
			if ctx.Response.StatusCode() != 200 {
				t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
			const budget = 0
			if n := allocsPerRun(200, func() { proxyOnce(s, ctx) }); n > budget {
				t.Fatalf("%.1f allocations per request with a client tracestate and tracing off, budget %d", n, budget)
			}
		})
	}
}
