package tracing

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tollgate/tollgate/internal/buildinfo"
)

// exportedResource returns the resource attributes of a span the configured
// pipeline exports.
func exportedResource(t *testing.T) map[attribute.Key]attribute.Value {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tr, err := NewWithExporter(context.Background(), Config{}, nil, exp)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	_, sp := tr.Start(context.Background(), SpecAuth)
	sp.End()
	if err := tr.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range spans[0].Resource.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

// Resource semantic conventions, "Semantic attributes with SDK-provided default
// value": service.name, telemetry.sdk.language, telemetry.sdk.name and
// telemetry.sdk.version MUST be provided by the SDK (the Go SDK's resource.Default()
// has them; a resource.New without resource.WithTelemetrySDK() does not).
func TestResourceHasTelemetrySDK(t *testing.T) {
	res := exportedResource(t)
	for key, want := range map[attribute.Key]string{"telemetry.sdk.name": "opentelemetry", "telemetry.sdk.language": "go", "telemetry.sdk.version": ""} {
		v, ok := res[key]
		if !ok || v.AsString() == "" || (want != "" && v.AsString() != want) {
			t.Errorf("resource %s = %q (present %v), want %q; resource %v", key, v.AsString(), ok, want, res)
		}
	}
}

// service.version (Recommended on the service resource) names the build: without it a
// trace viewer cannot tell spans of the old and new gateway apart during a rollout.
func TestResourceHasServiceVersion(t *testing.T) {
	if v, ok := exportedResource(t)["service.version"]; !ok || v.AsString() == "" {
		t.Errorf("resource has no service.version (present %v, %q)", ok, v.AsString())
	}
}

// OTEL_RESOURCE_ATTRIBUTES names the version where the build recorded none.
func TestServiceVersionFromEnvironment(t *testing.T) {
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "service.version=1.4.2")
	if v := exportedResource(t)["service.version"]; v.AsString() != "1.4.2" {
		t.Errorf("service.version %q, want the environment's 1.4.2", v.AsString())
	}
}

// A version given at link time (-ldflags "-X main.version=…", which the command passes
// on) is the spans' service.version too, as `tollgate version` prints it.
func TestServiceVersionGivenAtLinkTime(t *testing.T) {
	buildinfo.SetGiven("3.1.4")
	defer buildinfo.SetGiven("dev")
	if v := exportedResource(t)["service.version"]; v.AsString() != "3.1.4" {
		t.Errorf("service.version %q, want the given 3.1.4", v.AsString())
	}
}
