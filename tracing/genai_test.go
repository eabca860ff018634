package tracing

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	genai "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/trace"
)

func attrs(kv []attribute.KeyValue) map[string]attribute.Value {
	m := make(map[string]attribute.Value, len(kv))
	for _, a := range kv {
		m[string(a.Key)] = a.Value
	}
	return m
}

// checkAttrs checks that got holds each attribute of want, with its value, and none
// of absent.
func checkAttrs(t *testing.T, got map[string]attribute.Value, want map[string]any, absent []string) {
	t.Helper()
	for k, w := range want {
		if v, ok := got[k]; !ok || v.AsInterface() != w {
			t.Errorf("%s = %v, want %v", k, v.AsInterface(), w)
		}
	}
	for _, k := range absent {
		if v, ok := got[k]; ok {
			t.Errorf("%s = %v, want none", k, v.AsInterface())
		}
	}
}

func spanNamed(t *testing.T, spans tracetest.SpanStubs, name string) tracetest.SpanStub {
	t.Helper()
	for _, s := range spans {
		if s.Name == name {
			return s
		}
	}
	var names []string
	for _, s := range spans {
		names = append(names, s.Name)
	}
	t.Fatalf("no span %q among %v", name, names)
	return tracetest.SpanStub{}
}

func TestUpstreamSpec(t *testing.T) {
	tests := []struct {
		name                          string
		endpointType, provider, model string
		target                        string
		spanName                      string
		want                          map[string]any
	}{
		{"vllm chat", "chat", "openai", "meta-llama/Llama-3.1-8B-Instruct", "http://10.0.0.1:8000/v1",
			"chat meta-llama/Llama-3.1-8B-Instruct", map[string]any{
				"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.system": "openai",
				"gen_ai.request.model": "meta-llama/Llama-3.1-8B-Instruct", "server.address": "10.0.0.1",
				"server.port": int64(8000), "tollgate.target": "10.0.0.1:8000", "tollgate.backend": "b",
			}},
		{"anthropic default port", "chat", "anthropic", "claude-sonnet", "https://api.anthropic.com/v1",
			"chat claude-sonnet", map[string]any{
				"gen_ai.provider.name": "anthropic", "server.address": "api.anthropic.com", "server.port": int64(443),
				"tollgate.target": "api.anthropic.com:443",
			}},
		{"azure embeddings", "embeddings", "azure", "text-embedding-3-small", "https://x.openai.azure.com",
			"embeddings text-embedding-3-small", map[string]any{
				"gen_ai.operation.name": "embeddings", "gen_ai.provider.name": "azure.ai.openai",
			}},
		{"legacy completions on host:port", "completions", "mock", "mock-1", "127.0.0.1:8001",
			"text_completion mock-1", map[string]any{
				"gen_ai.operation.name": "text_completion", "gen_ai.provider.name": "mock",
				"server.address": "127.0.0.1", "server.port": int64(8001),
			}},
		{"credentials in the url are not recorded", "chat", "openai", "m", "http://user:pw@10.0.0.9:8000/v1",
			"chat m", map[string]any{"tollgate.target": "10.0.0.9:8000", "server.address": "10.0.0.9"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, exp := newTestTracing(t, Config{})
			_, span := tr.Start(context.Background(), UpstreamSpec(tt.endpointType, tt.provider, tt.model, "b", tt.target))
			span.End()
			s := spanNamed(t, exported(t, tr, exp), tt.spanName)
			if s.SpanKind != trace.SpanKindClient {
				t.Errorf("kind %v, want client", s.SpanKind)
			}
			got := attrs(s.Attributes)
			for k, want := range tt.want {
				if v, ok := got[k]; !ok || v.AsInterface() != want {
					t.Errorf("%s = %v, want %v", k, v.AsInterface(), want)
				}
			}
			for k, v := range got {
				if strings.Contains(v.Emit(), "pw") {
					t.Errorf("%s leaks credentials: %s", k, v.Emit())
				}
			}
		})
	}
}

func TestSetters(t *testing.T) {
	tr, exp := newTestTracing(t, Config{})
	ep := NewEndpointAttrs("chat", "chat")
	ctx, server := tr.Start(context.Background(), ServerSpec("POST", "/v1/chat/completions"))
	SetServerRequest(server, true, []byte("POST"), []byte("/v1/chat/completions"), []byte("api-version=1&sig=s"))
	ep.Annotate(server)
	SetRequestID(server, []byte("req-1"), "team-a")
	tr.CapturePrompt(server, []byte("secret prompt"))
	_, rt := tr.Start(ctx, SpecRoute)
	SetRoute(rt, "llama-v2", "canary", 5, 0xabcdef, true)
	rt.End()
	_, lim := tr.Start(ctx, SpecLimit)
	SetLimit(lim, "redis", "refused", "api_key:tokens:minute")
	lim.End()
	_, up := tr.Start(ctx, upstream)
	SetAttempt(up, 2, "ok")
	SetRequest(up, ParseRequest([]byte(`{"max_tokens":256,"temperature":0.7,"stream":true,"n":2,"seed":42,"response_format":{"type":"json_object"}}`)))
	FirstToken(up, time.Now(), 150*time.Millisecond)
	SetResponse(up, "llama-3.1-8b-instruct", "chatcmpl-123", "stop")
	SetUsage(up, 42, 17)
	SetClientStatus(up, 200)
	up.End()
	SetServerStatus(server, 200)
	server.End()
	spans := exported(t, tr, exp)

	tests := []struct {
		span string
		want map[string]any
	}{
		{"POST /v1/chat/completions", map[string]any{
			"http.request.method": "POST", "http.route": "/v1/chat/completions", "http.response.status_code": int64(200),
			"url.scheme": "https", "url.path": "/v1/chat/completions", "url.query": "api-version=1&sig=REDACTED",
			"tollgate.endpoint": "chat", "gen_ai.operation.name": "chat", "tollgate.request_id": "req-1", "tollgate.client": "team-a",
		}},
		{"tollgate.route", map[string]any{
			"tollgate.backend": "llama-v2", "tollgate.variant": "canary", "tollgate.route.weight": int64(5), "tollgate.sticky.hash": "abcdef",
		}},
		{"tollgate.ratelimit", map[string]any{
			"tollgate.limit.store": "redis", "tollgate.outcome": "refused", "tollgate.limit.name": "api_key:tokens:minute",
		}},
		{"chat llama-3.1-8b", map[string]any{
			"tollgate.attempt": int64(2), "tollgate.outcome": "ok", "gen_ai.request.max_tokens": int64(256),
			"gen_ai.request.temperature": 0.7, "gen_ai.request.stream": true,
			"gen_ai.request.choice.count": int64(2), "gen_ai.request.seed": int64(42), "gen_ai.output.type": "json",
			"gen_ai.response.model": "llama-3.1-8b-instruct", "gen_ai.response.id": "chatcmpl-123",
			"gen_ai.usage.input_tokens": int64(42), "gen_ai.usage.output_tokens": int64(17),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.span, func(t *testing.T) {
			got := attrs(spanNamed(t, spans, tt.span).Attributes)
			for k, want := range tt.want {
				if v, ok := got[k]; !ok || v.AsInterface() != want {
					t.Errorf("%s = %v, want %v", k, v.AsInterface(), want)
				}
			}
		})
	}
	t.Run("finish reasons", func(t *testing.T) {
		got := attrs(spanNamed(t, spans, "chat llama-3.1-8b").Attributes)["gen_ai.response.finish_reasons"].AsStringSlice()
		if len(got) != 1 || got[0] != "stop" {
			t.Errorf("finish reasons %v", got)
		}
	})
	t.Run("first token event", func(t *testing.T) {
		evs := spanNamed(t, spans, "chat llama-3.1-8b").Events
		if len(evs) != 1 || evs[0].Name != EventFirstToken {
			t.Fatalf("events %+v", evs)
		}
		if v := attrs(evs[0].Attributes)["gen_ai.response.time_to_first_chunk"].AsFloat64(); v != 0.15 {
			t.Errorf("time to first chunk %v, want 0.15", v)
		}
	})
	t.Run("no content captured by default", func(t *testing.T) {
		for _, s := range spans {
			for _, e := range s.Events {
				if e.Name == EventPrompt || e.Name == EventCompletion {
					t.Errorf("span %q has a content event", s.Name)
				}
			}
		}
	})
}

func TestStatusAndErrors(t *testing.T) {
	tests := []struct {
		name      string
		set       func(trace.Span)
		code      codes.Code
		errorType string
	}{
		{"server 200", func(s trace.Span) { SetServerStatus(s, 200) }, codes.Unset, ""},
		{"server 429 is the client's", func(s trace.Span) { SetServerStatus(s, 429) }, codes.Unset, ""},
		{"server 502", func(s trace.Span) { SetServerStatus(s, 502) }, codes.Error, "502"},
		{"client 429", func(s trace.Span) { SetClientStatus(s, 429) }, codes.Error, "429"},
		{"client 200", func(s trace.Span) { SetClientStatus(s, 200) }, codes.Unset, ""},
		{"recorded error", func(s trace.Span) { RecordError(s, errors.New("dial tcp: refused"), "upstream_refused") }, codes.Error, "upstream_refused"},
		{"nil error", func(s trace.Span) { RecordError(s, nil, "x") }, codes.Unset, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, exp := newTestTracing(t, Config{})
			_, span := tr.Start(context.Background(), upstream)
			tt.set(span)
			span.End()
			s := exported(t, tr, exp)[0]
			if s.Status.Code != tt.code {
				t.Errorf("status %v, want %v", s.Status.Code, tt.code)
			}
			if got := attrs(s.Attributes)["error.type"].AsString(); got != tt.errorType {
				t.Errorf("error.type %q, want %q", got, tt.errorType)
			}
		})
	}
}

func TestCaptureContent(t *testing.T) {
	tr, exp := newTestTracing(t, Config{CaptureContent: true})
	_, span := tr.Start(context.Background(), upstream)
	long := strings.Repeat("é", maxCapturedContent) // 2 bytes each: cut mid-rune
	tr.CapturePrompt(span, []byte(`{"messages":[{"role":"user","content":"hi"}]}`))
	tr.CaptureCompletion(span, []byte(long))
	span.End()
	evs := exported(t, tr, exp)[0].Events
	if len(evs) != 2 || evs[0].Name != EventPrompt || evs[1].Name != EventCompletion {
		t.Fatalf("events %+v", evs)
	}
	if got := attrs(evs[0].Attributes)[string(KeyPrompt)].AsString(); !strings.Contains(got, `"content":"hi"`) {
		t.Errorf("prompt %q", got)
	}
	got := attrs(evs[1].Attributes)[string(KeyCompletion)].AsString()
	if len(got) > maxCapturedContent || !utf8.ValidString(got) || len(got) < maxCapturedContent-1 {
		t.Errorf("completion truncated to %d bytes, valid UTF-8 %v", len(got), utf8.ValidString(got))
	}
}

func TestInvalidUTF8IsReplaced(t *testing.T) {
	tr, exp := newTestTracing(t, Config{})
	_, span := tr.Start(context.Background(), upstream)
	SetRequestID(span, []byte("id-\xff"), "")
	SetResponse(span, "model-\xc3", "", "")
	RecordError(span, errors.New("bad \xfe body"), "upstream_error")
	span.End()
	s := exported(t, tr, exp)[0]
	for _, a := range s.Attributes {
		if a.Value.Type() == attribute.STRING && !utf8.ValidString(a.Value.AsString()) {
			t.Errorf("%s is not valid UTF-8: %q", a.Key, a.Value.AsString())
		}
	}
	for _, e := range s.Events {
		for _, a := range e.Attributes {
			if !utf8.ValidString(a.Value.Emit()) {
				t.Errorf("event %s: %s is not valid UTF-8", e.Name, a.Key)
			}
		}
	}
}

func TestSettersOnNonRecordingSpan(t *testing.T) {
	tr := Disabled()
	_, span := tr.Start(context.Background(), upstream)
	// None of these may panic or do anything on a no-op span.
	NewEndpointAttrs("chat", "chat").Annotate(span)
	SetRequest(span, Request{MaxTokens: 1, Temperature: 1, Stream: true, Choices: 2, HasSeed: true, OutputType: OutputText})
	SetServerRequest(span, true, []byte("BREW"), []byte("/x"), []byte("key=k"))
	SetResponse(span, "m", "id", "stop")
	SetUsage(span, 1, 1)
	FirstToken(span, time.Now(), time.Second)
	Disabled().SetTarget(span, "http://10.0.0.1:8000/v1")
	SetRequestID(span, []byte("r"), "c")
	SetRoute(span, "b", "v", 1, 1, true)
	SetLimit(span, "memory", "allowed", "")
	SetAttempt(span, 1, "ok")
	SetServerStatus(span, 500)
	SetClientStatus(span, 500)
	RecordError(span, errors.New("x"), "x")
	tr.CapturePrompt(span, []byte("p"))
	tr.CaptureCompletion(span, []byte("c"))
	span.End()
	if span.IsRecording() {
		t.Error("no-op span is recording")
	}
}

func TestOperationAndProviderNames(t *testing.T) {
	tests := []struct{ in, op, provider string }{
		{"chat", "chat", "chat"},
		{"completions", "text_completion", "completions"},
		{"embeddings", "embeddings", "embeddings"},
		{"openai", "openai", "openai"},
		{"azure", "azure", "azure.ai.openai"},
		{"anthropic", "anthropic", "anthropic"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := Operation(tt.in); got != tt.op {
				t.Errorf("Operation(%q) = %q, want %q", tt.in, got, tt.op)
			}
			if got := ProviderName(tt.in); got != tt.provider {
				t.Errorf("ProviderName(%q) = %q, want %q", tt.in, got, tt.provider)
			}
		})
	}
}

// The first-token event is added when the stream ends; it must still sit at
// the instant the token came, and its time to first chunk counts from the
// attempt's start.
func TestFirstTokenEventStampedAtFirstToken(t *testing.T) {
	tr, exp := newTestTracing(t, Config{})
	start := time.Now().Add(-30 * time.Second) // a 30 s stream
	_, up := tr.tracer.Start(context.Background(), "chat llama", trace.WithTimestamp(start))
	const ttft = 200 * time.Millisecond
	FirstToken(up, start.Add(ttft), ttft)
	up.End()
	spans := exported(t, tr, exp)
	if len(spans) != 1 || len(spans[0].Events) != 1 {
		t.Fatalf("%d spans, events %+v", len(spans), spans[0].Events)
	}
	ev := spans[0].Events[0]
	if !ev.Time.Equal(start.Add(ttft)) {
		t.Errorf("first-token event at span start + %v, want + %v", ev.Time.Sub(start), ttft)
	}
	if v := attrs(ev.Attributes)["gen_ai.response.time_to_first_chunk"].AsFloat64(); v != ttft.Seconds() {
		t.Errorf("event time to first chunk %v, want %v", v, ttft.Seconds())
	}
	if v := attrs(spans[0].Attributes)["gen_ai.response.time_to_first_chunk"].AsFloat64(); v != ttft.Seconds() {
		t.Errorf("span time to first chunk %v, want %v", v, ttft.Seconds())
	}
}

func TestSetTarget(t *testing.T) {
	tests := []struct {
		name   string
		target string
		want   map[string]any
	}{
		{"url with port", "http://10.0.0.1:8000/v1", map[string]any{
			"server.address": "10.0.0.1", "server.port": int64(8000), "tollgate.target": "10.0.0.1:8000"}},
		{"https default port", "https://api.openai.com/v1", map[string]any{
			"server.address": "api.openai.com", "server.port": int64(443), "tollgate.target": "api.openai.com"}},
		{"ipv6", "http://[::1]:8001/v1", map[string]any{
			"server.address": "::1", "server.port": int64(8001), "tollgate.target": "[::1]:8001"}},
		{"credentials are not recorded", "http://user:pw@10.0.0.9:8000/v1", map[string]any{
			"server.address": "10.0.0.9", "tollgate.target": "10.0.0.9:8000"}},
		{"no target tried", "", map[string]any{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, exp := newTestTracing(t, Config{})
			_, span := tr.Start(context.Background(), UpstreamSpec("chat", "openai", "m", "b", ""))
			Disabled().SetTarget(span, tt.target)
			span.End()
			got := attrs(exported(t, tr, exp)[0].Attributes)
			for k, want := range tt.want {
				if v, ok := got[k]; !ok || v.AsInterface() != want {
					t.Errorf("%s = %v, want %v", k, v.AsInterface(), want)
				}
			}
			for k, v := range got {
				if strings.Contains(v.Emit(), "pw") {
					t.Errorf("%s leaks credentials: %s", k, v.Emit())
				}
			}
			if _, ok := got["server.address"]; ok != (len(tt.want) > 0) {
				t.Errorf("server.address present %v", ok)
			}
		})
	}
}

func TestSetResponseFinishReasons(t *testing.T) {
	tests := []struct {
		name    string
		reasons []string
		want    []string
	}{
		{"one", []string{"stop"}, []string{"stop"}},
		{"one per choice", []string{"stop", "length"}, []string{"stop", "length"}},
		{"empty ones skipped", []string{"", "stop"}, []string{"stop"}},
		{"none", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, exp := newTestTracing(t, Config{})
			_, span := tr.Start(context.Background(), upstream)
			SetResponse(span, "m", "id", tt.reasons...)
			span.End()
			v, ok := attrs(exported(t, tr, exp)[0].Attributes)["gen_ai.response.finish_reasons"]
			if got := v.AsStringSlice(); ok != (tt.want != nil) || strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("finish reasons %v (present %v), want %v", got, ok, tt.want)
			}
		})
	}
}

// The HTTP conventions name a server span "{method} {route}", by its method alone
// without a route, and "HTTP" for a method they do not know, recorded as _OTHER with
// the method as sent beside it.
func TestServerSpecNames(t *testing.T) {
	tests := []struct {
		name, method, route, spanName string
		want                          map[string]any
		absent                        []string
	}{
		{"route", "GET", "/v1/models", "GET /v1/models",
			map[string]any{"http.request.method": "GET", "http.route": "/v1/models"}, []string{"http.request.method_original"}},
		{"no route", "GET", "", "GET",
			map[string]any{"http.request.method": "GET"}, []string{"http.route", "http.request.method_original"}},
		{"unknown method", "BREW", "/v1/models", "HTTP /v1/models",
			map[string]any{"http.request.method": "_OTHER", "http.request.method_original": "BREW", "http.route": "/v1/models"}, nil},
		{"unknown method, no route", "BREW", "", "HTTP",
			map[string]any{"http.request.method": "_OTHER", "http.request.method_original": "BREW"}, []string{"http.route"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, exp := newTestTracing(t, Config{})
			_, span := tr.Start(context.Background(), ServerSpec(tt.method, tt.route))
			SetServerRequest(span, false, []byte(tt.method), []byte("/v1/models"), nil)
			span.End()
			s := spanNamed(t, exported(t, tr, exp), tt.spanName)
			if s.SpanKind != trace.SpanKindServer {
				t.Errorf("kind %v, want server", s.SpanKind)
			}
			got := attrs(s.Attributes)
			tt.want["url.scheme"], tt.want["url.path"] = "http", "/v1/models"
			checkAttrs(t, got, tt.want, tt.absent)
		})
	}
}

// The GenAI conventions make gen_ai.request.choice.count Conditionally Required when
// the request gives it and it is not 1, gen_ai.request.seed when the request has a
// seed (0 included) and gen_ai.output.type when it asks for an output type.
func TestSetRequestConditionalAttributes(t *testing.T) {
	if OutputText != genai.GenAIOutputTypeText.Value.AsString() || OutputJSON != genai.GenAIOutputTypeJSON.Value.AsString() {
		t.Fatalf("output types %q %q differ from the conventions'", OutputText, OutputJSON)
	}
	tests := []struct {
		name   string
		req    Request
		want   map[string]any
		absent []string
	}{
		{"none given", Request{}, nil,
			[]string{"gen_ai.request.choice.count", "gen_ai.request.seed", "gen_ai.output.type"}},
		{"one choice", Request{Choices: 1}, nil, []string{"gen_ai.request.choice.count"}},
		{"all given", Request{Choices: 3, Seed: -7, HasSeed: true, OutputType: OutputText},
			map[string]any{"gen_ai.request.choice.count": int64(3), "gen_ai.request.seed": int64(-7), "gen_ai.output.type": "text"}, nil},
		{"seed zero", Request{HasSeed: true}, map[string]any{"gen_ai.request.seed": int64(0)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, exp := newTestTracing(t, Config{})
			_, span := tr.Start(context.Background(), upstream)
			nan := math.NaN()
			tt.req.Temperature, tt.req.TopP, tt.req.TopK, tt.req.FrequencyPenalty, tt.req.PresencePenalty = nan, nan, nan, nan, nan
			SetRequest(span, tt.req)
			span.End()
			got := attrs(exported(t, tr, exp)[0].Attributes)
			checkAttrs(t, got, tt.want, tt.absent)
		})
	}
}

// The exception event names the failure by its class, as error.type does, and
// carries the error's message: a Go type name (*errors.errorString) groups nothing.
func TestRecordErrorExceptionEvent(t *testing.T) {
	for _, c := range []struct{ errType, wantType string }{
		{"upstream_stream_cut", "upstream_stream_cut"},
		{"", "*errors.errorString"},
	} {
		tr, exp := newTestTracing(t, Config{})
		_, span := tr.Start(context.Background(), upstream)
		RecordError(span, errors.New("upstream closed the stream mid-answer"), c.errType)
		span.End()
		evs := exported(t, tr, exp)[0].Events
		if len(evs) != 1 || evs[0].Name != "exception" {
			t.Fatalf("events %+v, want one exception", evs)
		}
		a := attrs(evs[0].Attributes)
		if got := a["exception.type"].AsString(); got != c.wantType {
			t.Errorf("errType %q: exception.type %q, want %q", c.errType, got, c.wantType)
		}
		if got := a["exception.message"].AsString(); got != "upstream closed the stream mid-answer" {
			t.Errorf("errType %q: exception.message %q", c.errType, got)
		}
	}
}
