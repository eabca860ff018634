package gateway

import (
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// benchmarkProxyTraced is BenchmarkProxyChat with tracingYAML as the tracing section
// (none: tracing off), spans going to a no-op exporter, and hdr's headers (name,
// value, ...) on every request.
func benchmarkProxyTraced(b *testing.B, tracingYAML string, hdr ...string) {
	cfg := benchConfig(startStaticUpstream(b))
	opt := Options{Logger: discardLogger()}
	if tracingYAML != "" {
		cfg = strings.Replace(cfg, "logging:", tracingYAML+"\nlogging:", 1)
		opt.SpanExporter = tracetest.NewNoopExporter()
	}
	s := newServerWith(b, cfg, opt)
	ctx := newProxyCtx(benchChatBody)
	for i := 0; i+1 < len(hdr); i += 2 {
		ctx.Request.Header.Set(hdr[i], hdr[i+1])
	}
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 {
		b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	b.ReportAllocs()
	for b.Loop() {
		proxyOnce(s, ctx)
	}
}

// BenchmarkProxyChatTracingUnkeepable samples nothing and keeps neither errors nor
// slow requests: no trace can be kept, so none is recorded.
func BenchmarkProxyChatTracingUnkeepable(b *testing.B) {
	benchmarkProxyTraced(b, "tracing: {exporter: stdout, sample_ratio: 0, keep_errors: false}")
}

// BenchmarkProxyChatTracingDropped samples nothing but keeps errors: every request is
// recorded, and dropped when its server span ends without one.
func BenchmarkProxyChatTracingDropped(b *testing.B) {
	benchmarkProxyTraced(b, "tracing: {exporter: stdout, sample_ratio: 0}")
}

// BenchmarkProxyChatTracingKept exports every request's spans.
func BenchmarkProxyChatTracingKept(b *testing.B) {
	benchmarkProxyTraced(b, "tracing: {exporter: stdout, sample_ratio: 1}")
}

// BenchmarkProxyChatTracestateTracingOff has the client send traceparent and
// tracestate to a gateway with tracing off.
func BenchmarkProxyChatTracestateTracingOff(b *testing.B) {
	benchmarkProxyTraced(b, "",
		"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
}
