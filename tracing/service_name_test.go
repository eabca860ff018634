package tracing

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// The service is named by the config's service_name, else OTEL_SERVICE_NAME, else
// "tollgate".
func TestServiceName(t *testing.T) {
	for _, tt := range []struct{ name, env, config, want string }{
		{"default", "", "", DefaultServiceName},
		{"from the environment", "gw-eu", "", "gw-eu"},
		{"config over environment", "gw-eu", "gw-config", "gw-config"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env != "" {
				t.Setenv("OTEL_SERVICE_NAME", tt.env)
			}
			exp := tracetest.NewInMemoryExporter()
			tr, err := NewWithExporter(context.Background(), Config{ServiceName: tt.config}, nil, exp)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Shutdown(context.Background())
			_, sp := tr.Start(context.Background(), SpecAuth)
			sp.End()
			_ = tr.ForceFlush(context.Background())
			spans := exp.GetSpans()
			if len(spans) != 1 {
				t.Fatalf("%d spans", len(spans))
			}
			got := ""
			for _, kv := range spans[0].Resource.Attributes() {
				if kv.Key == "service.name" {
					got = kv.Value.AsString()
				}
			}
			if got != tt.want {
				t.Errorf("service.name %q, want %q", got, tt.want)
			}
		})
	}
}
