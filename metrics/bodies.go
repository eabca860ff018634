package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// BodyLoad is what the request bodies held take, as a scrape reads it: the bytes of
// the buffers counted against server.max_buffered_bytes, and that bound.
type BodyLoad struct {
	Held, Limit int64
}

// WatchBodies has every scrape read the request bodies' load from f.
func (m *Metrics) WatchBodies(f func() BodyLoad) { m.bodies.read.Store(&f) }

var (
	bodyHeldDesc = prometheus.NewDesc("tollgate_request_body_buffered_bytes",
		"Bytes of request body buffers held in memory, all requests together (bodies over 64 KiB), which server.max_buffered_bytes bounds.",
		nil, nil)
	bodyLimitDesc = prometheus.NewDesc("tollgate_request_body_buffered_limit_bytes",
		"server.max_buffered_bytes: past it a request body is refused with 503 overloaded.",
		nil, nil)
)

// bodyCollector reads the request bodies' load at scrape time.
type bodyCollector struct {
	read atomic.Pointer[func() BodyLoad]
}

func (c *bodyCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- bodyHeldDesc
	ch <- bodyLimitDesc
}

func (c *bodyCollector) Collect(ch chan<- prometheus.Metric) {
	var l BodyLoad
	if f := c.read.Load(); f != nil {
		l = (*f)()
	}
	ch <- prometheus.MustNewConstMetric(bodyHeldDesc, prometheus.GaugeValue, float64(l.Held))
	ch <- prometheus.MustNewConstMetric(bodyLimitDesc, prometheus.GaugeValue, float64(l.Limit))
}
