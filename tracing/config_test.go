package tracing

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func ptr[T any](v T) *T { return &v }

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		keys []string
	}{
		{"empty is tracing off", Config{}, nil},
		{"otlp grpc host port", Config{Exporter: ExporterOTLPGRPC, Endpoint: "127.0.0.1:4317", Insecure: true}, nil},
		{"otlp http url", Config{Exporter: ExporterOTLPHTTP, Endpoint: "https://otel.example.com/v1/traces"}, nil},
		{"otlp default endpoint", Config{Exporter: ExporterOTLPGRPC}, nil},
		{"stdout", Config{Exporter: ExporterStdout, SampleRatio: ptr(0.0), KeepSlowerThan: time.Second}, nil},
		{"unknown exporter", Config{Exporter: "jaeger"}, []string{"exporter"}},
		{"endpoint without port", Config{Exporter: ExporterOTLPGRPC, Endpoint: "collector"}, []string{"endpoint"}},
		{"endpoint with bad scheme", Config{Exporter: ExporterOTLPHTTP, Endpoint: "ftp://collector:21"}, []string{"endpoint"}},
		{"endpoint with credentials", Config{Exporter: ExporterOTLPHTTP, Endpoint: "https://u:p@collector"}, []string{"endpoint"}},
		{"endpoint host gRPC cannot parse", Config{Exporter: ExporterOTLPGRPC, Endpoint: "bad%zz:4317"}, []string{"endpoint"}},
		{"endpoint host with a space", Config{Exporter: ExporterOTLPGRPC, Endpoint: "otel collector:4317"}, []string{"endpoint"}},
		{"endpoint port out of range", Config{Exporter: ExporterOTLPGRPC, Endpoint: "collector:65536"}, []string{"endpoint"}},
		{"endpoint port not a number", Config{Exporter: ExporterOTLPGRPC, Endpoint: "collector:otlp"}, []string{"endpoint"}},
		{"endpoint url port out of range", Config{Exporter: ExporterOTLPHTTP, Endpoint: "http://collector:0/v1/traces"}, []string{"endpoint"}},
		{"endpoint ipv6 and container name", Config{Exporter: ExporterOTLPGRPC, Endpoint: "[::1]:4317"}, nil},
		{"endpoint with underscore", Config{Exporter: ExporterOTLPHTTP, Endpoint: "http://otel_collector:4318"}, nil},
		{"insecure with https", Config{Exporter: ExporterOTLPGRPC, Endpoint: "https://collector:4317", Insecure: true}, []string{"insecure"}},
		{"ratio above one", Config{SampleRatio: ptr(1.5)}, []string{"sample_ratio"}},
		{"ratio negative", Config{SampleRatio: ptr(-0.1)}, []string{"sample_ratio"}},
		{"ratio nan", Config{SampleRatio: ptr(math.NaN())}, []string{"sample_ratio"}},
		{"negative keep_slower_than", Config{KeepSlowerThan: -time.Second}, []string{"keep_slower_than"}},
		{"negative max_pending_traces", Config{MaxPendingTraces: -1}, []string{"max_pending_traces"}},
		{"huge max_pending_traces", Config{MaxPendingTraces: 1 << 30}, []string{"max_pending_traces"}},
		{"bad header name", Config{Exporter: ExporterOTLPGRPC, Headers: map[string]string{"x api key": "v"}}, []string{"headers"}},
		{"empty header value", Config{Exporter: ExporterOTLPHTTP, Headers: map[string]string{"ak-live-key": ""}}, []string{"headers"}},
		{"header value with newline", Config{Exporter: ExporterOTLPHTTP, Headers: map[string]string{"x-api-key": "a\r\nb"}}, []string{"headers.x-api-key"}},
		{"collector settings without an exporter", Config{Endpoint: "collector:4317", Headers: map[string]string{"x-api-key": "k"}, Insecure: true},
			[]string{"endpoint", "headers", "insecure"}},
		{"collector settings with stdout", Config{Exporter: ExporterStdout, Endpoint: "collector:4317"}, []string{"endpoint"}},
		{"every problem at once", Config{Exporter: "zipkin", SampleRatio: ptr(2.0), KeepSlowerThan: -1, MaxPendingTraces: -5},
			[]string{"exporter", "sample_ratio", "keep_slower_than", "max_pending_traces"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var keys []string
			for _, e := range unjoin(tt.cfg.Validate()) {
				var fe *FieldError
				if !errors.As(e, &fe) {
					t.Fatalf("%v is not a *FieldError", e)
				}
				if fe.Error() != fe.Key()+": "+fe.Problem() {
					t.Errorf("Error() = %q", fe.Error())
				}
				keys = append(keys, fe.Key())
			}
			if strings.Join(keys, ",") != strings.Join(tt.keys, ",") {
				t.Errorf("invalid keys %v, want %v", keys, tt.keys)
			}
		})
	}
}

func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	var j interface{ Unwrap() []error }
	if errors.As(err, &j) {
		return j.Unwrap()
	}
	return []error{err}
}

func TestConfigYAML(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		check func(t *testing.T, c Config)
	}{
		{"defaults", `exporter: otlp-grpc`, func(t *testing.T, c Config) {
			if c.sampleRatio() != 1 || !c.keepErrors() || c.serviceName() != "tollgate" || c.maxPendingTraces() != DefaultMaxPendingTraces || c.CaptureContent {
				t.Errorf("defaults: ratio %v keepErrors %v service %q pending %d capture %v",
					c.sampleRatio(), c.keepErrors(), c.serviceName(), c.maxPendingTraces(), c.CaptureContent)
			}
		}},
		{"every key", `
exporter: otlp-http
endpoint: "http://127.0.0.1:4318"
headers: {x-api-key: secret}
insecure: false
sample_ratio: 0
keep_errors: false
keep_slower_than: 1500ms
capture_content: true
service_name: gw
max_pending_traces: 100
`, func(t *testing.T, c Config) {
			if c.sampleRatio() != 0 || c.keepErrors() || c.KeepSlowerThan != 1500*time.Millisecond ||
				!c.CaptureContent || c.serviceName() != "gw" || c.maxPendingTraces() != 100 || c.Headers["x-api-key"] != "secret" {
				t.Errorf("decoded %+v", c)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Config
			dec := yaml.NewDecoder(strings.NewReader(tt.yaml))
			dec.KnownFields(true)
			if err := dec.Decode(&c); err != nil {
				t.Fatal(err)
			}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	_, err := New(context.Background(), Config{Exporter: "jaeger"}, nil)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Key() != "exporter" {
		t.Fatalf("New: %v, want a FieldError for exporter", err)
	}
}

func TestNewNoneIsNoop(t *testing.T) {
	tr, err := New(context.Background(), Config{Exporter: ExporterNone, CaptureContent: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Enabled() {
		t.Error("exporter none is enabled")
	}
	ctx := context.Background()
	got, span := tr.Start(ctx, SpecAuth)
	if got != ctx || span.IsRecording() {
		t.Error("Start with tracing off changed the context or recorded")
	}
	span.End()
	if s := tr.Stats(); s != (Stats{}) {
		t.Errorf("Stats = %+v", s)
	}
	if err := tr.Shutdown(ctx); err != nil {
		t.Error(err)
	}
}

// FuzzValidEndpointBuilds checks that an endpoint Validate accepts builds both
// OTLP exporters, so that `tollgate validate` passing means the tracer starts.
func FuzzValidEndpointBuilds(f *testing.F) {
	for _, s := range []string{"127.0.0.1:4317", "[::1]:4317", "collector:4317", "otel_collector:4317",
		"bad%zz:4317", "http://collector:4318", "https://otel.example.com/v1/traces", "http://[fe80::1%25eth0]:4318",
		"collector:0", "a:b:c", "http://collector:4318/%zz", "[::1%eth0]:4317"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, endpoint string) {
		for _, exp := range []string{ExporterOTLPGRPC, ExporterOTLPHTTP} {
			cfg := Config{Exporter: exp, Endpoint: endpoint, Insecure: !strings.HasPrefix(endpoint, "https://")}
			if cfg.Validate() != nil {
				continue
			}
			tr, err := New(context.Background(), cfg, nil)
			if err != nil {
				t.Fatalf("%s endpoint %q passes validation but the exporter fails: %v", exp, endpoint, err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			_ = tr.Shutdown(ctx)
			cancel()
		}
	})
}
