package tracing

import (
	"context"
	"testing"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"
)

// W3C Trace Context, tracestate: "Empty and whitespace-only list members are
// allowed ... some vendors automatically inject whitespace after a comma separator,
// even in the case of an empty header." Such members are left out; the list stands.
func TestExtractTracestateBlankMembers(t *testing.T) {
	for _, tt := range []struct {
		name, tracestate string
		fields           []string
		want             string
	}{
		{"space member", "rojo=00f067aa0ba902b7, ,congo=t61rcWkgMzE", nil, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"},
		{"tab member", "a=1,\t,b=2", nil, "a=1,b=2"},
		{"empty members", "a=1,,b=2,", nil, "a=1,b=2"},
		{"only whitespace", " , \t", nil, ""},
		{"blank field among fields", "", []string{"a=1", " ", "b=2"}, "a=1,b=2"},
		{"space after comma kept out of the value", "a=1, b=2", nil, "a=1,b=2"},
		{"invalid member still drops the list", "a=1, ,b", nil, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var h fasthttp.RequestHeader
			h.Set("traceparent", clientTraceparent)
			if tt.tracestate != "" {
				h.Set("tracestate", tt.tracestate)
			}
			for _, f := range tt.fields {
				h.Add("tracestate", f)
			}
			sc := trace.SpanContextFromContext(Extract(context.Background(), &h))
			if !sc.IsValid() {
				t.Fatal("traceparent not taken")
			}
			if got := sc.TraceState().String(); got != tt.want {
				t.Errorf("tracestate %q, want %q", got, tt.want)
			}
		})
	}
}
