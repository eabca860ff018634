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
		budget      float64
	}{
		// The whole span work of a request, with tracing off: free.
		{"no client trace context", "", 0},
		// Passing the client's traceparent through costs the context that
		// holds it (a value and the span context boxed in it).
		{"client traceparent passed through", clientTraceparent, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGatewayRequest(Disabled(), tt.traceparent)
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
