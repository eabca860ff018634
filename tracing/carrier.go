package tracing

import (
	"context"
	"encoding/hex"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Header is the part of an HTTP header that propagation needs. fasthttp's
// *RequestHeader and *ResponseHeader have it.
type Header interface {
	Peek(key string) []byte
	Set(key, value string)
}

const (
	traceparentHeader = "traceparent"
	tracestateHeader  = "tracestate"
)

// HeaderCarrier adapts a Header to propagation.TextMapCarrier, with no map
// in between.
type HeaderCarrier struct{ H Header }

var _ propagation.TextMapCarrier = HeaderCarrier{}

// Get returns the header's value, or "" when it is absent.
func (c HeaderCarrier) Get(key string) string {
	b := c.H.Peek(key)
	if len(b) == 0 {
		return ""
	}
	return string(b)
}

// Set sets the header.
func (c HeaderCarrier) Set(key, value string) { c.H.Set(key, value) }

// Keys returns the trace context headers present; a Header cannot list
// the others, and the W3C propagator never asks.
func (c HeaderCarrier) Keys() []string {
	var keys []string
	for _, k := range [...]string{traceparentHeader, tracestateHeader} {
		if len(c.H.Peek(k)) > 0 {
			keys = append(keys, k)
		}
	}
	return keys
}

// Extract returns ctx with the client's W3C trace context (traceparent,
// tracestate) as the remote parent of the spans started from it. It works
// whether tracing is on or off, so that the upstream continues the client's
// trace either way. Without a traceparent it returns ctx as is.
func Extract(ctx context.Context, h Header) context.Context {
	if len(h.Peek(traceparentHeader)) == 0 {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, HeaderCarrier{h})
}

// Inject sets traceparent (and tracestate when there is one) on the upstream
// request from the span in ctx. Nothing is set when ctx carries no valid span
// context.
func Inject(ctx context.Context, h Header) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	propagation.TraceContext{}.Inject(ctx, HeaderCarrier{h})
}

// AppendTraceID appends the hex trace ID of the span in ctx to dst, for the
// access log; it appends nothing when there is none.
func AppendTraceID(ctx context.Context, dst []byte) []byte {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		return dst
	}
	id := sc.TraceID()
	return hex.AppendEncode(dst, id[:])
}
