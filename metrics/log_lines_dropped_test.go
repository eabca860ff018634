package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Log lines the log queue dropped for a stalled stderr reader are counted from the
// start (0 before anything watches, so rate() works before the first drop).
func TestLogLinesDroppedReadsTheQueue(t *testing.T) {
	tests := []struct {
		name  string
		watch func(*Metrics)
		want  float64
	}{
		{"nothing watched", func(*Metrics) {}, 0},
		{"queue watched", func(m *Metrics) { m.WatchLogDrops(func() uint64 { return 7 }) }, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m := New(reg)
			tt.watch(m)
			fams := scrape(t, reg, "")
			f, ok := fams["tollgate_log_lines_dropped_total"]
			if !ok {
				t.Fatal("tollgate_log_lines_dropped_total not exported")
			}
			if f.GetType() != dto.MetricType_COUNTER {
				t.Errorf("type %v, want counter", f.GetType())
			}
			if got := value(series(t, fams, "tollgate_log_lines_dropped_total", map[string]string{})); got != tt.want {
				t.Errorf("= %v, want %v", got, tt.want)
			}
		})
	}
}
