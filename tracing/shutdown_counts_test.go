package tracing

import (
	"context"
	"errors"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// abortedExporter hangs every export until its context is cancelled, as a
// collector that accepted the request and never answers, and then takes a
// moment more to fail, as a real exporter closing its stream does.
type abortedExporter struct{ started chan struct{} }

func (e *abortedExporter) ExportSpans(ctx context.Context, _ []sdktrace.ReadOnlySpan) error {
	select {
	case e.started <- struct{}{}:
	default:
	}
	<-ctx.Done()
	time.Sleep(50 * time.Millisecond)
	return errors.New("export aborted: " + ctx.Err().Error())
}

func (e *abortedExporter) Shutdown(context.Context) error { return nil }

// The gateway reads a retired tracer's Stats once, right after Shutdown
// returns, into tollgate_trace_export_failures_total: an export that a
// shutdown past its deadline cancelled must be counted by then, not a moment
// later where nothing reads it.
func TestShutdownPastDeadlineCountsAbortedExportBeforeReturning(t *testing.T) {
	exp := &abortedExporter{started: make(chan struct{}, 1)}
	tr, err := newTracing(context.Background(), Config{}, nil, exp, sdktrace.WithMaxExportBatchSize(1))
	if err != nil {
		t.Fatal(err)
	}
	request(tr, context.Background(), shape{})
	select {
	case <-exp.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the batch processor never started an export")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := tr.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown against a hung export = %v, want the deadline exceeded", err)
	}
	if f := tr.Stats().ExportFailures; f == 0 {
		t.Errorf("ExportFailures = 0 right after Shutdown; the export it cancelled is not counted")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Shutdown took %v past a 100ms deadline", d)
	}
}

// An exporter that ignores cancellation must not hold Shutdown past a short
// bounded wait.
func TestShutdownPastDeadlineDoesNotWaitForeverOnExport(t *testing.T) {
	exp := newGatedExporter()
	ignoring := &ignoringExporter{gatedExporter: exp}
	defer close(exp.release)
	tr, err := newTracing(context.Background(), Config{}, nil, ignoring, sdktrace.WithMaxExportBatchSize(1))
	if err != nil {
		t.Fatal(err)
	}
	request(tr, context.Background(), shape{})
	waitFor(t, "an export to start", func() bool {
		exp.mu.Lock()
		defer exp.mu.Unlock()
		return exp.calls > 0
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_ = tr.Shutdown(ctx)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Shutdown took %v behind an export that ignores cancellation", d)
	}
}

// ignoringExporter is a gatedExporter that does not listen to its context.
type ignoringExporter struct{ *gatedExporter }

func (e *ignoringExporter) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	return e.gatedExporter.ExportSpans(context.Background(), spans)
}
