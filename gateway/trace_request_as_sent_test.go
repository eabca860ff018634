package gateway

import (
	"strings"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// GenAI inference span: gen_ai.request.top_p, gen_ai.request.stop_sequences,
// gen_ai.request.frequency_penalty and gen_ai.request.presence_penalty are Recommended
// (the conventions' list beside max_tokens, temperature and seed); a request that
// gives them has them on its attempt span.
func TestUpstreamSpanRecommendedRequestAttributes(t *testing.T) {
	_, addr := startFlakyUpstream(t, 0)
	s, exp := newTracedServer(t, addr, `{exporter: otlp-grpc, sample_ratio: 1}`)
	ctx := newProxyCtx([]byte(`{"model":"once","messages":[{"role":"user","content":"hi"}],"temperature":0.5,"top_p":0.9,"stop":["x","y"],"frequency_penalty":0.1,"presence_penalty":0.2}`))
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	flush(t, s)
	ro := upstreamSpan(t, exp).Snapshot()
	if v, _ := attr(ro, "gen_ai.request.temperature"); v.AsFloat64() != 0.5 {
		t.Fatalf("temperature %v: the span is not the one the request made", v.Emit())
	}
	if v, ok := attr(ro, "gen_ai.request.top_p"); !ok || v.AsFloat64() != 0.9 {
		t.Errorf("gen_ai.request.top_p = %v (present %v), want 0.9", v.Emit(), ok)
	}
	if v, ok := attr(ro, "gen_ai.request.stop_sequences"); !ok || strings.Join(v.AsStringSlice(), ",") != "x,y" {
		t.Errorf("gen_ai.request.stop_sequences = %v (present %v), want [x y]", v.Emit(), ok)
	}
	if v, ok := attr(ro, "gen_ai.request.frequency_penalty"); !ok || v.AsFloat64() != 0.1 {
		t.Errorf("gen_ai.request.frequency_penalty = %v (present %v), want 0.1", v.Emit(), ok)
	}
	if v, ok := attr(ro, "gen_ai.request.presence_penalty"); !ok || v.AsFloat64() != 0.2 {
		t.Errorf("gen_ai.request.presence_penalty = %v (present %v), want 0.2", v.Emit(), ok)
	}
}

// bodyRecordingUpstream answers every request with answer and records the bodies it
// received.
func bodyRecordingUpstream(t *testing.T, answer string) (func() []string, string) {
	var mu sync.Mutex
	var bodies []string
	addr := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		mu.Lock()
		bodies = append(bodies, string(ctx.PostBody()))
		mu.Unlock()
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		ctx.Response.SetBodyString(answer)
	})
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), bodies...)
	}, addr
}

// tracedBackendServer serves endpoint "once" of endpointType from the one backend
// given in YAML flow style, every request traced.
func tracedBackendServer(t *testing.T, backend, endpointType string) (*Server, *tracetest.InMemoryExporter) {
	exp := tracetest.NewInMemoryExporter()
	yaml := `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: ` + backend + `
endpoints:
  - {name: once, type: ` + endpointType + `, routes: [{backend: up}]}
tracing: {exporter: otlp-grpc, sample_ratio: 1}
logging: {level: error}
`
	return newServerWith(t, yaml, Options{Logger: discardLogger(), SpanExporter: exp}), exp
}

// onlyClientSpan is the one client span exported.
func onlyClientSpan(t *testing.T, exp *tracetest.InMemoryExporter) sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	for _, s := range exp.GetSpans() {
		if s.SpanKind == trace.SpanKindClient {
			found = append(found, s.Snapshot())
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d client spans, want 1", len(found))
	}
	return found[0]
}

// GenAI embeddings span: gen_ai.request.encoding_formats ("the encoding formats
// requested in an embeddings operation, if specified") is Recommended; the OpenAI SDKs
// send encoding_format base64 by default.
func TestUpstreamSpanEmbeddingsEncodingFormats(t *testing.T) {
	_, addr := bodyRecordingUpstream(t, `{"object":"list","data":[{"object":"embedding","index":0,"embedding":"AAAAAA=="}],"model":"up-model","usage":{"prompt_tokens":2,"total_tokens":2}}`)
	s, exp := tracedBackendServer(t, `{provider: openai, base_url: "http://`+addr+`/v1", model: up-model}`, "embeddings")
	ctx := newProxyCtx([]byte(`{"model":"once","input":"hi","encoding_format":"base64"}`))
	ctx.Request.SetRequestURI("/v1/embeddings")
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	flush(t, s)
	ro := onlyClientSpan(t, exp)
	if v, ok := attr(ro, "gen_ai.request.encoding_formats"); !ok || strings.Join(v.AsStringSlice(), ",") != "base64" {
		t.Errorf("gen_ai.request.encoding_formats = %v (present %v), want [base64]", v.Emit(), ok)
	}
}

// The attempt span is the CLIENT span of the call to the model: its gen_ai.request.*
// describe the request the model got (gen_ai.request.model is already the backend's
// model, not the client's endpoint name). A temperature the backend's drop_params kept
// from the upstream was not part of that request.
func TestUpstreamSpanDroppedTemperatureNotRecorded(t *testing.T) {
	bodies, addr := bodyRecordingUpstream(t, string(benchChatResp))
	s, exp := tracedBackendServer(t, `{provider: openai, base_url: "http://`+addr+`/v1", model: up-model, drop_params: [temperature]}`, "chat")
	ctx := newProxyCtx([]byte(`{"model":"once","messages":[{"role":"user","content":"hi"}],"temperature":0.5}`))
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	flush(t, s)
	if sent := bodies(); len(sent) != 1 || strings.Contains(sent[0], "temperature") {
		t.Fatalf("upstream got %q, want one request without temperature", sent)
	}
	ro := onlyClientSpan(t, exp)
	if v, ok := attr(ro, "gen_ai.request.temperature"); ok {
		t.Errorf("attempt span has gen_ai.request.temperature = %v, but the upstream request had no temperature (drop_params)", v.Emit())
	}
}

const anthropicHiAnswer = `{"id":"msg_01","type":"message","role":"assistant","model":"claude-3-5-haiku-20241022","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":5,"output_tokens":2}}`

// README: to Anthropic, temperature above 1 is capped at 1 and the backend's max_tokens
// is sent when the client gives none. The attempt span's gen_ai.request.temperature and
// gen_ai.request.max_tokens say what the model was asked: 1 and 4096, not the client's
// 1.5 and nothing. top_p beside a temperature and a blank stop sequence are not sent,
// and not recorded.
func TestUpstreamSpanAnthropicRequestAsSent(t *testing.T) {
	bodies, addr := bodyRecordingUpstream(t, anthropicHiAnswer)
	s, exp := tracedBackendServer(t, `{provider: anthropic, base_url: "http://`+addr+`/v1", model: claude-3-5-haiku-latest, api_key: k, max_tokens: 4096}`, "chat")
	ctx := newProxyCtx([]byte(`{"model":"once","messages":[{"role":"user","content":"hi"}],"temperature":1.5,"top_p":1,"stop":[" ","END"]}`))
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	flush(t, s)
	if sent := bodies(); len(sent) != 1 || !strings.Contains(sent[0], `"max_tokens":4096`) || !strings.Contains(sent[0], `"temperature":1}`) {
		t.Fatalf("upstream got %q, want max_tokens 4096 and temperature 1", sent)
	}
	ro := onlyClientSpan(t, exp)
	if v, ok := attr(ro, "gen_ai.request.temperature"); !ok || v.AsFloat64() != 1 {
		t.Errorf("gen_ai.request.temperature = %v (present %v), want 1 (what Anthropic was sent)", v.Emit(), ok)
	}
	if v, ok := attr(ro, "gen_ai.request.max_tokens"); !ok || v.AsInt64() != 4096 {
		t.Errorf("gen_ai.request.max_tokens = %v (present %v), want 4096 (the backend's default, sent)", v.Emit(), ok)
	}
	if v, ok := attr(ro, "gen_ai.request.top_p"); ok {
		t.Errorf("gen_ai.request.top_p = %v, but Anthropic was sent none beside the temperature", v.Emit())
	}
	if v, ok := attr(ro, "gen_ai.request.stop_sequences"); !ok || strings.Join(v.AsStringSlice(), ",") != "END" {
		t.Errorf("gen_ai.request.stop_sequences = %v (present %v), want [END] (the blank one is not sent)", v.Emit(), ok)
	}
}
