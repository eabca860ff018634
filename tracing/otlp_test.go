package tracing

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// receiver collects what an OTLP exporter sends, over either transport.
type receiver struct {
	coltracepb.UnimplementedTraceServiceServer
	mu      sync.Mutex
	reqs    []*coltracepb.ExportTraceServiceRequest
	headers []string // values of x-api-key seen
}

func (r *receiver) add(req *coltracepb.ExportTraceServiceRequest, apiKey string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = append(r.reqs, req)
	r.headers = append(r.headers, apiKey)
}

// Export implements the collector's gRPC TraceService.
func (r *receiver) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	r.add(req, strings.Join(md.Get("x-api-key"), ","))
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// ServeHTTP implements OTLP/HTTP with protobuf bodies.
func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path != "/v1/traces" || req.Method != http.MethodPost {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if ct := req.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		http.Error(w, "content type "+ct, http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, 16<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var msg coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &msg); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.add(&msg, req.Header.Get("X-Api-Key"))
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (r *receiver) spans() (res map[string]string, spans []*tracepb.Span, apiKeys []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	res = map[string]string{}
	for _, req := range r.reqs {
		for _, rs := range req.GetResourceSpans() {
			for _, kv := range rs.GetResource().GetAttributes() {
				res[kv.GetKey()] = kv.GetValue().GetStringValue()
			}
			for _, ss := range rs.GetScopeSpans() {
				spans = append(spans, ss.GetSpans()...)
			}
		}
	}
	return res, spans, r.headers
}

func startGRPCReceiver(t *testing.T) (*receiver, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, r)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return r, lis.Addr().String()
}

func startHTTPReceiver(t *testing.T) (*receiver, string) {
	t.Helper()
	r := &receiver{}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return r, srv.URL
}

func protoAttrs(kvs []*commonpb.KeyValue) map[string]any {
	m := map[string]any{}
	for _, kv := range kvs {
		switch v := kv.GetValue().GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			m[kv.GetKey()] = v.StringValue
		case *commonpb.AnyValue_IntValue:
			m[kv.GetKey()] = v.IntValue
		case *commonpb.AnyValue_BoolValue:
			m[kv.GetKey()] = v.BoolValue
		case *commonpb.AnyValue_DoubleValue:
			m[kv.GetKey()] = v.DoubleValue
		}
	}
	return m
}

func TestOTLPExportEndToEnd(t *testing.T) {
	tests := []struct {
		name     string
		exporter string
		start    func(*testing.T) (*receiver, string)
		endpoint func(addr string) string
		insecure bool
	}{
		{"grpc host:port", ExporterOTLPGRPC, startGRPCReceiver, func(a string) string { return a }, true},
		{"grpc url", ExporterOTLPGRPC, startGRPCReceiver, func(a string) string { return "http://" + a }, false},
		{"http url without path", ExporterOTLPHTTP, startHTTPReceiver, func(u string) string { return u }, false},
		{"http host:port", ExporterOTLPHTTP, startHTTPReceiver, func(u string) string { return strings.TrimPrefix(u, "http://") }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rcv, addr := tt.start(t)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			tr, err := New(ctx, Config{
				Exporter:    tt.exporter,
				Endpoint:    tt.endpoint(addr),
				Insecure:    tt.insecure,
				Headers:     map[string]string{"x-api-key": "collector-key"},
				SampleRatio: ptr(0.0),
				ServiceName: "tollgate-test",
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
			kept := request(tr, context.Background(), shape{rootStatus: 502})
			request(tr, context.Background(), shape{}) // dropped at ratio 0
			if err := tr.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			if f := tr.Stats().ExportFailures; f != 0 {
				t.Fatalf("%d export failures", f)
			}

			res, spans, keys := rcv.spans()
			if res["service.name"] != "tollgate-test" {
				t.Errorf("resource %v", res)
			}
			for _, k := range keys {
				if k != "collector-key" {
					t.Errorf("x-api-key header %q", k)
				}
			}
			if len(spans) != spansPerRequest {
				t.Fatalf("received %d spans, want %d", len(spans), spansPerRequest)
			}
			rootID := kept.SpanID()
			traceID := kept.TraceID()
			for _, s := range spans {
				if !bytes.Equal(s.GetTraceId(), traceID[:]) {
					t.Errorf("span %q in another trace", s.GetName())
				}
				a := protoAttrs(s.GetAttributes())
				switch s.GetName() {
				case "POST /v1/chat/completions":
					if len(s.GetParentSpanId()) != 0 || !bytes.Equal(s.GetSpanId(), rootID[:]) {
						t.Errorf("server span is not the root")
					}
					if s.GetKind() != tracepb.Span_SPAN_KIND_SERVER || s.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_ERROR {
						t.Errorf("server span kind %v status %v", s.GetKind(), s.GetStatus())
					}
					if a["http.response.status_code"] != int64(502) || a["http.route"] != "/v1/chat/completions" {
						t.Errorf("server span attributes %v", a)
					}
				case "chat llama-3.1-8b":
					if !bytes.Equal(s.GetParentSpanId(), rootID[:]) {
						t.Errorf("upstream span's parent is not the root")
					}
					if s.GetKind() != tracepb.Span_SPAN_KIND_CLIENT || a["gen_ai.request.model"] != "llama-3.1-8b" ||
						a["gen_ai.provider.name"] != "openai" || a["server.port"] != int64(8000) {
						t.Errorf("upstream span kind %v attributes %v", s.GetKind(), a)
					}
				default:
					if !bytes.Equal(s.GetParentSpanId(), rootID[:]) {
						t.Errorf("span %q's parent is not the root", s.GetName())
					}
				}
			}
		})
	}
}

func TestOTLPExportFailureIsCounted(t *testing.T) {
	// A port nothing listens on: take one and close it.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Without retries the first failure is final, so the test needs no
	// waiting.
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL("http://"+addr+"/v1/traces"),
		otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := newTracing(ctx, Config{}, nil, exp)
	if err != nil {
		t.Fatal(err)
	}
	request(tr, context.Background(), shape{})
	if err := tr.ForceFlush(ctx); err != nil {
		t.Fatalf("ForceFlush: %v", err)
	}
	if f := tr.Stats().ExportFailures; f != 1 {
		t.Errorf("%d export failures, want 1", f)
	}
	if err := tr.Shutdown(ctx); err != nil {
		t.Logf("Shutdown: %v", err)
	}
}
