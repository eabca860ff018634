package tracing

import (
	"context"
	"testing"
	"time"
)

// TestDiscardedSpanIsNotExported: a span ended with Discard stands for nothing (an
// upstream attempt the backend refused before any upstream saw it) and is never
// exported, whether the head sampler kept its trace or the tail processor keeps it for
// an error; the request's other spans are, and an unsampled one leaves no record of
// its root behind.
func TestDiscardedSpanIsNotExported(t *testing.T) {
	for _, c := range []struct {
		name  string
		ratio float64
	}{
		{"sampled at its start", 1},
		{"kept for an error", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr, exp := newTestTracing(t, Config{SampleRatio: ptr(c.ratio)})
			ctx, root := tr.StartAt(context.Background(), ServerSpec("POST", "/v1/chat/completions"), time.Now())
			_, refused := tr.Start(ctx, upstream)
			Discard(refused)
			_, attempt := tr.Start(ctx, upstream)
			SetClientStatus(attempt, 502)
			attempt.End()
			SetServerStatus(root, 502)
			root.End()

			spans := exported(t, tr, exp)
			if len(spans) != 2 {
				t.Fatalf("%d spans exported, want the server span and the one attempt made", len(spans))
			}
			for _, s := range spans {
				if s.SpanContext.SpanID() == refused.SpanContext().SpanID() {
					t.Errorf("the discarded span was exported as %q", s.Name)
				}
			}
			for i := range tr.tail.shards {
				if n := len(tr.tail.shards[i].roots); n != 0 {
					t.Errorf("shard %d keeps %d open spans' roots after every span ended", i, n)
				}
			}
		})
	}
}
