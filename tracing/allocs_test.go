//go:build !race

package tracing

import (
	"context"
	"testing"
)

func TestTracingOffAllocs(t *testing.T) {
	tests := []struct {
		name        string
		traceparent string
		tracestate  string
		budget      float64
	}{
		// The whole span work of a request, with tracing off: free.
		{"no client trace context", "", "", 0},
		// The client's traceparent and tracestate pass through as sent: only the
		// access log's trace ID is read, into the request's own buffer.
		{"client traceparent passed through", clientTraceparent, "", 0},
		{"client tracestate passed through", clientTraceparent, clientTracestate, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGatewayRequest(Disabled(), tt.traceparent)
			if tt.tracestate != "" {
				g.in.Set("tracestate", tt.tracestate)
			}
			ctx := context.Background()
			if n := testing.AllocsPerRun(1000, func() { g.run(ctx) }); n > tt.budget {
				t.Errorf("%v allocations per request, budget %v", n, tt.budget)
			}
		})
	}
}

// TestAnswerOffAllocs pins a stream's per-chunk cost with tracing off.
func TestAnswerOffAllocs(t *testing.T) {
	tr := Disabled()
	_, span := tr.Start(context.Background(), upstream)
	var a Answer
	chunk := []byte(streamChunks[1])
	if n := testing.AllocsPerRun(1000, func() {
		a.Start(tr, span)
		a.Chunk(chunk)
		a.End(span)
	}); n != 0 {
		t.Errorf("%v allocations per stream, want 0", n)
	}
}

// A tracestate list with no blank member is parsed as it came, without a copy.
func TestDropBlankMembersAllocs(t *testing.T) {
	ts := "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
	if n := testing.AllocsPerRun(100, func() { _ = dropBlankMembers(ts) }); n != 0 {
		t.Errorf("%v allocations for a list without blank members", n)
	}
}
