package tracing

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// mapHeader is a Header without fasthttp's normalisation, so the fuzzer
// reaches the parser with any bytes.
type mapHeader map[string]string

func (h mapHeader) Peek(key string) []byte { return []byte(h[key]) }
func (h mapHeader) Set(key, value string)  { h[key] = value }

// FuzzTraceparent holds Extract and Inject equal to OTel's W3C propagator.
func FuzzTraceparent(f *testing.F) {
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "vendor=opaque")
	f.Add("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-future", "")
	f.Add("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "")
	f.Add("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "")
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", "a=1,b=2")
	f.Add("00-00000000000000000000000000000000-00f067aa0ba902b7-01", "")
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-00", "")
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-04", "")
	f.Add("", "x=y")
	f.Fuzz(func(t *testing.T, traceparent, tracestate string) {
		h := mapHeader{}
		if traceparent != "" {
			h["traceparent"] = traceparent
		}
		if tracestate != "" {
			h["tracestate"] = tracestate
		}
		ctx := context.Background()
		got := trace.SpanContextFromContext(Extract(ctx, h))
		want := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier(h)))
		if !got.Equal(want) {
			t.Fatalf("Extract(%q, %q) = %v, propagator says %v", traceparent, tracestate, got, want)
		}
		if !got.IsValid() {
			return
		}
		sctx := trace.ContextWithSpanContext(ctx, got)
		out, ref := mapHeader{}, propagation.MapCarrier{}
		Inject(sctx, out)
		propagation.TraceContext{}.Inject(sctx, ref)
		if out["traceparent"] != ref["traceparent"] || out["tracestate"] != ref["tracestate"] {
			t.Fatalf("Inject wrote %v, propagator writes %v", out, ref)
		}
	})
}
