package gateway

import (
	"strings"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/codes"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// traceHeaderUpstream answers like startStaticUpstream and records, per request,
// every value of the traceparent and tracestate headers it received.
type traceHeaderUpstream struct {
	mu          sync.Mutex
	traceparent [][]string
	tracestate  [][]string
}

func startTraceHeaderUpstream(t *testing.T) (*traceHeaderUpstream, string) {
	t.Helper()
	u := &traceHeaderUpstream{}
	addr := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		var tp, ts []string
		for k, v := range ctx.Request.Header.All() {
			switch strings.ToLower(string(k)) {
			case "traceparent":
				tp = append(tp, string(v))
			case "tracestate":
				ts = append(ts, string(v))
			}
		}
		u.mu.Lock()
		u.traceparent = append(u.traceparent, tp)
		u.tracestate = append(u.tracestate, ts)
		u.mu.Unlock()
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		ctx.Response.SetBodyRaw(benchChatResp)
	})
	return u, addr
}

func (u *traceHeaderUpstream) last() (tp, ts []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.traceparent) == 0 {
		return nil, nil
	}
	return u.traceparent[len(u.traceparent)-1], u.tracestate[len(u.tracestate)-1]
}

// A client that sends two traceparent headers gets neither of them to the upstream in
// place of the gateway's own: the upstream sees exactly one traceparent, naming the
// attempt span as its parent.
func TestDuplicateTraceparentNotForwardedUpstream(t *testing.T) {
	up, addr := startTraceHeaderUpstream(t)
	s, exp := newTracedServer(t, addr, `{exporter: otlp-grpc, sample_ratio: 1}`)
	const (
		tp1 = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		tp2 = "00-11111111111111111111111111111111-2222222222222222-01"
	)
	ctx := newProxyCtx(benchChatBody)
	ctx.Request.Header.Add("traceparent", tp1)
	ctx.Request.Header.Add("traceparent", tp2)
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	flush(t, s)
	client := upstreamSpan(t, exp)
	want := "00-" + client.SpanContext.TraceID().String() + "-" + client.SpanContext.SpanID().String() + "-01"
	got, _ := up.last()
	if len(got) != 1 || got[0] != want {
		t.Errorf("upstream received traceparent %q, want exactly [%q] (the gateway's attempt span)", got, want)
	}
}

// When the gateway does not continue the client's trace (its traceparent is
// malformed or absent) it starts a new one; the client's tracestate belongs to the
// trace the gateway did not continue and does not travel upstream beside the new
// traceparent (W3C Trace Context, processing model: a tracestate without a valid
// traceparent is discarded).
func TestTracestateOfDiscardedTraceparentNotForwarded(t *testing.T) {
	up, addr := startTraceHeaderUpstream(t)
	s, exp := newTracedServer(t, addr, `{exporter: otlp-grpc, sample_ratio: 1}`)
	for _, bad := range []string{
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01", // upper-case hex
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace ID
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
		"", // no traceparent at all: W3C says the tracestate MUST be discarded
	} {
		exp.Reset()
		ctx := newProxyCtx(benchChatBody)
		if bad != "" {
			ctx.Request.Header.Set("traceparent", bad)
		}
		ctx.Request.Header.Set("tracestate", "congo=t61rcWkgMzE")
		proxyOnce(s, ctx)
		if ctx.Response.StatusCode() != 200 {
			t.Fatalf("%s: status %d: %s", bad, ctx.Response.StatusCode(), ctx.Response.Body())
		}
		flush(t, s)
		client := upstreamSpan(t, exp)
		if client.Parent.IsRemote() {
			t.Fatalf("%s: the malformed traceparent was continued", bad)
		}
		tp, ts := up.last()
		if want := "00-" + client.SpanContext.TraceID().String() + "-" + client.SpanContext.SpanID().String() + "-01"; len(tp) != 1 || tp[0] != want {
			t.Errorf("%s: upstream traceparent %q, want [%q]", bad, tp, want)
		}
		if len(ts) != 0 {
			t.Errorf("%s: upstream received the client's tracestate %q with the gateway's new trace %s", bad, ts, client.SpanContext.TraceID())
		}
	}
}

// A stream the upstream cuts after its first events is counted in
// tollgate_upstream_attempts_total with outcome error (README); its attempt span's
// tollgate.outcome, documented as the metrics' outcome name, says the same, not the
// "ok" its header earned.
func TestCutStreamAttemptOutcome(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{DisconnectRate: 1, Seed: 1})
	s, exp := newTracedServer(t, addr, `{exporter: otlp-grpc, sample_ratio: 1}`)
	streamOnce(t, s, newProxyCtx([]byte(`{"model":"once","stream":true,"messages":[{"role":"user","content":"hi"}],"max_tokens":32}`)), make([]byte, 4096))
	flush(t, s)
	up := upstreamSpan(t, exp)
	if up.Status.Code != codes.Error {
		t.Fatalf("the cut stream's attempt span is not in error: %v", up.Status)
	}
	if v, _ := attr(up.Snapshot(), "tollgate.outcome"); v.AsString() != "error" {
		t.Errorf("cut stream's attempt span has tollgate.outcome %q, want %q (what tollgate_upstream_attempts_total counts it as)", v.AsString(), "error")
	}
}

// A tracestate split over two header fields is one list (RFC 9110 §5.3, W3C Trace
// Context "combined header value"): the gateway continues the client's trace and
// passes every member on to the upstream, not only one field's.
func TestSplitTracestateForwardedWhole(t *testing.T) {
	up, addr := startTraceHeaderUpstream(t)
	s, exp := newTracedServer(t, addr, `{exporter: otlp-grpc, sample_ratio: 1}`)
	ctx := newProxyCtx(benchChatBody)
	ctx.Request.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	ctx.Request.Header.Add("tracestate", "rojo=00f067aa0ba902b7")
	ctx.Request.Header.Add("tracestate", "congo=t61rcWkgMzE")
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("status %d", ctx.Response.StatusCode())
	}
	flush(t, s)
	server := byName(exp.GetSpans())["POST /v1/chat/completions"]
	if len(server) == 1 {
		t.Logf("server span parent tracestate %q", server[0].Parent.TraceState().String())
	}
	_, ts := up.last()
	all := strings.Join(ts, ",")
	if !strings.Contains(all, "rojo=00f067aa0ba902b7") || !strings.Contains(all, "congo=t61rcWkgMzE") {
		t.Errorf("upstream received tracestate %q, want both members rojo and congo", ts)
	}
}
