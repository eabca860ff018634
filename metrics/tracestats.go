package metrics

import (
	"slices"
	"sync"

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

// WatchTracing adds a tracer to the exported trace statistics, read from f at
// each scrape, and returns the function to call once that tracer is shut down:
// f is read a last time and its counts stay in the totals. The counters sum
// every tracer of the process's life, so a reload that replaces the tracer
// does not set them back (Prometheus would take it for a restart), and a
// retired tracer still counts its last requests and its final export failures.
// tollgate_traces_pending is that of the tracers not yet shut down.
func (m *Metrics) WatchTracing(f func() TraceStats) (retire func()) { return m.tracing.watch(f) }

// plus adds o's statistics to s's.
func (s TraceStats) plus(o TraceStats) TraceStats {
	s.Kept += o.Kept
	s.Discarded += o.Discarded
	s.Evicted += o.Evicted
	s.SpansDropped += o.SpansDropped
	s.SpansQueueDropped += o.SpansQueueDropped
	s.ExportFailures += o.ExportFailures
	s.Pending += o.Pending
	return s
}

// counts is s without its gauge: what a shut down tracer leaves in the totals.
func (s TraceStats) counts() TraceStats {
	s.Pending = 0
	return s
}

// stats are the statistics types a totals sums.
type stats[T any] interface {
	plus(T) T
	counts() T
}

// totals sums the statistics of the sources watched: those still open, read at
// each scrape, and the final counts of those retired.
type totals[T stats[T]] struct {
	mu      sync.Mutex
	watched bool
	retired T
	live    []*func() T
}

func (t *totals[T]) watch(f func() T) (retire func()) {
	p := &f
	t.mu.Lock()
	t.live = append(t.live, p)
	t.watched = true
	t.mu.Unlock()
	return func() { t.retire(p) }
}

// retire moves the source p from the live ones to the retired counts; a second
// call does nothing.
func (t *totals[T]) retire(p *func() T) {
	t.mu.Lock()
	defer t.mu.Unlock()
	// The last read and the move happen under mu, as the scrapes' reads do: a
	// scrape sees the source either live or in retired, never in both or
	// neither, and its counts never lower than a scrape before saw them.
	if i := slices.Index(t.live, p); i >= 0 {
		t.retired = t.retired.plus((*p)().counts())
		t.live = slices.Delete(t.live, i, i+1)
	}
}

// read returns the totals, or false when nothing was ever watched.
func (t *totals[T]) read() (T, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.retired
	for _, f := range t.live {
		s = s.plus((*f)())
	}
	return s, t.watched
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

// traceCollector reads the tracers' statistics at scrape time, so the tracing
// package needs no dependency on Prometheus.
type traceCollector struct{ totals[TraceStats] }

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
