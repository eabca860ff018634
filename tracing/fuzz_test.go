package tracing

import (
	"context"
	"maps"
	"strings"
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

// FuzzTraceparent holds Extract and Inject equal to OTel's W3C propagator, given the
// tracestate without its whitespace-only members: W3C Trace Context allows them, and
// the propagator would reject the whole list for one.
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
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "rojo=00f067aa0ba902b7, ,congo=t61rcWkgMzE")
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", " \t, a=1 ,,\t")
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
		ref := propagation.MapCarrier{}
		maps.Copy(ref, h)
		if tracestate != "" {
			ref["tracestate"] = withoutBlankMembers(tracestate)
		}
		want := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(ctx, ref))
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

// withoutBlankMembers is the tracestate list ts less its members of only spaces and
// tabs, which W3C Trace Context allows.
func withoutBlankMembers(ts string) string {
	var kept []string
	for _, m := range strings.Split(ts, ",") {
		if strings.TrimLeft(m, " \t") != "" {
			kept = append(kept, m)
		}
	}
	return strings.Join(kept, ",")
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

// FuzzParseRequest feeds any bytes to ParseRequest as a request body: it must not
// panic, must bound the stop sequences it keeps, and must keep only valid UTF-8,
// which OTLP requires.
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(`{"model":"m","max_tokens":64,"temperature":0.5,"top_p":0.9,"stop":["x","y"],"seed":7,"n":2,"response_format":{"type":"json_object"}}`))
	f.Add([]byte(`{"max_tokens":4096,"stop_sequences":["END"],"top_k":40,"output_config":{"format":{"type":"json_schema"}}}`))
	f.Add([]byte(`{"encoding_format":"base64","stop":"\ud800","temp\u0065rature":1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req := ParseRequest(body)
		if len(req.StopSequences) > maxStopSequences || len(req.EncodingFormats) > 1 {
			t.Fatalf("%d stop sequences, %d encoding formats", len(req.StopSequences), len(req.EncodingFormats))
		}
		for _, s := range append(req.StopSequences, req.EncodingFormats...) {
			if !utf8.ValidString(s) {
				t.Fatalf("%q is not valid UTF-8", s)
			}
		}
	})
}
