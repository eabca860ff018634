package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// BodyLoad is what the bodies held whole in memory take, as a scrape reads it: the
// bytes of the request body buffers and of the upstream answer buffers counted against
// server.max_buffered_bytes, and that bound, which they share.
type BodyLoad struct {
	Held, Answers, Limit int64
}

// WatchBodies has every scrape read the bodies' load from f.
func (m *Metrics) WatchBodies(f func() BodyLoad) { m.bodies.read.Store(&f) }

var (
	bodyHeldDesc = prometheus.NewDesc("tollgate_request_body_buffered_bytes",
		"Bytes of request body buffers held in memory, all requests together (bodies over 64 KiB), which server.max_buffered_bytes bounds with the answers held (tollgate_response_body_buffered_bytes).",
		nil, nil)
	answerHeldDesc = prometheus.NewDesc("tollgate_response_body_buffered_bytes",
		"Bytes of upstream answer buffers held in memory whole, all requests together (answers not streamed, over 64 KiB, from their read until written to the client), which server.max_buffered_bytes bounds with the request bodies held.",
		nil, nil)
	bodyLimitDesc = prometheus.NewDesc("tollgate_request_body_buffered_limit_bytes",
		"server.max_buffered_bytes: past it, with the request bodies and the answers held together, a request body or an upstream answer is refused with 503 overloaded.",
		nil, nil)
)

// bodyCollector reads the bodies' load at scrape time.
type bodyCollector struct {
	read atomic.Pointer[func() BodyLoad]
}

func (c *bodyCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- bodyHeldDesc
	ch <- answerHeldDesc
	ch <- bodyLimitDesc
}

func (c *bodyCollector) Collect(ch chan<- prometheus.Metric) {
	var l BodyLoad
	if f := c.read.Load(); f != nil {
		l = (*f)()
	}
	ch <- prometheus.MustNewConstMetric(bodyHeldDesc, prometheus.GaugeValue, float64(l.Held))
	ch <- prometheus.MustNewConstMetric(answerHeldDesc, prometheus.GaugeValue, float64(l.Answers))
	ch <- prometheus.MustNewConstMetric(bodyLimitDesc, prometheus.GaugeValue, float64(l.Limit))
}
