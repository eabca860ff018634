package gateway

import (
	"strings"
	"testing"
)

// W3C Trace Context, tracestate header field values: "Empty and whitespace-only list
// members are allowed ... some vendors automatically inject whitespace after a comma
// separator, even in the case of an empty header." A list with a whitespace-only member
// is valid, and the gateway, which continues the client's trace, passes its members on.
func TestTracestateWhitespaceOnlyMemberPassedOn(t *testing.T) {
	up, addr := startTraceHeaderUpstream(t)
	s, exp := newTracedServer(t, addr, `{exporter: otlp-grpc, sample_ratio: 1}`)
	ctx := newProxyCtx(benchChatBody)
	ctx.Request.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	ctx.Request.Header.Set("tracestate", "rojo=00f067aa0ba902b7, ,congo=t61rcWkgMzE")
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	flush(t, s)
	if client := upstreamSpan(t, exp); client.SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("client's trace not continued")
	}
	_, ts := up.last()
	all := strings.Join(ts, ",")
	if !strings.Contains(all, "rojo=00f067aa0ba902b7") || !strings.Contains(all, "congo=t61rcWkgMzE") {
		t.Errorf("upstream received tracestate %q, want rojo and congo passed on", ts)
	}
}
