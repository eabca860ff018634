package tracing

import (
	"context"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"
)

// TestUnkeepableTraceIsNotRecorded: with keep_errors off and no keep_slower_than,
// nothing but the head decision can keep a request, so one it leaves out is not
// recorded at all (no attributes, events or snapshots built only to be thrown away),
// and is counted as discarded all the same. With either tail rule on, it is recorded
// for the tail processor to judge.
func TestUnkeepableTraceIsNotRecorded(t *testing.T) {
	tests := []struct {
		name   string
		cfg    Config
		record bool
	}{
		{"no tail rule", Config{SampleRatio: ptr(0.0), KeepErrors: ptr(false)}, false},
		{"keep_errors", Config{SampleRatio: ptr(0.0)}, true},
		{"keep_slower_than", Config{SampleRatio: ptr(0.0), KeepErrors: ptr(false), KeepSlowerThan: time.Second}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, exp := newTestTracing(t, tt.cfg)
			ctx, root := tr.StartAt(context.Background(), ServerSpec("POST", "/v1/chat/completions"), time.Now())
			uctx, up := tr.Start(ctx, upstream)
			if root.IsRecording() != tt.record || up.IsRecording() != tt.record {
				t.Errorf("server span recording %v, upstream span %v; want %v", root.IsRecording(), up.IsRecording(), tt.record)
			}
			// The upstream still gets a traceparent naming the attempt's span,
			// unsampled.
			var out fasthttp.RequestHeader
			if !Inject(uctx, &out) {
				t.Fatal("no traceparent for the upstream")
			}
			got := trace.SpanContextFromContext(Extract(context.Background(), &out))
			if got.SpanID() != up.SpanContext().SpanID() || got.IsSampled() {
				t.Errorf("upstream parent %v, want the unsampled attempt span %v", got, up.SpanContext())
			}
			SetServerStatus(root, 200)
			up.End()
			root.End()
			if n := len(exported(t, tr, exp)); n != 0 {
				t.Errorf("exported %d spans of a request the ratio left out", n)
			}
			if st := tr.Stats(); st.Kept != 0 || st.Discarded != 1 || st.Pending != 0 {
				t.Errorf("stats %+v, want one request discarded", st)
			}
		})
	}
}

// TestUnkeepableTracesCountedOncePerRequest: requests dropped at their start are
// counted by the head sampler, once each (their children are not counted), so that
// kept and discarded still add up to the requests, whatever their parents.
func TestUnkeepableTracesCountedOncePerRequest(t *testing.T) {
	tr, exp := newTestTracing(t, Config{SampleRatio: ptr(0.5), KeepErrors: ptr(false)})
	const n = 300
	sampled := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled, Remote: true})
	unsampled := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{2}, SpanID: trace.SpanID{2}, Remote: true})
	parents := []context.Context{
		context.Background(),
		trace.ContextWithRemoteSpanContext(context.Background(), sampled),
		// Requests that share a client's trace ID count one each.
		trace.ContextWithRemoteSpanContext(context.Background(), unsampled),
	}
	for i := range n {
		request(tr, parents[i%len(parents)], shape{rootStatus: 500})
	}
	st := tr.Stats()
	if st.Kept+st.Discarded != n || st.Pending != 0 {
		t.Fatalf("stats %+v, want kept and discarded adding up to %d requests", st, n)
	}
	if st.Kept < uint64(n/len(parents)) {
		t.Errorf("kept %d, fewer than the %d requests with a sampled parent", st.Kept, n/len(parents))
	}
	if got := len(exported(t, tr, exp)); got != int(st.Kept)*spansPerRequest {
		t.Errorf("exported %d spans, want %d for %d kept requests", got, int(st.Kept)*spansPerRequest, st.Kept)
	}
}
