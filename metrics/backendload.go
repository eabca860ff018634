package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// BackendLoad is one backend's load as a scrape reads it: its targets' requests in
// flight and, for a backend with max_concurrency, its queue.
type BackendLoad struct {
	Backend string
	Targets []TargetLoad
	// Queued is set for a backend with max_concurrency: the fields below are its
	// queue's.
	Queued bool
	// Waiting is the requests waiting now, Tenants the tenants they belong to in a
	// fair queue (0 without queue.fair).
	Waiting int64
	Tenants int
	// Outcomes count, by outcome label, how the requests that found every slot taken
	// left the queue.
	Outcomes []OutcomeCount
	// WaitBounds are the upper bounds, in seconds, of the wait histogram of the
	// requests served from the queue; WaitCounts its cumulative counts, one more than
	// the bounds (the last: every request), WaitSum their waits' sum in seconds.
	WaitBounds []float64
	WaitCounts []uint64
	WaitSum    float64
}

// TargetLoad is one target's requests in flight; Target is the label value of
// tollgate_backend_up.
type TargetLoad struct {
	Target   string
	InFlight int64
}

// OutcomeCount is a counter's value by its outcome label.
type OutcomeCount struct {
	Outcome string
	N       uint64
}

// WatchBackends has every scrape read the backends' load from f.
func (m *Metrics) WatchBackends(f func() []BackendLoad) { m.backends.read.Store(&f) }

var (
	backendInFlightDesc = prometheus.NewDesc("tollgate_backend_in_flight",
		"Requests this gateway has in flight on each target of a backend (what max_concurrency caps).",
		[]string{"backend", "target"}, nil)
	queueWaitingDesc = prometheus.NewDesc("tollgate_backend_queue_waiting",
		"Requests waiting in a backend's queue for a slot (backends with max_concurrency).",
		[]string{"backend"}, nil)
	queueTenantsDesc = prometheus.NewDesc("tollgate_backend_queue_tenants",
		"Tenants with a request waiting in a backend's fair queue (queue.fair; 0 without).",
		[]string{"backend"}, nil)
	queueRequestsDesc = prometheus.NewDesc("tollgate_backend_queue_requests_total",
		"Requests that found every slot of a backend taken, by how they left its queue: served (waited, then took a slot), full (no room: 503), pushed_out (a fair queue gave its place to another tenant's: 503), timeout, client_gone, stranded (every target left service).",
		[]string{"backend", "outcome"}, nil)
	queueWaitDesc = prometheus.NewDesc("tollgate_backend_queue_wait_seconds",
		"Time requests served from a backend's queue waited there.",
		[]string{"backend"}, nil)
)

// backendCollector reads the backends' load at scrape time, so that the providers
// package needs no dependency on Prometheus.
type backendCollector struct {
	read atomic.Pointer[func() []BackendLoad]
}

func (c *backendCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- backendInFlightDesc
	ch <- queueWaitingDesc
	ch <- queueTenantsDesc
	ch <- queueRequestsDesc
	ch <- queueWaitDesc
}

func (c *backendCollector) Collect(ch chan<- prometheus.Metric) {
	f := c.read.Load()
	if f == nil {
		return
	}
	for _, b := range (*f)() {
		for _, t := range b.Targets {
			ch <- prometheus.MustNewConstMetric(backendInFlightDesc, prometheus.GaugeValue, float64(t.InFlight), b.Backend, t.Target)
		}
		if !b.Queued {
			continue
		}
		ch <- prometheus.MustNewConstMetric(queueWaitingDesc, prometheus.GaugeValue, float64(b.Waiting), b.Backend)
		ch <- prometheus.MustNewConstMetric(queueTenantsDesc, prometheus.GaugeValue, float64(b.Tenants), b.Backend)
		for _, o := range b.Outcomes {
			ch <- prometheus.MustNewConstMetric(queueRequestsDesc, prometheus.CounterValue, float64(o.N), b.Backend, o.Outcome)
		}
		if len(b.WaitCounts) != len(b.WaitBounds)+1 {
			continue
		}
		buckets := make(map[float64]uint64, len(b.WaitBounds))
		for i, le := range b.WaitBounds {
			buckets[le] = b.WaitCounts[i]
		}
		ch <- prometheus.MustNewConstHistogram(queueWaitDesc, b.WaitCounts[len(b.WaitBounds)], b.WaitSum, buckets, b.Backend)
	}
}
