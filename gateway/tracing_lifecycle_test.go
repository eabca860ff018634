package gateway

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// keepExporter records every exported span and survives Shutdown, so that a test
// can see what reached the exporter after a tracer was shut down.
type keepExporter struct {
	mu       sync.Mutex
	names    []string
	shutdown int
}

func (e *keepExporter) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range spans {
		e.names = append(e.names, s.Name())
	}
	return nil
}

func (e *keepExporter) Shutdown(context.Context) error {
	e.mu.Lock()
	e.shutdown++
	e.mu.Unlock()
	return nil
}

func (e *keepExporter) count(name string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, s := range e.names {
		if s == name {
			n++
		}
	}
	return n
}

func tracedYAML(upstream, extraEndpoint, tracingYAML, grace string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: ` + grace + `}
backends:
  up: {provider: openai, base_url: "http://` + upstream + `/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
` + extraEndpoint + `tracing: ` + tracingYAML + `
logging: {level: error, access_log: false}
`
}

// A stream begun under runtime 0 outlives two reloads: the first leaves tracing
// alone (runtime 1 shares the tracer), the second changes it (runtime 1, idle,
// retires at once). The tracer is shut down only when runtime 0 ends too, so the
// stream's spans are exported.
func TestStreamSpansSurviveTwoReloads(t *testing.T) {
	up := startStaticSSEUpstream(t)
	exp := &keepExporter{}
	s := newServerWith(t, tracedYAML(up, "", `{exporter: otlp-grpc, sample_ratio: 1}`, "1s"),
		Options{Logger: discardLogger(), SpanExporter: exp})

	ctx := newProxyCtx([]byte(`{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	ctx.Response.Reset()
	s.serveAPI(ctx) // the stream is decided; its relay has not run yet
	hijacked.Lock()
	h := hijacked.m[ctx]
	delete(hijacked.m, ctx)
	hijacked.Unlock()
	if h == nil {
		t.Fatalf("no stream: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}

	// Reload 1: tracing unchanged.
	if err := os.WriteFile(s.path, []byte(tracedYAML(up, "  - {name: other, type: chat, routes: [{backend: up}]}\n",
		`{exporter: otlp-grpc, sample_ratio: 1}`, "1s")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	// Reload 2: tracing changed.
	if err := os.WriteFile(s.path, []byte(tracedYAML(up, "  - {name: other, type: chat, routes: [{backend: up}]}\n",
		`{exporter: otlp-grpc, sample_ratio: 1, keep_slower_than: 5s}`, "1s")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}

	// The stream runs and ends now; the retired tracer's shutdown, which exports
	// its spans, runs on its own once it has.
	h(ctx.Conn().(*sinkConn))
	flush(t, s)
	waitWithin(5*time.Second, func() bool { return exp.count("chat up-model") > 0 })

	if n := exp.count("POST /v1/chat/completions"); n != 1 {
		t.Errorf("server span of the stream exported %d times, want 1 (tracer shutdowns: %d)", n, exp.shutdown)
	}
	if n := exp.count("chat up-model"); n != 1 {
		t.Errorf("upstream span of the stream exported %d times, want 1", n)
	}
}

// When shutdown_grace runs out with a stream still open, shutdown still exports the
// spans of requests that completed moments before, queued in the batch processor.
func TestShutdownGraceExpiryFlushesFinishedSpans(t *testing.T) {
	t.Parallel()
	up := startStaticSSEUpstream(t)
	plain := startStaticUpstream(t)
	exp := &keepExporter{}
	yaml := `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 200ms}
backends:
  up: {provider: openai, base_url: "http://` + up + `/v1", model: up-model}
  plain: {provider: openai, base_url: "http://` + plain + `/v1", model: plain-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
  - {name: plain, type: chat, routes: [{backend: plain}]}
tracing: {exporter: otlp-grpc, sample_ratio: 1}
logging: {level: error, access_log: false}
`
	s := newServerWith(t, yaml, Options{Logger: discardLogger(), SpanExporter: exp})

	// A plain request completes.
	pctx := newProxyCtx([]byte(`{"model":"plain","messages":[{"role":"user","content":"hi"}]}`))
	proxyOnce(s, pctx)
	if pctx.Response.StatusCode() != 200 {
		t.Fatalf("plain status %d", pctx.Response.StatusCode())
	}
	// A stream is still running when shutdown begins.
	ctx := newProxyCtx([]byte(`{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	ctx.Response.Reset()
	s.serveAPI(ctx)
	hijacked.Lock()
	h := hijacked.m[ctx]
	delete(hijacked.m, ctx)
	hijacked.Unlock()
	if h == nil {
		t.Fatalf("no stream")
	}
	defer h(ctx.Conn().(*sinkConn))

	_ = s.shutdown() // grace expires: the stream is still open
	if n := exp.count("chat plain-model"); n != 1 {
		t.Errorf("after shutdown returned, the completed request's upstream span was exported %d times, want 1 (exporter shutdowns: %d)", n, exp.shutdown)
	}
}

// At sample_ratio 0 a request refused for a bad API key (401, the client's fault) is
// not kept by keep_errors: the auth span carries error.type without an error status.
func TestBadKeyNotKeptAtRatioZero(t *testing.T) {
	up := startStaticUpstream(t)
	exp := &keepExporter{}
	yaml := `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
auth: {mode: keys, keys: [{name: team-a, key: "sk-good-key-123456"}]}
backends:
  up: {provider: openai, base_url: "http://` + up + `/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
tracing: {exporter: otlp-grpc, sample_ratio: 0}
logging: {level: error, access_log: false}
`
	s := newServerWith(t, yaml, Options{Logger: discardLogger(), SpanExporter: exp})
	ctx := newProxyCtx(benchChatBody)
	ctx.Request.Header.Set("Authorization", "Bearer sk-wrong")
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 401 {
		t.Fatalf("status %d", ctx.Response.StatusCode())
	}
	flush(t, s)
	if n := exp.count("POST /v1/chat/completions"); n != 0 {
		t.Errorf("a 401 at sample_ratio 0 was exported (%d server spans)", n)
	}
}
