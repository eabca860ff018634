package tracing

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// otlpReceiver is a real gRPC OTLP trace receiver whose behaviour a test picks.
type otlpReceiver struct {
	coltracepb.UnimplementedTraceServiceServer
	mu      sync.Mutex
	calls   int
	spans   int
	md      []metadata.MD
	fail    error         // answer with this error
	block   chan struct{} // when non-nil, Export waits until closed
	release sync.Once
}

func (r *otlpReceiver) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	r.mu.Lock()
	r.calls++
	r.md = append(r.md, md)
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			r.spans += len(ss.GetSpans())
		}
	}
	fail, block := r.fail, r.block
	r.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
		}
	}
	if fail != nil {
		return nil, fail
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (r *otlpReceiver) stats() (calls, spans int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls, r.spans
}

func startOTLPReceiver(t *testing.T, r *otlpReceiver) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, r)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	t.Cleanup(func() {
		if r.block != nil {
			r.release.Do(func() { close(r.block) })
		}
		srv.Stop()
		<-done
	})
	return lis.Addr().String()
}

// With no endpoint, OTEL_EXPORTER_OTLP_ENDPOINT picks the collector (config.go).
func TestEnvEndpointPicksCollector(t *testing.T) {
	rcv := &otlpReceiver{}
	addr := startOTLPReceiver(t, rcv)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+addr)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tr, err := New(ctx, Config{Exporter: ExporterOTLPGRPC}, nil)
	if err != nil {
		t.Fatal(err)
	}
	request(tr, context.Background(), shape{})
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, n := rcv.stats(); n != spansPerRequest {
		t.Errorf("collector from OTEL_EXPORTER_OTLP_ENDPOINT got %d spans, want %d", n, spansPerRequest)
	}
}

// An operator puts a collector token in tracing.headers for otlp-grpc, e.g. a
// value with a non-ASCII character or a key with a character HTTP allows but
// gRPC metadata does not. grpc-go would refuse every export before it leaves the
// process (no trace ever arrives; the only sign a rate-limited warning and a
// failure counter), so validation rejects what the chosen exporter cannot send.
func TestGRPCHeadersValidatedForGRPC(t *testing.T) {
	for _, h := range []map[string]string{
		{"x-api-key": "clé-secrète"},
		{"x-api-key!": "secret"},
	} {
		rcv := &otlpReceiver{}
		addr := startOTLPReceiver(t, rcv)
		cfg := Config{Exporter: ExporterOTLPGRPC, Endpoint: addr, Insecure: true, Headers: h}
		if err := cfg.Validate(); err != nil {
			continue // rejected up front: fine
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		tr, err := New(ctx, cfg, nil)
		if err != nil {
			cancel()
			continue
		}
		request(tr, context.Background(), shape{})
		_ = tr.ForceFlush(ctx)
		f := tr.Stats().ExportFailures
		_ = tr.Shutdown(ctx)
		cancel()
		if _, spans := rcv.stats(); spans == 0 || f != 0 {
			t.Errorf("headers %q pass Validate, but the collector received %d spans (export failures %d); want a validation error or a working export", h, spans, f)
		}
	}
}
