//go:build !race

package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestHotPathAllocs(t *testing.T) {
	m := New(prometheus.NewRegistry())
	r := m.Route("chat", "llama", "stable")
	a := m.Attempt("llama", "10.0.0.1:8000")
	e := m.Endpoint("chat")
	rej := m.Rejection("chat", "api_key:requests:minute")
	// The first request of a status code creates its series; later ones
	// must not allocate.
	r.Done(200, time.Second, time.Millisecond, time.Millisecond, 1, 1, 1)
	r.Done(429, time.Second, 0, 0, 0, 0, 0)
	// An own-answer route's series that its shape left out are created on first
	// use; later ones do not allocate either.
	own := m.ShapedRoute("chat", None, None, Shape{Codes: []int{429}})
	own.Done(502, time.Second, time.Millisecond, time.Millisecond, 1, 1, 1)
	own.CachedInput(1, 1)
	own.WebSearches(1)
	own.StreamFailed(StreamCut)
	tests := []struct {
		name string
		f    func()
	}{
		{"Route.Done", func() {
			r.Done(200, 1200*time.Millisecond, 150*time.Millisecond, 12*time.Millisecond, 512, 128, 0.0001)
		}},
		{"Route.Done without tokens", func() { r.Done(429, time.Millisecond, 0, 0, 0, 0, 0) }},
		{"Route.CachedInput", func() { r.CachedInput(384, 64) }},
		{"Route.WebSearches", func() { r.WebSearches(2) }},
		{"Route.StreamFailed", func() { r.StreamFailed(StreamTimeout) }},
		{"own-answer Route.Done", func() { own.Done(429, time.Millisecond, 0, 0, 0, 0, 0) }},
		{"own-answer Route.Done of a status used once", func() {
			own.Done(502, time.Second, time.Millisecond, time.Millisecond, 2, 2, 0.5)
			own.CachedInput(1, 1)
			own.WebSearches(1)
			own.StreamFailed(StreamCut)
		}},
		{"Attempt.Observe", func() { a.Observe(OutcomeForStatus(503)) }},
		{"Endpoint.Begin and End", func() { e.Begin(); e.End() }},
		{"rejection", func() { rej.Inc() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(1000, tt.f); n != 0 {
				t.Errorf("%v allocations per call, want 0", n)
			}
		})
	}
}
