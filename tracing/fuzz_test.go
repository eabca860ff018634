package tracing

import (
	"context"
	"testing"
	"unicode/utf8"

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

// FuzzAnswer feeds any bytes to Answer, as a whole body and as one chunk of
// a stream: it must not panic, must keep its text within the capture bound,
// and must record only valid UTF-8, which OTLP requires.
func FuzzAnswer(f *testing.F) {
	f.Add([]byte(chatAnswer))
	f.Add([]byte(completionAnswer))
	f.Add([]byte(embeddingAnswer))
	for _, c := range streamChunks {
		f.Add([]byte(c))
	}
	f.Add([]byte(`{"id":"\ud800","model":"\xff","choices":[{"index":0,"delta":{"content":"\u00e9\ud83d\ude00"},"finish_reason":"st\u0000op"}]}`))
	f.Add([]byte(`{"choices":[{"finish_reason" : "stop"},{"finish_reason":null},1,"x",[]]}`))
	tr, exp := newTestTracing(f, Config{CaptureContent: true})
	f.Fuzz(func(t *testing.T, data []byte) {
		exp.Reset()
		_, span := tr.Start(context.Background(), upstream)
		var a Answer
		a.Start(tr, span)
		a.Body(data)
		a.Chunk(data)
		a.Chunk(data)
		if len(a.text) > maxCapturedContent+utf8.UTFMax {
			t.Fatalf("holding %d bytes of text", len(a.text))
		}
		a.End(span)
		span.End()
		for _, s := range exported(t, tr, exp) {
			for _, kv := range s.Attributes {
				if !utf8.ValidString(kv.Value.Emit()) {
					t.Fatalf("%s = %q is not valid UTF-8", kv.Key, kv.Value.Emit())
				}
			}
			for _, e := range s.Events {
				for _, kv := range e.Attributes {
					if !utf8.ValidString(kv.Value.Emit()) {
						t.Fatalf("event %s: %s is not valid UTF-8", e.Name, kv.Key)
					}
				}
			}
		}
	})
}
