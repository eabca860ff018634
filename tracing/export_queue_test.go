package tracing

import (
	"context"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// gatedExporter holds every export until release is closed, as a collector
// that stopped answering does, and counts the spans it was given.
type gatedExporter struct {
	release chan struct{}
	mu      sync.Mutex
	spans   int
	calls   int
}

func newGatedExporter() *gatedExporter { return &gatedExporter{release: make(chan struct{})} }

func (e *gatedExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	e.mu.Lock()
	e.calls++
	e.mu.Unlock()
	select {
	case <-e.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	e.mu.Lock()
	e.spans += len(spans)
	e.mu.Unlock()
	return nil
}

func (e *gatedExporter) Shutdown(context.Context) error { return nil }

// waitFor polls cond until it holds, failing the test after a deadline
// generous enough for a loaded machine.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func (e *gatedExporter) exported() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.spans
}

// spansLost is every span the tracer admits to not exporting.
func spansLost(st Stats) uint64 { return st.SpansDropped + st.SpansQueueDropped }

// A collector that stops answering fills the export queue; every span kept
// after that is lost, and an operator must see it in the statistics (and so
// in tollgate_trace_spans_queue_dropped_total), not only in a trace viewer
// with holes in it.
func TestExportQueueOverflowIsCounted(t *testing.T) {
	const queue, requests = 8, 20
	exp := newGatedExporter()
	tr, err := newTracing(context.Background(), Config{}, nil, exp,
		sdktrace.WithMaxQueueSize(queue), sdktrace.WithMaxExportBatchSize(1))
	if err != nil {
		t.Fatal(err)
	}
	for range requests {
		request(tr, context.Background(), shape{})
	}
	st := tr.Stats()
	if st.Kept != requests {
		t.Fatalf("kept %d requests, want %d", st.Kept, requests)
	}
	if st.SpansQueueDropped == 0 {
		t.Errorf("no span counted as dropped with %d spans kept against a queue of %d and a collector that does not answer", requests*spansPerRequest, queue)
	}
	close(exp.release)
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	st = tr.Stats()
	const kept = requests * spansPerRequest
	if got := uint64(exp.exported()) + spansLost(st); got != kept {
		t.Errorf("%d spans kept, %d exported, %d counted as dropped (%+v): %d lost without a count",
			kept, exp.exported(), spansLost(st), st, int64(kept)-int64(got))
	}
	if q := tr.gate.queued.Load(); q != 0 {
		t.Errorf("%d spans still counted as queued after every span was exported or dropped", q)
	}
}

// ForceFlush puts a marker into the batch processor's queue that no span
// admission counts; it must not make the processor drop a span the gate let
// in (which would leave the span neither exported nor counted, and its slot
// taken for good).
func TestForceFlushMarkersDoNotCauseUncountedDrops(t *testing.T) {
	const queue = 8
	exp := newGatedExporter()
	tr, err := newTracing(context.Background(), Config{}, nil, exp,
		sdktrace.WithMaxQueueSize(queue), sdktrace.WithMaxExportBatchSize(1))
	if err != nil {
		t.Fatal(err)
	}
	// The first span goes to the exporter and hangs there; the other four
	// wait in the queue, which has room left.
	request(tr, context.Background(), shape{})
	sent := spansPerRequest
	waitFor(t, "the first export to start", func() bool {
		exp.mu.Lock()
		defer exp.mu.Unlock()
		return exp.calls > 0
	})
	for round := range 3 {
		// The flush times out behind the hung export and leaves its marker
		// in the queue; the request after it fills what the gate admits.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		if err := tr.ForceFlush(ctx); err == nil {
			t.Fatalf("round %d: ForceFlush returned nil behind an export that never ends", round)
		}
		cancel()
		request(tr, context.Background(), shape{})
		sent += spansPerRequest
	}
	close(exp.release)
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	st := tr.Stats()
	if got := uint64(exp.exported()) + spansLost(st); got != uint64(sent) {
		t.Errorf("%d spans kept, %d exported, %d counted as dropped: %d lost without a count",
			sent, exp.exported(), spansLost(st), int64(sent)-int64(got))
	}
	if q := tr.gate.queued.Load(); q != 0 {
		t.Errorf("%d spans still counted as queued after every span was exported or dropped", q)
	}
}

// The gate admits what the batch processor's queue would hold without it:
// OTEL_BSP_MAX_QUEUE_SIZE as the SDK reads it, overridden by options.
func TestExportQueueSizeFollowsTheSDK(t *testing.T) {
	tests := []struct {
		name string
		env  string
		opts []sdktrace.BatchSpanProcessorOption
		want int
	}{
		{"default", "", nil, sdktrace.DefaultMaxQueueSize},
		{"environment", "100", nil, 100},
		{"unparsable environment is ignored", "lots", nil, sdktrace.DefaultMaxQueueSize},
		{"option over environment", "100", []sdktrace.BatchSpanProcessorOption{sdktrace.WithMaxQueueSize(7)}, 7},
		{"negative admits nothing", "-3", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("OTEL_BSP_MAX_QUEUE_SIZE", tt.env)
			if got := exportQueueSize(tt.opts); got != tt.want {
				t.Errorf("exportQueueSize = %d, want %d", got, tt.want)
			}
		})
	}
}

// The configured OTLP exporter against a collector that accepts exports and
// never answers: what the queue cannot hold is counted, with the queue sized
// as an operator sizes it, through the SDK's environment variables.
func TestHungCollectorQueueDropsAreCounted(t *testing.T) {
	const queue, requests = 8, 10
	addr := startHungCollector(t)
	t.Setenv("OTEL_BSP_MAX_QUEUE_SIZE", "8")
	t.Setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1")
	tr, err := New(context.Background(), Config{Exporter: ExporterOTLPGRPC, Endpoint: addr, Insecure: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range requests {
		request(tr, context.Background(), shape{})
	}
	// One span may already be with the exporter, the queue holds the next
	// eight, and every other one is dropped.
	const atLeast = requests*spansPerRequest - queue - 1
	if d := tr.Stats().SpansQueueDropped; d < atLeast {
		t.Errorf("%d spans counted as dropped, want at least %d", d, atLeast)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_ = tr.Shutdown(ctx)
}
