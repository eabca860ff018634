package gateway

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// grpcCollector counts server spans received over OTLP gRPC or OTLP/HTTP.
type grpcCollector struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	names map[string]int
}

func (c *grpcCollector) add(req *coltracepb.ExportTraceServiceRequest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.names == nil {
		c.names = map[string]int{}
	}
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.names[s.GetName()]++
			}
		}
	}
}

func (c *grpcCollector) count(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.names[name]
}

func (c *grpcCollector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	c.add(req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (c *grpcCollector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/traces" {
		http.NotFound(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	c.add(&req)
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func startGRPCCollector(t *testing.T) (*grpcCollector, string) {
	c := &grpcCollector{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, c)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return c, lis.Addr().String()
}

// Guards the real exporters through the gateway's reload: an operator moves
// tracing from an OTLP/gRPC collector to an OTLP/HTTP one by editing the file.
// Requests served before the reload reach the old collector (exported when the old
// tracer retires), requests after it reach the new one only. The existing reload
// tests inject one exporter for both configs and cannot see a request sent to the
// wrong collector.
func TestReloadMovesExportToNewCollector(t *testing.T) {
	up := startStaticUpstream(t)
	a, aAddr := startGRPCCollector(t)
	b := &grpcCollector{}
	hs := httptest.NewServer(b)
	t.Cleanup(hs.Close)

	s := newServerWith(t, tracedYAML(up, "", `{exporter: otlp-grpc, endpoint: "`+aAddr+`", insecure: true}`, "1s"),
		Options{Logger: discardLogger()})
	ctx := newProxyCtx(benchChatBody)
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("status %d", ctx.Response.StatusCode())
	}
	if err := os.WriteFile(s.path, []byte(tracedYAML(up, "", `{exporter: otlp-http, endpoint: "`+hs.URL+`"}`, "1s")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	proxyOnce(s, ctx)
	proxyOnce(s, ctx)
	flush(t, s)
	const server = "POST /v1/chat/completions"
	if !waitWithin(5*time.Second, func() bool { return a.count(server) == 1 }) {
		t.Errorf("old gRPC collector got %d server spans, want 1 (the request before the reload)", a.count(server))
	}
	if n := b.count(server); n != 2 {
		t.Errorf("new HTTP collector got %d server spans, want 2", n)
	}
	time.Sleep(50 * time.Millisecond)
	if n := a.count(server); n != 1 {
		t.Errorf("old collector got %d server spans after the reload, want 1", n)
	}
}
