package tracing

import (
	"context"
	"slices"
	"testing"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"
)

// fasthttp's request header is what the gateway passes in both directions.
var _ Header = (*fasthttp.RequestHeader)(nil)

const (
	clientTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	clientTracestate  = "vendor=opaque,other=1"
)

func TestPropagationRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		enabled bool
	}{
		{"tracing on", true},
		{"tracing off passes the client's context through", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := Disabled()
			if tt.enabled {
				tr, _ = newTestTracing(t, Config{SampleRatio: ptr(0.0)})
			}
			var in fasthttp.RequestHeader
			in.Set("Traceparent", clientTraceparent)
			in.Set("Tracestate", clientTracestate)

			ctx := Extract(context.Background(), &in)
			parent := trace.SpanContextFromContext(ctx)
			if !parent.IsRemote() || parent.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || !parent.IsSampled() {
				t.Fatalf("extracted %+v", parent)
			}
			ctx, server := tr.Start(ctx, ServerSpec("POST", "/v1/chat/completions"))
			ctx, client := tr.Start(ctx, upstream)

			var out fasthttp.RequestHeader
			Inject(ctx, &out)
			client.End()
			server.End()

			got := trace.SpanContextFromContext(Extract(context.Background(), &out))
			if got.TraceID() != parent.TraceID() {
				t.Errorf("upstream trace %s, want the client's %s", got.TraceID(), parent.TraceID())
			}
			wantSpan := parent.SpanID()
			if tt.enabled {
				wantSpan = client.SpanContext().SpanID()
			}
			if got.SpanID() != wantSpan {
				t.Errorf("upstream parent span %s, want %s", got.SpanID(), wantSpan)
			}
			if !got.IsSampled() {
				t.Error("the client's sampled flag was lost")
			}
			if ts := string(out.Peek("tracestate")); ts != clientTracestate {
				t.Errorf("tracestate %q, want %q", ts, clientTracestate)
			}
		})
	}
}

func TestExtractWithoutTraceparent(t *testing.T) {
	tests := []struct {
		name, traceparent string
	}{
		{"absent", ""},
		{"malformed", "00-zz-00-01"},
		{"all zero trace id", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h fasthttp.RequestHeader
			if tt.traceparent != "" {
				h.Set("traceparent", tt.traceparent)
			}
			ctx := context.Background()
			if got := Extract(ctx, &h); trace.SpanContextFromContext(got).IsValid() {
				t.Error("extracted a span context from an invalid header")
			}
			var out fasthttp.RequestHeader
			Inject(ctx, &out)
			if len(out.Peek("traceparent")) != 0 {
				t.Error("injected a traceparent without a span")
			}
		})
	}
}

func TestInjectStartsNewTraceWithoutClientContext(t *testing.T) {
	tr, _ := newTestTracing(t, Config{SampleRatio: ptr(0.0)})
	ctx, span := tr.Start(context.Background(), upstream)
	defer span.End()
	var out fasthttp.RequestHeader
	Inject(ctx, &out)
	got := trace.SpanContextFromContext(Extract(context.Background(), &out))
	if got.TraceID() != span.SpanContext().TraceID() || got.SpanID() != span.SpanContext().SpanID() {
		t.Errorf("upstream got %v, want the client span %v", got, span.SpanContext())
	}
	// At ratio 0 the head decision is "not sampled", and the upstream is
	// told so.
	if got.IsSampled() {
		t.Error("an unsampled trace was sent upstream as sampled")
	}
}

func TestHeaderCarrierKeys(t *testing.T) {
	var h fasthttp.RequestHeader
	c := HeaderCarrier{&h}
	if k := c.Keys(); len(k) != 0 {
		t.Errorf("keys of an empty header: %v", k)
	}
	c.Set("traceparent", clientTraceparent)
	if k := c.Keys(); !slices.Equal(k, []string{"traceparent"}) {
		t.Errorf("keys %v", k)
	}
	if v := c.Get("traceparent"); v != clientTraceparent {
		t.Errorf("Get = %q", v)
	}
}

func TestAppendTraceID(t *testing.T) {
	var h fasthttp.RequestHeader
	h.Set("traceparent", clientTraceparent)
	tests := []struct {
		name string
		ctx  context.Context
		want string
	}{
		{"no trace", context.Background(), "id="},
		{"client trace", Extract(context.Background(), &h), "id=4bf92f3577b34da6a3ce929d0e0e4736"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(AppendTraceID(tt.ctx, []byte("id="))); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
