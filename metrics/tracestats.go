package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// TraceStats is what the tracing side reports about its tail sampler; the
// counters only grow for the life of one tracer.
type TraceStats struct {
	// Kept, Discarded and Evicted count traces: exported, dropped by the
	// sampling decision, and dropped unfinished to bound memory.
	Kept, Discarded, Evicted uint64
	// SpansDropped counts spans dropped because their trace had too many.
	SpansDropped uint64
	// SpansQueueDropped counts spans of kept traces dropped because the
	// export queue was full (the collector slower than the gateway, or not
	// answering).
	SpansQueueDropped uint64
	// ExportFailures counts batches the exporter failed to send.
	ExportFailures uint64
	// Pending is the number of traces waiting for their root span to end.
	Pending int
}

// WatchTracing makes the registry export the tail sampler's statistics, read
// from f at each scrape. Call it again with the new tracer after a reload;
// the counters then restart from zero, which Prometheus treats as a reset.
func (m *Metrics) WatchTracing(f func() TraceStats) { m.tracing.watch(f) }

// watched is the function a collector reads its statistics from at each scrape; nil
// until set, and a nil function stops the export.
type watched[T any] struct{ f atomic.Pointer[func() T] }

func (w *watched[T]) watch(f func() T) {
	if f == nil {
		w.f.Store(nil)
		return
	}
	w.f.Store(&f)
}

// read returns the statistics, or false when nothing is watched.
func (w *watched[T]) read() (T, bool) {
	f := w.f.Load()
	if f == nil {
		var zero T
		return zero, false
	}
	return (*f)(), true
}

var (
	tracesDesc = prometheus.NewDesc("tollgate_traces_total",
		"Requests (a server span and its children) finished by the tail sampler, by decision (kept, discarded, evicted).",
		[]string{"decision"}, nil)
	traceSpansDroppedDesc = prometheus.NewDesc("tollgate_trace_spans_dropped_total",
		"Spans dropped because their trace exceeded the per-trace span limit.", nil, nil)
	traceSpansQueueDroppedDesc = prometheus.NewDesc("tollgate_trace_spans_queue_dropped_total",
		"Spans of kept traces dropped because the export queue was full.", nil, nil)
	traceExportFailuresDesc = prometheus.NewDesc("tollgate_trace_export_failures_total",
		"Span batches the trace exporter failed to send.", nil, nil)
	tracesPendingDesc = prometheus.NewDesc("tollgate_traces_pending",
		"Traces buffered in memory waiting for their root span to end.", nil, nil)
)

// traceCollector reads the current tracer's statistics at scrape time, so
// the tracing package needs no dependency on Prometheus.
type traceCollector struct{ watched[TraceStats] }

func (c *traceCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- tracesDesc
	ch <- traceSpansDroppedDesc
	ch <- traceSpansQueueDroppedDesc
	ch <- traceExportFailuresDesc
	ch <- tracesPendingDesc
}

func (c *traceCollector) Collect(ch chan<- prometheus.Metric) {
	s, ok := c.read()
	if !ok {
		return
	}
	ch <- prometheus.MustNewConstMetric(tracesDesc, prometheus.CounterValue, float64(s.Kept), "kept")
	ch <- prometheus.MustNewConstMetric(tracesDesc, prometheus.CounterValue, float64(s.Discarded), "discarded")
	ch <- prometheus.MustNewConstMetric(tracesDesc, prometheus.CounterValue, float64(s.Evicted), "evicted")
	ch <- prometheus.MustNewConstMetric(traceSpansDroppedDesc, prometheus.CounterValue, float64(s.SpansDropped))
	ch <- prometheus.MustNewConstMetric(traceSpansQueueDroppedDesc, prometheus.CounterValue, float64(s.SpansQueueDropped))
	ch <- prometheus.MustNewConstMetric(traceExportFailuresDesc, prometheus.CounterValue, float64(s.ExportFailures))
	ch <- prometheus.MustNewConstMetric(tracesPendingDesc, prometheus.GaugeValue, float64(s.Pending))
}
