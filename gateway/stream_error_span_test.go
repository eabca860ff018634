package gateway

import (
	"testing"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func contractSpanSummary(spans tracetest.SpanStubs) string {
	out := ""
	for _, s := range spans {
		out += s.Name + " kind=" + s.SpanKind.String() + " status=" + s.Status.Code.String() + " parent=" + s.Parent.SpanID().String() + " id=" + s.SpanContext.SpanID().String() + "\n"
		for _, a := range s.Attributes {
			out += "   " + string(a.Key) + "=" + a.Value.Emit() + "\n"
		}
		for _, e := range s.Events {
			out += "   event " + e.Name + "\n"
		}
	}
	return out
}

// TestStreamErrorEventMarksServerSpan: vLLM's engine fails mid-stream and
// sends an error event; tollgate_stream_errors_total{code="upstream_error"}
// counts it, and the server span is Error with error.type set, as a cut stream's
// is: an SRE filtering the trace viewer on failed requests (status=error on the
// root span) finds them.
func TestStreamErrorEventMarksServerSpan(t *testing.T) {
	body := []byte(`data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"hi"},"finish_reason":null}]}` + "\n\n" +
		`data: {"error":{"message":"engine dead","type":"server_error","code":500}}` + "\n\n" +
		"data: [DONE]\n\n")
	addr := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetContentType("text/event-stream")
		ctx.Response.SetBodyRaw(body)
	})
	s, exp := newTracedServer(t, addr, `{exporter: otlp-grpc, sample_ratio: 1}`)
	ctx := newProxyCtx([]byte(`{"model":"once","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	streamOnce(t, s, ctx, make([]byte, 4096))
	flush(t, s)
	spans := byName(exp.GetSpans())
	server := spans["POST /v1/chat/completions"]
	if len(server) != 1 {
		t.Fatalf("spans: %s", contractSpanSummary(exp.GetSpans()))
	}
	if server[0].Status.Code != codes.Error {
		t.Errorf("server span of a stream the upstream failed with an error event: status %v, want Error (as for a cut stream)\n%s",
			server[0].Status.Code, contractSpanSummary(exp.GetSpans()))
	}
	if v, ok := attr(server[0].Snapshot(), "error.type"); !ok || v.AsString() == "" {
		t.Errorf("server span error.type = %q, want set", v.Emit())
	}
}
