//go:build !race

package tracing

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// TestSetTargetCostsNoMoreThanItsAttributes: SetTarget runs for every upstream
// attempt of a recorded request (every request with keep_errors on, the default,
// whatever the ratio), and its target's host and port are fixed when the config is
// built: it must not parse the URL again each time, and costs no more than setting
// the same attributes. The span keeps no attributes here (a limit of 0), so only the
// calls' own allocations count.
func TestSetTargetCostsNoMoreThanItsAttributes(t *testing.T) {
	sdk := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithRawSpanLimits(sdktrace.SpanLimits{AttributeCountLimit: 0}))
	defer sdk.Shutdown(context.Background())
	_, span := sdk.Tracer("t").Start(context.Background(), "attempt")
	defer span.End()
	const target = "http://10.0.0.1:8000/v1"
	tr := Disabled()
	host, port, hostport := "10.0.0.1", 8000, "10.0.0.1:8000"
	direct := testing.AllocsPerRun(200, func() {
		span.SetAttributes(KeyTarget.String(hostport), semconv.ServerAddress(host))
		span.SetAttributes(semconv.ServerPort(port))
	})
	n := testing.AllocsPerRun(200, func() { tr.SetTarget(span, target) })
	if n > direct {
		t.Fatalf("SetTarget: %.1f allocations per attempt, setting its attributes: %.1f", n, direct)
	}
	// Its attributes are built when a target is first seen: none after that.
	if n != 0 {
		t.Errorf("SetTarget: %.1f allocations per attempt, want 0", n)
	}
}
