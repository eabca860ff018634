package gateway

import (
	"bufio"
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tollgate/tollgate/tracing"
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

// upstreamSpan returns the one client span of an exported request.
func upstreamSpan(t *testing.T, exp *tracetest.InMemoryExporter) tracetest.SpanStub {
	t.Helper()
	client := byName(exp.GetSpans())["chat up-model"]
	if len(client) != 1 {
		t.Fatalf("%d client spans, want 1 (spans %v)", len(client), keys(byName(exp.GetSpans())))
	}
	return client[0]
}

func events(s tracetest.SpanStub) map[string]attribute.Value {
	out := map[string]attribute.Value{}
	for _, ev := range s.Events {
		for _, kv := range ev.Attributes {
			if kv.Key == tracing.KeyPrompt || kv.Key == tracing.KeyCompletion {
				out[ev.Name] = kv.Value
			}
		}
		if _, ok := out[ev.Name]; !ok {
			out[ev.Name] = attribute.Value{}
		}
	}
	return out
}

func TestSpansResponseAndContent(t *testing.T) {
	_, addr := startFlakyUpstream(t, 0)
	const (
		plainBody  = `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
		streamBody = `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	)
	tests := []struct {
		name       string
		capture    bool
		stream     bool
		model, id  string
		completion string
	}{
		{"answer, content captured", true, false, "up-model", "chatcmpl-1", "Once upon a time there was a gateway."},
		{"answer, content not captured", false, false, "up-model", "chatcmpl-1", ""},
		{"stream, content captured", true, true, "m", "c", strings.Repeat(" word", 32)},
		{"stream, content not captured", false, true, "m", "c", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := `{exporter: otlp-grpc, sample_ratio: 1}`
			if tt.capture {
				cfg = `{exporter: otlp-grpc, sample_ratio: 1, capture_content: true}`
			}
			s, exp := newTracedServer(t, addr, cfg)
			if tt.stream {
				streamOnce(t, s, newProxyCtx([]byte(streamBody)), make([]byte, 4096))
			} else {
				ctx := newProxyCtx([]byte(plainBody))
				proxyOnce(s, ctx)
				if ctx.Response.StatusCode() != 200 {
					t.Fatalf("status %d", ctx.Response.StatusCode())
				}
			}
			flush(t, s)
			up := upstreamSpan(t, exp)
			ro := up.Snapshot()
			for key, want := range map[string]string{"gen_ai.response.model": tt.model, "gen_ai.response.id": tt.id} {
				if v, _ := attr(ro, key); v.AsString() != want {
					t.Errorf("%s = %q, want %q", key, v.AsString(), want)
				}
			}
			if v, _ := attr(ro, "gen_ai.response.finish_reasons"); strings.Join(v.AsStringSlice(), ",") != "stop" {
				t.Errorf("finish reasons %v, want [stop]", v.AsStringSlice())
			}
			evs := events(up)
			prompt, hasPrompt := evs[tracing.EventPrompt]
			completion, hasCompletion := evs[tracing.EventCompletion]
			if !tt.capture {
				if hasPrompt || hasCompletion {
					t.Errorf("content captured with capture_content off: events %v", evs)
				}
				return
			}
			want := plainBody
			if tt.stream {
				want = streamBody
			}
			// The prompt is the request as the client sent it.
			if prompt.AsString() != want {
				t.Errorf("prompt %q, want %q", prompt.AsString(), want)
			}
			if completion.AsString() != tt.completion {
				t.Errorf("completion %q, want %q", completion.AsString(), tt.completion)
			}
		})
	}
}

// startPausingSSEUpstream streams a role chunk and the first token, waits
// pause, then sends the rest of the answer.
func startPausingSSEUpstream(t *testing.T, pause time.Duration) string {
	t.Helper()
	chunk := func(delta, finish string) string {
		return `data: {"id":"p","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":` + delta +
			`,"logprobs":null,"finish_reason":` + finish + `}]}` + "\n\n"
	}
	return serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetContentType("text/event-stream")
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			w.WriteString(chunk(`{"role":"assistant","content":""}`, "null"))
			w.WriteString(chunk(`{"content":"first"}`, "null"))
			w.Flush()
			time.Sleep(pause)
			w.WriteString(chunk(`{"content":" second"}`, "null"))
			w.WriteString(chunk(`{}`, `"stop"`))
			w.WriteString("data: [DONE]\n\n")
		})
	})
}

// The first-token event is added when the stream ends but carries the
// instant the token came, and its time to first chunk counts from the
// upstream attempt, not from the client's request.
func TestSpanFirstTokenOfStream(t *testing.T) {
	t.Parallel()
	const pause = 200 * time.Millisecond
	s, exp := newTracedServer(t, startPausingSSEUpstream(t, pause), `{exporter: otlp-grpc, sample_ratio: 1}`)
	streamOnce(t, s, newProxyCtx([]byte(`{"model":"once","stream":true,"messages":[]}`)), make([]byte, 4096))
	flush(t, s)
	up := upstreamSpan(t, exp)
	server := byName(exp.GetSpans())["POST /v1/chat/completions"][0]
	var first *sdktrace.Event
	for i := range up.Events {
		if up.Events[i].Name == tracing.EventFirstToken {
			first = &up.Events[i]
		}
	}
	if first == nil {
		t.Fatalf("no first-token event among %+v", up.Events)
	}
	// The token came before the upstream paused; the stream ended after. (The token
	// is stamped when the relay reads it, which a loaded machine may delay by some
	// milliseconds: half the pause still tells before from after.)
	if first.Time.Before(up.StartTime) || up.EndTime.Sub(first.Time) < pause/2 {
		t.Errorf("first token at %v of a %v attempt, want before the %v pause", first.Time.Sub(up.StartTime), up.EndTime.Sub(up.StartTime), pause)
	}
	var ttfc float64
	for _, kv := range first.Attributes {
		if kv.Key == "gen_ai.response.time_to_first_chunk" {
			ttfc = kv.Value.AsFloat64()
		}
	}
	sinceAttempt := first.Time.Sub(up.StartTime).Seconds()
	if ttfc <= 0 || ttfc > sinceAttempt {
		t.Errorf("time to first chunk %vs, want at most the %vs since the attempt's span began (%vs since the request's)",
			ttfc, sinceAttempt, first.Time.Sub(server.StartTime).Seconds())
	}
	if v, _ := attr(up.Snapshot(), "gen_ai.response.time_to_first_chunk"); v.AsFloat64() != ttfc {
		t.Errorf("span's time to first chunk %v, event's %v", v.AsFloat64(), ttfc)
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	return holdPort(t).Addr()
}

func TestSpansAttemptStatusAndTarget(t *testing.T) {
	_, flaky := startFlakyUpstream(t, 1<<40) // always 503
	tests := []struct {
		name   string
		addr   string
		status int64 // 0: no http.response.status_code
	}{
		{"upstream answered 503", flaky, 503},
		{"upstream unreachable", closedPort(t), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, exp := newTracedServer(t, tt.addr, `{exporter: otlp-grpc, sample_ratio: 1}`)
			ctx := newProxyCtx([]byte(`{"model":"once","messages":[]}`))
			proxyOnce(s, ctx)
			if ctx.Response.StatusCode() < 500 {
				t.Fatalf("status %d, want the failure passed on", ctx.Response.StatusCode())
			}
			flush(t, s)
			up := upstreamSpan(t, exp)
			ro := up.Snapshot()
			v, ok := attr(ro, "http.response.status_code")
			if tt.status == 0 && ok {
				t.Errorf("http.response.status_code = %d on an attempt that got no answer", v.AsInt64())
			}
			if tt.status != 0 && v.AsInt64() != tt.status {
				t.Errorf("http.response.status_code = %v, want %d", v.Emit(), tt.status)
			}
			if up.Status.Code != codes.Error {
				t.Errorf("span status %v, want error", up.Status.Code)
			}
			host, port, _ := net.SplitHostPort(tt.addr)
			wantPort, _ := strconv.Atoi(port)
			if v, _ := attr(ro, "server.address"); v.AsString() != host {
				t.Errorf("server.address = %q, want %q", v.AsString(), host)
			}
			if v, _ := attr(ro, "server.port"); v.AsInt64() != int64(wantPort) {
				t.Errorf("server.port = %v, want %d", v.Emit(), wantPort)
			}
			if v, _ := attr(ro, "tollgate.target"); v.AsString() != tt.addr {
				t.Errorf("tollgate.target = %q, want %q", v.AsString(), tt.addr)
			}
		})
	}
}
