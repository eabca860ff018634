package gateway

import (
	"context"
	"os"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// slowExporter takes a while per batch, as a remote collector does, and records
// span names once the batch is "sent" (keepExporter).
type slowExporter struct {
	keepExporter
	delay time.Duration
}

func (e *slowExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	select {
	case <-time.After(e.delay):
	case <-ctx.Done():
		return ctx.Err()
	}
	return e.keepExporter.ExportSpans(ctx, spans)
}

// An operator changes `tracing:` (say keep_slower_than) while a long stream runs,
// then stops the gateway (SIGTERM) and the stream ends within shutdown_grace. The
// stream's spans sit in the retired tracer, whose shutdown the stream's end starts
// on a goroutine of its own: shutdown waits for it, or main would exit and the
// stream's trace never reach the collector. README: "A reload that changes
// tracing: exports what the old tracer holds once the requests that use it have
// ended", and after the drain "exporting queued spans ... take up to a few seconds
// more".
func TestShutdownExportsRetiredTracerSpans(t *testing.T) {
	t.Parallel()
	up := startStaticSSEUpstream(t)
	exp := &slowExporter{delay: 300 * time.Millisecond}
	s := newServerWith(t, tracedYAML(up, "", `{exporter: otlp-grpc, sample_ratio: 1}`, "5s"),
		Options{Logger: discardLogger(), SpanExporter: exp})

	ctx := newProxyCtx([]byte(`{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	ctx.Response.Reset()
	s.serveAPI(ctx)
	hijacked.Lock()
	h := hijacked.m[ctx]
	delete(hijacked.m, ctx)
	hijacked.Unlock()
	if h == nil {
		t.Fatalf("no stream: %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	if err := os.WriteFile(s.path, []byte(tracedYAML(up, "", `{exporter: otlp-grpc, sample_ratio: 1, keep_slower_than: 5s}`, "5s")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}

	done := make(chan struct{})
	go func() { defer close(done); _ = s.shutdown() }()
	time.Sleep(50 * time.Millisecond) // shutdown is draining, waiting for the stream
	h(ctx.Conn().(*sinkConn))         // the stream ends within the grace
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown did not return")
	}
	// The process exits here.
	if n := exp.count("POST /v1/chat/completions"); n != 1 {
		t.Errorf("when shutdown returned, the stream's server span had been exported %d times, want 1", n)
	}
	// Let the background export finish before the test ends.
	waitWithin(5*time.Second, func() bool { return exp.count("POST /v1/chat/completions") == 1 })
}
