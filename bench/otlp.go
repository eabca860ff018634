package main

import (
	"context"
	"net"
	"sync/atomic"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

// otlpReceiver is a minimal OTLP/gRPC trace collector that only counts what
// it is sent, so the tracing scenario can check that spans really leave the
// gateway while it measures the cost of exporting them.
type otlpReceiver struct {
	collectortrace.UnimplementedTraceServiceServer
	srv     *grpc.Server
	ln      net.Listener
	spans   atomic.Int64
	exports atomic.Int64
}

func startOTLP(addr string) (*otlpReceiver, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	r := &otlpReceiver{srv: grpc.NewServer(), ln: ln}
	collectortrace.RegisterTraceServiceServer(r.srv, r)
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

// Export counts the spans of one batch.
func (r *otlpReceiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	var n int64
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			n += int64(len(ss.GetSpans()))
		}
	}
	r.spans.Add(n)
	r.exports.Add(1)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func (r *otlpReceiver) addr() string { return r.ln.Addr().String() }

func (r *otlpReceiver) stop() { r.srv.Stop() }
