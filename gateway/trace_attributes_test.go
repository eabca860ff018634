package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// The GenAI conventions make gen_ai.request.choice.count ("if available, in the
// request, and !=1"), gen_ai.request.seed ("if the request includes a seed") and
// gen_ai.output.type (when the request asks for an output type: response_format)
// Conditionally Required on the inference span: the attempt's span carries each when
// the request gives it, and none otherwise.
func TestUpstreamSpanConditionalGenAIAttributes(t *testing.T) {
	_, addr := startFlakyUpstream(t, 0)
	s, exp := newTracedServer(t, addr, `{exporter: otlp-grpc, sample_ratio: 1}`)
	const msgs = `"messages":[{"role":"user","content":"hi"}]`
	for _, tc := range []struct {
		name, members string
		want          map[string]any
	}{
		{"none given", ``, map[string]any{}},
		{"n and seed", `,"n":2,"seed":42`,
			map[string]any{"gen_ai.request.choice.count": int64(2), "gen_ai.request.seed": int64(42)}},
		{"n of one is the default", `,"n":1,"seed":0`, map[string]any{"gen_ai.request.seed": int64(0)}},
		{"n over OpenAI's 128 as sent", `,"n":200`, map[string]any{"gen_ai.request.choice.count": int64(200)}},
		{"json schema", `,"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object"}}}`,
			map[string]any{"gen_ai.output.type": "json"}},
		{"json object", `,"response_format":{"type":"json_object"}`, map[string]any{"gen_ai.output.type": "json"}},
		{"text", `,"response_format":{"type":"text"}`, map[string]any{"gen_ai.output.type": "text"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exp.Reset()
			ctx := newProxyCtx([]byte(`{"model":"once",` + msgs + tc.members + `}`))
			proxyOnce(s, ctx)
			if ctx.Response.StatusCode() != 200 {
				t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
			}
			flush(t, s)
			ro := upstreamSpan(t, exp).Snapshot()
			for _, k := range []string{"gen_ai.request.choice.count", "gen_ai.request.seed", "gen_ai.output.type"} {
				v, ok := attr(ro, k)
				want, wanted := tc.want[k]
				switch {
				case ok != wanted:
					t.Errorf("%s present %v (%v), want present %v", k, ok, v.Emit(), wanted)
				case ok && v.AsInterface() != want:
					t.Errorf("%s = %v, want %v", k, v.AsInterface(), want)
				}
			}
		})
	}
}

// The HTTP server span conventions (stable) make url.path and url.scheme Required on
// every server span.
func TestServerSpanURLAttributes(t *testing.T) {
	_, addr := startFlakyUpstream(t, 0)
	s, exp := newTracedServer(t, addr, `{exporter: otlp-grpc, sample_ratio: 1}`)
	ctx := newProxyCtx(benchChatBody)
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	flush(t, s)
	server := byName(exp.GetSpans())["POST /v1/chat/completions"]
	if len(server) != 1 {
		t.Fatalf("%d server spans", len(server))
	}
	ro := server[0].Snapshot()
	if v, ok := attr(ro, "url.path"); !ok || v.AsString() != "/v1/chat/completions" {
		t.Errorf("server span url.path = %q (present %v), want /v1/chat/completions", v.AsString(), ok)
	}
	if v, ok := attr(ro, "url.scheme"); !ok || v.AsString() != "http" {
		t.Errorf("server span url.scheme = %q (present %v), want http", v.AsString(), ok)
	}
}

// A request the gateway answers itself (the model list, an unknown path, a wrong
// method, an unreadable request) has a server span too, as every request does: in the
// client's trace, named by method and route (by its method alone where no route
// matched, "HTTP" for a method the HTTP conventions do not know), ended with its
// status; its access line names that trace.
func TestOwnAnswerServerSpan(t *testing.T) {
	var logs bytes.Buffer
	exp := tracetest.NewInMemoryExporter()
	s := newServerWith(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://127.0.0.1:9/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
tracing: {exporter: otlp-grpc, sample_ratio: 1}
logging: {level: info}
`, Options{Logger: slogTo(&logs), SpanExporter: exp})
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	for _, tc := range []struct {
		name, method, path string
		unreadable         bool
		span, route        string
		status             int
	}{
		{"model list", "GET", "/v1/models", false, "GET /v1/models", "/v1/models", 200},
		{"one model", "GET", "/v1/models/chat", false, "GET /v1/models/{model}", "/v1/models/{model}", 200},
		{"unknown path", "GET", "/v2/nothing", false, "GET", "", 404},
		{"wrong method", "GET", "/v1/chat/completions", false, "GET /v1/chat/completions", "/v1/chat/completions", 405},
		{"unknown method", "BREW", "/v1/models", false, "HTTP /v1/models", "/v1/models", 405},
		{"unreadable request", "POST", "/v1/chat/completions", true, "POST /v1/chat/completions", "/v1/chat/completions", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exp.Reset()
			logs.Reset()
			ctx := &fasthttp.RequestCtx{}
			ctx.Init2(&sinkConn{wake: make(chan bool, 1)}, nopLogger{}, true)
			ctx.Request.Header.SetMethod(tc.method)
			ctx.Request.SetRequestURI(tc.path)
			ctx.Request.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
			if tc.unreadable {
				s.serveParseError(ctx, errors.New("malformed request line"))
			} else {
				s.serveAPI(ctx)
			}
			if ctx.Response.StatusCode() != tc.status {
				t.Fatalf("status %d, want %d: %s", ctx.Response.StatusCode(), tc.status, ctx.Response.Body())
			}
			flush(t, s)
			var servers []tracetest.SpanStub
			for _, sp := range exp.GetSpans() {
				if sp.SpanKind == trace.SpanKindServer {
					servers = append(servers, sp)
				}
			}
			if len(servers) != 1 {
				t.Fatalf("%d server spans, want 1", len(servers))
			}
			sp := servers[0]
			if sp.Name != tc.span || sp.SpanContext.TraceID().String() != traceID {
				t.Errorf("server span %q in trace %s, want %q in the client's %s", sp.Name, sp.SpanContext.TraceID(), tc.span, traceID)
			}
			ro := sp.Snapshot()
			if v, _ := attr(ro, "http.route"); v.AsString() != tc.route {
				t.Errorf("http.route %q, want %q", v.AsString(), tc.route)
			}
			if v, _ := attr(ro, "http.response.status_code"); v.AsInt64() != int64(tc.status) {
				t.Errorf("http.response.status_code %v, want %d", v.Emit(), tc.status)
			}
			if v, _ := attr(ro, "url.path"); v.AsString() != tc.path {
				t.Errorf("url.path %q, want %q", v.AsString(), tc.path)
			}
			var line struct {
				TraceID string `json:"trace_id"`
			}
			found := false
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, `"msg":"request"`) {
					if err := json.Unmarshal([]byte(l), &line); err != nil {
						t.Fatal(err)
					}
					found = true
				}
			}
			if !found {
				t.Fatalf("no access line in %q", logs.String())
			}
			if line.TraceID != traceID {
				t.Errorf("access line trace_id %q, want the client's %s", line.TraceID, traceID)
			}
		})
	}
}
