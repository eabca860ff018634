package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func BenchmarkRouteDone(b *testing.B) {
	r := New(prometheus.NewRegistry()).Route("chat", "llama", "stable")
	b.ReportAllocs()
	for b.Loop() {
		r.Done(200, 1200*time.Millisecond, 150*time.Millisecond, 12*time.Millisecond, 512, 128, 0.0001)
	}
}

func BenchmarkRouteDoneParallel(b *testing.B) {
	r := New(prometheus.NewRegistry()).Route("chat", "llama", "stable")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.Done(200, 1200*time.Millisecond, 150*time.Millisecond, 12*time.Millisecond, 512, 128, 0.0001)
		}
	})
}

// BenchmarkRouteWebSearches counts an answer's web searches, a series that exists.
func BenchmarkRouteWebSearches(b *testing.B) {
	r := New(prometheus.NewRegistry()).Route("chat", "claude", "stable")
	b.ReportAllocs()
	for b.Loop() {
		r.WebSearches(2)
	}
}

func BenchmarkAttemptObserve(b *testing.B) {
	a := New(prometheus.NewRegistry()).Attempt("llama", "10.0.0.1:8000")
	b.ReportAllocs()
	for b.Loop() {
		a.Observe(OutcomeOK)
	}
}

func BenchmarkEndpointInFlight(b *testing.B) {
	e := New(prometheus.NewRegistry()).Endpoint("chat")
	b.ReportAllocs()
	for b.Loop() {
		e.Begin()
		e.End()
	}
}
