package tracing

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// diagChildEnv makes TestOTelDiagnosticsReachLoggerNotStderr run its scenario: in a
// process of its own, whose stderr the parent reads whole and whose OpenTelemetry
// globals no other test shares.
const diagChildEnv = "TOLLGATE_TEST_OTEL_DIAGNOSTICS"

// The secrets the scenario's exporters hold: tracing.headers, a well-formed
// OTEL_EXPORTER_OTLP_HEADERS entry, and two it cannot read (no '=', a bad escape).
const (
	diagConfigKey = "cfg-key-7f3a9c2e41"
	diagEnvKey    = "env-key-b81d55e0c9"
	diagBareKey   = "bare-key-40c6aa1f3d"
	diagEscKey    = "esc-key-92e7d1b06f"
)

// With OTLP exporters whose collectors refuse every export (HTTP 401 and gRPC
// Unauthenticated, both quoting the key they were sent) and OpenTelemetry variables
// it cannot read, OpenTelemetry's own errors and warnings come out as the gateway's
// JSON warnings on the logger given, none on stderr, and no exporter secret appears
// anywhere.
func TestOTelDiagnosticsReachLoggerNotStderr(t *testing.T) {
	if os.Getenv(diagChildEnv) != "" {
		runDiagnosticsScenario(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestOTelDiagnosticsReachLoggerNotStderr$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), diagChildEnv+"=1",
		"OTEL_EXPORTER_OTLP_HEADERS=x-env-key="+diagEnvKey+",authorization Bearer "+diagBareKey+",x-esc=%zz"+diagEscKey,
		// An entry without a value: the resource detector reports it through otel.Handle.
		"OTEL_RESOURCE_ATTRIBUTES=deployment.environment=test,novalue")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// The checks below run whatever the scenario's own outcome, to say all that failed.
	if err := cmd.Run(); err != nil {
		t.Errorf("scenario: %v\nstdout:\n%s", err, stdout.String())
	} else if !strings.Contains(stdout.String(), "--- PASS: TestOTelDiagnosticsReachLoggerNotStderr") {
		t.Fatalf("scenario did not run:\n%s", stdout.String())
	}
	if stderr.Len() != 0 {
		t.Errorf("OpenTelemetry wrote to stderr:\n%s", stderr.String())
	}
	var lines []map[string]any
	for _, l := range strings.Split(stdout.String(), "\n") {
		if !strings.HasPrefix(l, "{") {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line not JSON: %v: %s", err, l)
		}
		lines = append(lines, m)
	}
	for _, want := range []struct{ msg, errPart string }{
		{"tracing: span export failed", "401"},
		{"tracing: span export failed", "Unauthenticated"},
		{"tracing: span export failed", "connection refused"},
		{"tracing: opentelemetry: parse headers", "missing"},
		{"tracing: opentelemetry: escape header value", "invalid URL escape"},
		{"tracing: opentelemetry error", "missing value"},
	} {
		found := false
		for _, m := range lines {
			e, _ := m["error"].(string)
			if m["msg"] == want.msg && m["level"] == "WARN" && strings.Contains(e, want.errPart) {
				found = true
			}
		}
		if !found {
			t.Errorf("no warning %q with an error containing %q in:\n%s", want.msg, want.errPart, stdout.String())
		}
	}
	for _, secret := range []string{diagConfigKey, diagEnvKey, diagBareKey, diagEscKey} {
		if strings.Contains(stdout.String(), secret) || strings.Contains(stderr.String(), secret) {
			t.Errorf("secret %q logged:\n%s%s", secret, stdout.String(), stderr.String())
		}
	}
}

// runDiagnosticsScenario runs the exports, logging JSON to stdout.
func runDiagnosticsScenario(t *testing.T) {
	logger := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "invalid key "+r.Header.Get("X-Api-Key"), http.StatusUnauthorized)
	}))
	defer refusing.Close()
	rcv := &otlpReceiver{fail: status.Error(codes.Unauthenticated, "invalid key "+diagConfigKey)}
	grpcAddr := startOTLPReceiver(t, rcv)

	var handlers []otel.ErrorHandler
	for _, cfg := range []Config{
		{Exporter: ExporterOTLPHTTP, Endpoint: refusing.URL},
		{Exporter: ExporterOTLPGRPC, Endpoint: grpcAddr, Insecure: true},
	} {
		cfg.Headers = map[string]string{"x-api-key": diagConfigKey}
		tr, err := New(ctx, cfg, logger)
		if err != nil {
			t.Fatal(err)
		}
		handlers = append(handlers, otel.GetErrorHandler())
		request(tr, ctx, shape{})
		if err := tr.ForceFlush(ctx); err != nil {
			t.Fatal(err)
		}
		if f := tr.Stats().ExportFailures; f != 1 {
			t.Errorf("%s: %d export failures, want 1", cfg.Exporter, f)
		}
		if err := tr.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// A second tracer on the same logger (a reload) keeps the handler, and with it
	// the rate limits; a tracer on another logger gets its own.
	if h, ok := handlers[0].(*diagnostics); !ok || handlers[1] != handlers[0] || h.logger != logger {
		t.Errorf("error handlers %v: want one *diagnostics over the logger for both tracers", handlers)
	}
	other := slog.New(slog.DiscardHandler)
	tr, err := New(ctx, Config{Exporter: ExporterOTLPHTTP, Endpoint: refusing.URL}, other)
	if err != nil {
		t.Fatal(err)
	}
	if h, ok := otel.GetErrorHandler().(*diagnostics); !ok || h.logger != other {
		t.Errorf("error handler %v after a tracer on another logger: want that logger's", otel.GetErrorHandler())
	}
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, spans := rcv.stats(); spans == 0 {
		t.Errorf("the gRPC collector was never reached")
	}
	// A closed port: the exporter's error names the collector by host and port only.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := lis.Addr().String()
	lis.Close()
	tr, err = New(ctx, Config{Exporter: ExporterOTLPHTTP, Endpoint: "http://" + closed, Headers: map[string]string{"x-api-key": diagConfigKey}}, logger)
	if err != nil {
		t.Fatal(err)
	}
	request(tr, ctx, shape{})
	if err := tr.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	if f := tr.Stats().ExportFailures; f != 1 {
		t.Errorf("closed port: %d export failures, want 1", f)
	}
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}
