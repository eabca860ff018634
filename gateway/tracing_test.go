package gateway

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// flakyUpstream fails the first `fail` requests with 503, then answers like
// startStaticUpstream (or its stream), recording each request's traceparent.
type flakyUpstream struct {
	fail         atomic.Int64
	mu           sync.Mutex
	traceparents []string
}

func startFlakyUpstream(t *testing.T, fail int64) (*flakyUpstream, string) {
	t.Helper()
	u := &flakyUpstream{}
	u.fail.Store(fail)
	sse := startStaticSSEUpstream(t)
	sseClient := &fasthttp.HostClient{Addr: sse}
	addr := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		u.mu.Lock()
		u.traceparents = append(u.traceparents, string(ctx.Request.Header.Peek("traceparent")))
		u.mu.Unlock()
		if u.fail.Add(-1) >= 0 {
			ctx.SetStatusCode(503)
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"error":{"message":"busy","type":"server_error","param":null,"code":null}}`)
			return
		}
		if strings.Contains(string(ctx.PostBody()), `"stream":true`) {
			var resp fasthttp.Response
			sseClient.Do(&ctx.Request, &resp)
			resp.CopyTo(&ctx.Response)
			return
		}
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		ctx.Response.SetBodyRaw(benchChatResp)
	})
	return u, addr
}

func newTracedServer(t *testing.T, upstream, tracingYAML string) (*Server, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	yaml := `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://` + upstream + `/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], retries: 2}
  - {name: once, type: chat, routes: [{backend: up}]}
tracing: ` + tracingYAML + `
logging: {level: error}
`
	return newServerWith(t, yaml, Options{Logger: discardLogger(), SpanExporter: exp}), exp
}

func flush(t *testing.T, s *Server) {
	t.Helper()
	if err := s.rt.Load().tr.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func attr(s sdktrace.ReadOnlySpan, key string) (attribute.Value, bool) {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

func byName(spans tracetest.SpanStubs) map[string][]tracetest.SpanStub {
	out := map[string][]tracetest.SpanStub{}
	for _, s := range spans {
		out[s.Name] = append(out[s.Name], s)
	}
	return out
}

func TestSpansPlainRetriedAndStreamed(t *testing.T) {
	up, addr := startFlakyUpstream(t, 0)
	s, exp := newTracedServer(t, addr, `{exporter: otlp-grpc, sample_ratio: 1}`)
	const clientTP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

	t.Run("plain", func(t *testing.T) {
		exp.Reset()
		ctx := newProxyCtx(benchChatBody)
		ctx.Request.Header.Set("traceparent", clientTP)
		proxyOnce(s, ctx)
		flush(t, s)
		spans := byName(exp.GetSpans())
		server := spans["POST /v1/chat/completions"]
		client := spans["chat up-model"]
		if len(server) != 1 || len(client) != 1 || len(spans["tollgate.route"]) != 1 {
			t.Fatalf("span names: %v", keys(spans))
		}
		if server[0].SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || server[0].Parent.SpanID().String() != "00f067aa0ba902b7" {
			t.Errorf("server span does not continue the client's trace: %v parent %v", server[0].SpanContext.TraceID(), server[0].Parent.SpanID())
		}
		if client[0].Parent.SpanID() != server[0].SpanContext.SpanID() {
			t.Errorf("client span is not a child of the server span")
		}
		ro := client[0].Snapshot()
		for key, want := range map[string]string{"gen_ai.request.model": "up-model", "gen_ai.operation.name": "chat"} {
			if v, ok := attr(ro, key); !ok || v.AsString() != want {
				t.Errorf("%s = %v, want %s", key, v.Emit(), want)
			}
		}
		for key, want := range map[string]int64{"gen_ai.usage.input_tokens": 20, "gen_ai.usage.output_tokens": 9, "gen_ai.request.max_tokens": 64} {
			if v, ok := attr(ro, key); !ok || v.AsInt64() != want {
				t.Errorf("%s = %v, want %d", key, v.Emit(), want)
			}
		}
		up.mu.Lock()
		got := up.traceparents[len(up.traceparents)-1]
		up.mu.Unlock()
		if want := "00-4bf92f3577b34da6a3ce929d0e0e4736-" + client[0].SpanContext.SpanID().String() + "-01"; got != want {
			t.Errorf("upstream traceparent %q, want %q (the client span as parent)", got, want)
		}
	})

	t.Run("retried", func(t *testing.T) {
		exp.Reset()
		up.fail.Store(1)
		ctx := newProxyCtx(benchChatBody)
		proxyOnce(s, ctx)
		if ctx.Response.StatusCode() != 200 {
			t.Fatalf("status %d", ctx.Response.StatusCode())
		}
		flush(t, s)
		client := byName(exp.GetSpans())["chat up-model"]
		if len(client) != 2 {
			t.Fatalf("%d client spans, want one per attempt", len(client))
		}
		outcomes := map[string]int64{}
		for _, c := range client {
			o, _ := attr(c.Snapshot(), "tollgate.outcome")
			n, _ := attr(c.Snapshot(), "tollgate.attempt")
			outcomes[o.AsString()] = n.AsInt64()
		}
		if outcomes["status_5xx"] != 1 || outcomes["ok"] != 2 {
			t.Errorf("attempts = %v", outcomes)
		}
	})

	t.Run("streamed", func(t *testing.T) {
		exp.Reset()
		ctx := newProxyCtx([]byte(`{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
		streamOnce(t, s, ctx, make([]byte, 4096))
		flush(t, s)
		client := byName(exp.GetSpans())["chat up-model"]
		if len(client) != 1 {
			t.Fatalf("%d client spans", len(client))
		}
		found := false
		for _, ev := range client[0].Events {
			found = found || ev.Name == "gen_ai.first_token"
		}
		if !found {
			t.Errorf("no first-token event on the streamed attempt")
		}
		if v, _ := attr(client[0].Snapshot(), "gen_ai.usage.output_tokens"); v.AsInt64() != 32 {
			t.Errorf("stream usage = %v", v.Emit())
		}
	})
}

func TestSamplingKeepsErrorsAtRatioZero(t *testing.T) {
	up, addr := startFlakyUpstream(t, 0)
	s, exp := newTracedServer(t, addr, `{exporter: otlp-grpc, sample_ratio: 0}`)
	proxyOnce(s, newProxyCtx(benchChatBody))
	flush(t, s)
	if n := len(exp.GetSpans()); n != 0 {
		t.Fatalf("a successful request at ratio 0 exported %d spans", n)
	}
	up.fail.Store(1)
	ctx := newProxyCtx([]byte(`{"model":"once","messages":[]}`))
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 503 {
		t.Fatalf("status %d", ctx.Response.StatusCode())
	}
	flush(t, s)
	if spans := byName(exp.GetSpans()); len(spans["POST /v1/chat/completions"]) != 1 {
		t.Fatalf("the failed request's trace was not kept: %v", keys(spans))
	}
}

func keys(m map[string][]tracetest.SpanStub) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestSpansRefusedRequest(t *testing.T) {
	_, addr := startFlakyUpstream(t, 0)
	exp := tracetest.NewInMemoryExporter()
	yaml := `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://` + addr + `/v1", model: up-model}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: up}]
    limits: [{per: endpoint, requests: 1, window: hour}]
tracing: {exporter: otlp-grpc, sample_ratio: 1}
logging: {level: error}
`
	s := newServerWith(t, yaml, Options{Logger: discardLogger(), SpanExporter: exp})
	proxyOnce(s, newProxyCtx(benchChatBody))
	flush(t, s)
	exp.Reset()
	ctx := newProxyCtx(benchChatBody)
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 429 {
		t.Fatalf("status %d", ctx.Response.StatusCode())
	}
	flush(t, s)
	spans := byName(exp.GetSpans())
	limit := spans["tollgate.ratelimit"]
	if len(limit) != 1 || len(spans["chat up-model"]) != 0 || len(spans["POST /v1/chat/completions"]) != 1 {
		t.Fatalf("refused request spans: %v", keys(spans))
	}
	if limit[0].Parent.SpanID() != spans["POST /v1/chat/completions"][0].SpanContext.SpanID() {
		t.Errorf("the limit span is not a child of the server span")
	}
	ro := limit[0].Snapshot()
	if v, _ := attr(ro, "tollgate.outcome"); v.AsString() != "refused" {
		t.Errorf("limit outcome = %v", v.Emit())
	}
	if v, _ := attr(ro, "tollgate.limit.name"); v.AsString() != "endpoint:requests:hour" {
		t.Errorf("limit name = %v", v.Emit())
	}
	if v, _ := attr(spans["POST /v1/chat/completions"][0].Snapshot(), "http.response.status_code"); v.AsInt64() != 429 {
		t.Errorf("server span status = %v", v.Emit())
	}
}
