package metrics

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// A reload that changes tracing: replaces the tracer while long streams still use the
// old one: both count until the old one is shut down, whose final counts (the export
// failures of its last flush among them) then stay in the totals, once.
func TestTraceCountersSumTracersAcrossReloads(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	var old, cur atomic.Pointer[TraceStats]
	old.Store(&TraceStats{Kept: 3, Discarded: 5, Pending: 2})
	cur.Store(&TraceStats{})
	retireOld := m.WatchTracing(func() TraceStats { return *old.Load() })
	m.WatchTracing(func() TraceStats { return *cur.Load() })

	steps := []struct {
		name        string
		do          func()
		kept, fails float64
		pending     float64
	}{
		{"both counted", func() { cur.Store(&TraceStats{Kept: 1, Pending: 1}) }, 4, 0, 3},
		{"the old one still counts its streams", func() {
			old.Store(&TraceStats{Kept: 5, Discarded: 5, ExportFailures: 1, Pending: 1})
		}, 6, 1, 2},
		{"its final counts stay after its shutdown", func() {
			old.Store(&TraceStats{Kept: 5, Discarded: 5, ExportFailures: 3, Pending: 1})
			retireOld()
		}, 6, 3, 1},
		{"a second retire adds nothing", retireOld, 6, 3, 1},
		{"a shut down tracer is not read again", func() { old.Store(&TraceStats{}) }, 6, 3, 1},
	}
	for _, st := range steps {
		st.do()
		fams := scrape(t, reg, "")
		got := []float64{
			value(series(t, fams, "tollgate_traces_total", map[string]string{"decision": "kept"})),
			value(series(t, fams, "tollgate_trace_export_failures_total", map[string]string{})),
			value(series(t, fams, "tollgate_traces_pending", map[string]string{})),
		}
		if want := []float64{st.kept, st.fails, st.pending}; got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
			t.Errorf("%s: kept, export failures, pending = %v, want %v", st.name, got, want)
		}
		if got := value(series(t, fams, "tollgate_traces_total", map[string]string{"decision": "discarded"})); got != 5 {
			t.Errorf("%s: discarded = %v, want 5", st.name, got)
		}
	}
}

// A reload that changes limiter: replaces the limiter; the checks and round trips
// counted by the old one stay in the totals.
func TestLimiterCountersSumLimitersAcrossReloads(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	oldStats := LimiterStats{Redis: 5, RoundTrips: 4, DroppedSettlements: 1}
	retireOld := m.WatchLimiter(func() LimiterStats { return oldStats })
	m.WatchLimiter(func() LimiterStats { return LimiterStats{Redis: 2, Fallback: 1, RoundTrips: 2} })
	retireOld()
	retireOld()
	fams := scrape(t, reg, "")
	tests := []struct {
		family string
		labels map[string]string
		want   float64
	}{
		{"tollgate_limiter_checks_total", map[string]string{"answered": "redis"}, 7},
		{"tollgate_limiter_checks_total", map[string]string{"answered": "fallback"}, 1},
		{"tollgate_limiter_redis_round_trips_total", map[string]string{}, 6},
		{"tollgate_limiter_settlements_dropped_total", map[string]string{}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.family+describeLabels(tt.labels), func(t *testing.T) {
			if got := value(series(t, fams, tt.family, tt.labels)); got != tt.want {
				t.Errorf("= %v, want %v", got, tt.want)
			}
		})
	}
}

// Scrapes that run while sources are retired never see a total go down: a source's
// last read and its move into the retired counts are one step for them.
func TestStatsTotalsNeverGoDownWhileSourcesRetire(t *testing.T) {
	var tot totals[LimiterStats]
	const sources = 200
	counts := make([]atomic.Uint64, sources)
	retire := make([]func(), sources)
	for i := range sources {
		retire[i] = tot.watch(func() LimiterStats { return LimiterStats{Redis: counts[i].Load()} })
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range sources {
			counts[i].Add(3)
			retire[i]()
			if i+1 < sources {
				counts[i+1].Add(1)
			}
		}
		close(done)
	}()
	var last uint64
	for scraping := true; scraping; {
		select {
		case <-done:
			scraping = false
		default:
		}
		s, _ := tot.read()
		if s.Redis < last {
			t.Fatalf("total went from %d to %d", last, s.Redis)
		}
		last = s.Redis
	}
	wg.Wait()
	if s, _ := tot.read(); s.Redis != 4*sources-1 {
		t.Errorf("total %d after every source retired, want %d", s.Redis, 4*sources-1)
	}
}
