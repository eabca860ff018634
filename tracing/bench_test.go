package tracing

import (
	"context"
	"encoding/hex"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// gatewayRequest makes the spans, attributes, events and header work of one
// proxied chat request, as the gateway does it.
type gatewayRequest struct {
	tr       *Tracing
	server   *Spec
	endpoint *EndpointAttrs
	upstream *Spec
	in, out  fasthttp.RequestHeader
	reqID    []byte
	method   []byte
	path     []byte
	target   string
	traceID  []byte // the access log's trace_id
	// firstToken is when the stream's first token came.
	firstToken time.Time
	// body is the request body sent upstream, which sent reads when the
	// attempt's span records.
	body []byte
	sent SentRequest
}

var sentBody = []byte(`{"model":"meta-llama/Llama-3.1-8B-Instruct","messages":[{"role":"user","content":"Hello"}],` +
	`"max_tokens":256,"temperature":0.7,"stream":true,"n":2,"seed":42,"response_format":{"type":"json_object"}}`)

// benchTier is the service tier the benchmark's answer names, in a buffer as the
// gateway's request holds it.
var benchTier = []byte("default")

func newGatewayRequest(tr *Tracing, traceparent string) *gatewayRequest {
	g := &gatewayRequest{
		tr:         tr,
		server:     ServerSpec("POST", "/v1/chat/completions"),
		endpoint:   NewEndpointAttrs("chat", "chat"),
		upstream:   UpstreamSpec("chat", "openai", "meta-llama/Llama-3.1-8B-Instruct", "llama", ""),
		target:     "http://10.0.0.1:8000/v1",
		reqID:      []byte("0123456789abcdef"),
		method:     []byte("POST"),
		path:       []byte("/v1/chat/completions"),
		traceID:    make([]byte, 0, 32),
		firstToken: time.Now(),
		body:       sentBody,
	}
	if traceparent != "" {
		g.in.Set("traceparent", traceparent)
	}
	return g
}

func (g *gatewayRequest) run(ctx context.Context) {
	tr := g.tr
	var clientTrace trace.TraceID
	var clientTraced bool
	if tr.Enabled() {
		ctx = Extract(ctx, &g.in)
	} else {
		// As the gateway does: with tracing off only the access log's trace ID is read.
		clientTrace, clientTraced = ClientTraceID(&g.in)
	}
	ctx, server := tr.Start(ctx, g.server)
	SetServerRequest(server, false, g.method, g.path, nil)
	g.endpoint.Annotate(server)
	SetRequestID(server, g.reqID, "team-a")
	_, auth := tr.Start(ctx, SpecAuth)
	auth.End()
	_, lim := tr.Start(ctx, SpecLimit)
	SetLimit(lim, "memory", "allowed", "")
	lim.End()
	_, rt := tr.Start(ctx, SpecRoute)
	SetRoute(rt, "llama", "stable", 95, 0x1234, true)
	rt.End()
	uctx, up := tr.Start(ctx, g.upstream)
	tr.SetTarget(up, g.target)
	SetAttempt(up, 1, "ok")
	if up.IsRecording() {
		// The provider reads the body it sends (providers.Call.Sent).
		g.sent.Span = up
		g.sent.ReadSent(g.body)
		g.sent.Span = nil
	}
	if tr.Enabled() {
		Inject(uctx, &g.out)
	}
	FirstToken(up, g.firstToken, 120*time.Millisecond)
	SetResponse(up, "meta-llama/Llama-3.1-8B-Instruct", "chatcmpl-1", "stop")
	SetUsage(up, 512, 128)
	SetServiceTier(up, benchTier)
	SetWebSearches(up, 1)
	SetClientStatus(up, 200)
	up.End()
	SetServerStatus(server, 200)
	server.End()
	if clientTraced {
		g.traceID = hex.AppendEncode(g.traceID[:0], clientTrace[:])
	} else {
		g.traceID = AppendTraceID(ctx, g.traceID[:0])
	}
}

func benchmarkRequest(b *testing.B, tr *Tracing, traceparent string, tracestate ...string) {
	g := newGatewayRequest(tr, traceparent)
	for _, ts := range tracestate {
		g.in.Add("tracestate", ts)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		g.run(ctx)
	}
}

func BenchmarkRequestTracingOff(b *testing.B) {
	benchmarkRequest(b, Disabled(), "")
}

func BenchmarkRequestTracingOffClientTraceparent(b *testing.B) {
	benchmarkRequest(b, Disabled(), clientTraceparent)
}

// BenchmarkRequestTracingOffClientTracestate passes a client's traceparent and
// tracestate through, tracing off.
func BenchmarkRequestTracingOffClientTracestate(b *testing.B) {
	benchmarkRequest(b, Disabled(), clientTraceparent, clientTracestate)
}

func benchmarkEnabled(b *testing.B, ratio float64, keepErrors bool) {
	tr, err := newTracing(context.Background(), Config{SampleRatio: &ratio, KeepErrors: &keepErrors}, nil, tracetest.NewNoopExporter())
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	benchmarkRequest(b, tr, "")
}

// BenchmarkRequestTracingDropped is the common case at a low ratio: every
// span recorded, the trace dropped when its root ends.
func BenchmarkRequestTracingDropped(b *testing.B) { benchmarkEnabled(b, 0, true) }

// BenchmarkRequestTracingUnkeepable is a low ratio with keep_errors off and no
// keep_slower_than: a trace the ratio leaves out cannot be kept.
func BenchmarkRequestTracingUnkeepable(b *testing.B) { benchmarkEnabled(b, 0, false) }

// BenchmarkRequestTracingKept exports every trace to a no-op exporter.
func BenchmarkRequestTracingKept(b *testing.B) { benchmarkEnabled(b, 1, true) }

// BenchmarkSetTarget records an attempt's target on a recording span that keeps
// no attributes, so that only SetTarget's own work counts.
func BenchmarkSetTarget(b *testing.B) {
	sdk := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithRawSpanLimits(sdktrace.SpanLimits{AttributeCountLimit: 0}))
	defer sdk.Shutdown(context.Background())
	_, span := sdk.Tracer("t").Start(context.Background(), "attempt")
	defer span.End()
	tr := Disabled()
	b.ReportAllocs()
	for b.Loop() {
		tr.SetTarget(span, "http://10.0.0.1:8000/v1")
	}
}

func BenchmarkExtractInject(b *testing.B) {
	var in, out fasthttp.RequestHeader
	in.Set("traceparent", clientTraceparent)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		Inject(Extract(ctx, &in), &out)
	}
}

// BenchmarkAnswerChunk is the per-chunk cost of a traced stream, with
// capture_content off (ID, model and finish reason only) and on.
func BenchmarkAnswerChunk(b *testing.B) {
	for _, capture := range []bool{false, true} {
		name := "capture off"
		if capture {
			name = "capture on"
		}
		b.Run(name, func(b *testing.B) {
			tr, err := newTracing(context.Background(), Config{CaptureContent: capture}, nil, tracetest.NewNoopExporter())
			if err != nil {
				b.Fatal(err)
			}
			defer tr.Shutdown(context.Background())
			_, span := tr.Start(context.Background(), upstream)
			defer span.End()
			chunk := []byte(streamChunks[1])
			var a Answer
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if i%256 == 0 {
					a.Start(tr, span)
				}
				a.Chunk(chunk)
			}
		})
	}
}
