package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Spans lost to a full export queue have a counter of their own, beside the
// per-trace limit's: tollgate_trace_spans_dropped_total keeps its meaning and
// its single series, so the queries already written on it are unchanged.
func TestTraceSpansQueueDroppedIsItsOwnCounter(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	m.WatchTracing(func() TraceStats { return TraceStats{SpansDropped: 2, SpansQueueDropped: 9} })
	fams := scrape(t, reg, "")
	tests := []struct {
		family string
		want   float64
	}{
		{"tollgate_trace_spans_queue_dropped_total", 9},
		{"tollgate_trace_spans_dropped_total", 2},
	}
	for _, tt := range tests {
		t.Run(tt.family, func(t *testing.T) {
			f, ok := fams[tt.family]
			if !ok {
				t.Fatalf("%s not exported", tt.family)
			}
			if f.GetType() != dto.MetricType_COUNTER {
				t.Errorf("type %v, want counter", f.GetType())
			}
			if n := len(f.GetMetric()); n != 1 {
				t.Fatalf("%d series, want 1: %s", n, describe(f))
			}
			if got := value(series(t, fams, tt.family, map[string]string{})); got != tt.want {
				t.Errorf("= %v, want %v", got, tt.want)
			}
		})
	}
}
