package gateway

import (
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestUnkeepableTracesCounted: with keep_errors: false and no keep_slower_than a
// request the ratio leaves out is never recorded, yet tollgate_traces_total counts it
// as discarded, once, failed or not, and nothing waits in tollgate_traces_pending.
func TestUnkeepableTracesCounted(t *testing.T) {
	yaml := strings.Replace(benchConfig(startStaticUpstream(t)), "logging:",
		"tracing: {exporter: stdout, sample_ratio: 0, keep_errors: false}\nlogging:", 1)
	exp := tracetest.NewInMemoryExporter()
	s := newServerWith(t, yaml, Options{Logger: discardLogger(), SpanExporter: exp})
	bodies := [][]byte{benchChatBody, benchChatBody, []byte(`{"model":"no-such-model","messages":[]}`)}
	for _, body := range bodies {
		proxyOnce(s, newProxyCtx(body))
	}
	if got := counterValue(t, s, "tollgate_traces_total", "decision", "discarded"); got != float64(len(bodies)) {
		t.Errorf("tollgate_traces_total{decision=discarded} = %v, want %d", got, len(bodies))
	}
	if got := counterValue(t, s, "tollgate_traces_total", "decision", "kept"); got != 0 {
		t.Errorf("tollgate_traces_total{decision=kept} = %v, want 0", got)
	}
	if got := counterValue(t, s, "tollgate_traces_pending"); got != 0 {
		t.Errorf("tollgate_traces_pending = %v, want 0", got)
	}
	if err := s.rt.Load().tr.ForceFlush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(exp.GetSpans()); n != 0 {
		t.Errorf("%d spans exported", n)
	}
}
