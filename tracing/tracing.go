// Package tracing sets up OpenTelemetry for Tollgate: the tracer provider and
// its exporter, a tail sampler that keeps errors and slow requests, W3C trace
// context propagation over fasthttp headers, and the GenAI span names and
// attributes.
//
// Spans are recorded in process; whether a request's spans are exported
// is decided when its local root (the server span) ends: kept if the head
// decision (a parent-based trace ID ratio that honours a sampled parent from
// the client) says so, or if any of its spans is in error, or if the root
// lasted at least keep_slower_than. Requests that share a client's trace ID
// are decided each on its own. With keep_errors off and no keep_slower_than
// nothing but the head decision can keep a request, so a request it leaves
// out is not recorded at all.
// With exporter none, Tracing hands out no-op spans and the request path pays
// nothing but a nil check.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/tollgate/tollgate/internal/buildinfo"
)

// instrumentationName names the tracer, as OTel's instrumentation scope.
const instrumentationName = "github.com/tollgate/tollgate"

// Tracing is one configured tracer provider. Build a new one on config
// reload and Shutdown the old one after its requests end.
type Tracing struct {
	provider trace.TracerProvider
	tracer   trace.Tracer
	// sdk and tail are nil when tracing is off.
	sdk     *sdktrace.TracerProvider
	tail    *tailProcessor
	gate    *exportGate
	exp     *loggingExporter
	capture bool
	// targets holds each upstream target's span attributes (SetTarget).
	targets targetTable
}

// Stats are the tail sampler's counters since New.
type Stats struct {
	// Kept, Discarded and Evicted count requests (local root spans and
	// their descendants): exported, dropped by the sampling decision, and
	// dropped unfinished to bound memory. A request that no rule could keep
	// is counted as discarded when its root starts (it is never recorded),
	// any other when its root ends.
	Kept, Discarded, Evicted uint64
	// SpansDropped counts spans beyond the per-request limit.
	SpansDropped uint64
	// SpansQueueDropped counts kept spans dropped because the export queue
	// was full: the collector is slower than the gateway, or not answering.
	SpansQueueDropped uint64
	// ExportFailures counts batches the exporter failed to send.
	ExportFailures uint64
	// Pending is the number of requests whose spans wait for their root
	// span to end.
	Pending int
}

// New validates cfg and builds the tracer provider it describes. logger
// receives exporter failures (rate-limited) and, when not nil, OpenTelemetry's own
// errors and warnings, process-wide (see diagnostics.go), with the exporter's
// header values masked. ctx bounds the exporter's setup only.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Tracing, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.exporter() == ExporterNone {
		return Disabled(), nil
	}
	// Before the exporter is built: it reports a malformed OTEL_EXPORTER_OTLP_*
	// variable as it reads it.
	if logger != nil {
		routeDiagnostics(logger, newRedactor(cfg, os.Getenv))
	}
	exp, err := newExporter(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("tracing: %s exporter: %w", cfg.exporter(), err)
	}
	return newTracing(ctx, cfg, logger, exp)
}

// NewWithExporter is New with exp in place of the configured exporter, whatever
// cfg.Exporter says: for tests, and for programs that embed the gateway and ship
// spans their own way. Sampling and every other setting of cfg apply.
func NewWithExporter(ctx context.Context, cfg Config, logger *slog.Logger, exp sdktrace.SpanExporter) (*Tracing, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger != nil {
		routeDiagnostics(logger, newRedactor(cfg, os.Getenv))
	}
	return newTracing(ctx, cfg, logger, exp)
}

// Disabled returns a Tracing that records nothing and costs nothing.
func Disabled() *Tracing {
	p := noop.NewTracerProvider()
	return &Tracing{provider: p, tracer: p.Tracer(instrumentationName)}
}

// newTracing builds the SDK pipeline around exp: tail processor, batch
// processor, exporter. Tests pass an in-memory exporter.
func newTracing(ctx context.Context, cfg Config, logger *slog.Logger, exp sdktrace.SpanExporter, bspOpts ...sdktrace.BatchSpanProcessorOption) (*Tracing, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// Later options win: the config's service_name over OTEL_SERVICE_NAME and
	// OTEL_RESOURCE_ATTRIBUTES, and those over the default name and version.
	// telemetry.sdk.* are the attributes the resource conventions say the SDK
	// MUST provide; resource.New adds them only when asked.
	opts := []resource.Option{
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithTelemetrySDK(),
		resource.WithAttributes(semconv.ServiceName(DefaultServiceName), semconv.ServiceVersion(buildinfo.Version())),
		resource.WithFromEnv(),
		resource.WithProcessPID(),
		resource.WithHost(),
	}
	if cfg.ServiceName != "" {
		opts = append(opts, resource.WithAttributes(semconv.ServiceName(cfg.ServiceName)))
	}
	res, err := resource.New(ctx, opts...)
	if err != nil {
		// A failed detector leaves a usable partial resource.
		logger.Warn("tracing: resource detection incomplete", "error", err)
	}
	queue := exportQueueSize(bspOpts)
	gate := &exportGate{limit: int64(queue)}
	le := &loggingExporter{SpanExporter: exp, logger: logger, redact: newRedactor(cfg, os.Getenv), gate: gate, drained: make(chan struct{})}
	le.abortCtx, le.abort = context.WithCancel(context.Background())
	// The gate admits queue spans; the processor's own queue has room for
	// them and for ForceFlush's markers, so that it never drops one itself.
	bspOpts = append(bspOpts[:len(bspOpts):len(bspOpts)], sdktrace.WithMaxQueueSize(queue+flushSlack))
	gate.SpanProcessor = sdktrace.NewBatchSpanProcessor(le, bspOpts...)
	tail := newTailProcessor(gate, cfg.keepErrors(), cfg.KeepSlowerThan, cfg.maxPendingTraces())
	sdk := sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithSampler(headSampler{
			inner: sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.sampleRatio())),
			tail:  tail,
			drop:  !cfg.keepErrors() && cfg.KeepSlowerThan == 0,
		}),
		sdktrace.WithSpanProcessor(tail),
	)
	return &Tracing{
		provider: sdk,
		tracer:   sdk.Tracer(instrumentationName),
		sdk:      sdk,
		tail:     tail,
		gate:     gate,
		exp:      le,
		capture:  cfg.CaptureContent,
	}, nil
}

// exportQueueSize is the queue size the batch processor would take from opts:
// OTEL_BSP_MAX_QUEUE_SIZE as the SDK reads it, else the SDK's default, and
// then opts.
func exportQueueSize(opts []sdktrace.BatchSpanProcessorOption) int {
	o := sdktrace.BatchSpanProcessorOptions{MaxQueueSize: sdktrace.DefaultMaxQueueSize}
	if n, err := strconv.Atoi(os.Getenv("OTEL_BSP_MAX_QUEUE_SIZE")); err == nil {
		o.MaxQueueSize = n
	}
	for _, opt := range opts {
		opt(&o)
	}
	return max(o.MaxQueueSize, 0)
}

func newExporter(ctx context.Context, cfg Config) (sdktrace.SpanExporter, error) {
	switch cfg.exporter() {
	case ExporterStdout:
		return stdouttrace.New(stdouttrace.WithWriter(os.Stdout), stdouttrace.WithPrettyPrint())
	case ExporterOTLPGRPC:
		var opts []otlptracegrpc.Option
		if cfg.Endpoint != "" {
			if strings.Contains(cfg.Endpoint, "://") {
				opts = append(opts, otlptracegrpc.WithEndpointURL(cfg.Endpoint))
			} else {
				opts = append(opts, otlptracegrpc.WithEndpoint(cfg.Endpoint))
			}
		}
		if cfg.Insecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		if len(cfg.Headers) > 0 {
			opts = append(opts, otlptracegrpc.WithHeaders(cfg.Headers))
		}
		return otlptracegrpc.New(ctx, opts...)
	case ExporterOTLPHTTP:
		var opts []otlptracehttp.Option
		if cfg.Endpoint != "" {
			if u, isURL, _ := parseEndpoint(cfg.Endpoint); isURL {
				if u.Path == "" || u.Path == "/" {
					u.Path = "/v1/traces"
				}
				opts = append(opts, otlptracehttp.WithEndpointURL(u.String()))
			} else {
				opts = append(opts, otlptracehttp.WithEndpoint(cfg.Endpoint))
			}
		}
		if cfg.Insecure {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
		if len(cfg.Headers) > 0 {
			opts = append(opts, otlptracehttp.WithHeaders(cfg.Headers))
		}
		return otlptracehttp.New(ctx, opts...)
	}
	return nil, errors.New("unknown exporter")
}

// Enabled reports whether spans are recorded at all.
func (t *Tracing) Enabled() bool { return t.sdk != nil }

// CaptureContent reports whether prompts and completions go into spans.
func (t *Tracing) CaptureContent() bool { return t.capture }

// TracerProvider returns the provider, for libraries that take one.
func (t *Tracing) TracerProvider() trace.TracerProvider { return t.provider }

// Tracer returns the gateway's tracer.
func (t *Tracing) Tracer() trace.Tracer { return t.tracer }

// noopSpan is what Start returns when tracing is off: a zero-size value, so
// converting it to trace.Span does not allocate.
var noopSpan trace.Span = noop.Span{}

// Start starts a span from a pre-built Spec as a child of the span in ctx.
// With tracing off it returns ctx unchanged and a no-op span, so that the
// request path allocates nothing; the gateway then injects nothing, and the
// client's trace headers reach the upstream as it sent them.
func (t *Tracing) Start(ctx context.Context, s *Spec) (context.Context, trace.Span) {
	if t.sdk == nil {
		return ctx, noopSpan
	}
	return t.tracer.Start(ctx, s.name, s.opts...)
}

// StartAt is Start with an explicit start time, for the server span that
// begins when the request arrived rather than when routing began.
func (t *Tracing) StartAt(ctx context.Context, s *Spec, start time.Time) (context.Context, trace.Span) {
	if t.sdk == nil {
		return ctx, noopSpan
	}
	opts := make([]trace.SpanStartOption, 0, len(s.opts)+1)
	opts = append(opts, s.opts...)
	opts = append(opts, trace.WithTimestamp(start))
	return t.tracer.Start(ctx, s.name, opts...)
}

// Stats returns the tail sampler's counters; zero when tracing is off.
func (t *Tracing) Stats() Stats {
	if t.tail == nil {
		return Stats{}
	}
	return Stats{
		Kept:              t.tail.kept.Load(),
		Discarded:         t.tail.discarded.Load(),
		Evicted:           t.tail.evicted.Load(),
		SpansDropped:      t.tail.spansDropped.Load(),
		SpansQueueDropped: t.gate.dropped.Load(),
		ExportFailures:    t.exp.failures.Load(),
		Pending:           t.tail.pending(),
	}
}

// ForceFlush exports every kept span now.
func (t *Tracing) ForceFlush(ctx context.Context) error {
	if t.sdk == nil {
		return nil
	}
	return t.sdk.ForceFlush(ctx)
}

// abortWait bounds how long Shutdown waits, once its deadline has passed,
// for the exports it cancelled to return, so that their failures are counted
// before it returns.
const abortWait = time.Second

// Shutdown exports the kept spans still queued and stops the exporter,
// within ctx's deadline. When the deadline passes first, the exports still
// running are cancelled and the exporter is closed (for OTLP, its
// connection), so that nothing of this tracer outlives Shutdown; the spans
// not yet sent are lost and counted as export failures, in Stats by the
// time Shutdown returns (it waits up to abortWait more for the cancelled
// exports to return).
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t.sdk == nil {
		return nil
	}
	err := t.sdk.Shutdown(ctx)
	if ctx.Err() != nil {
		// The batch processor stops waiting at the deadline but leaves its
		// export running in the background, bounded only by the exporter's
		// own timeout (10 s for OTLP, more with retries) against a collector
		// that accepts the request and never answers.
		t.exp.abort()
		_ = t.exp.closeExporter(ctx)
		// The batch processor's worker, once its exports have returned,
		// shuts the exporter down: that is when every failure is counted.
		timer := time.NewTimer(abortWait)
		select {
		case <-t.exp.drained:
		case <-timer.C:
		}
		timer.Stop()
	}
	return err
}

// headSampler is the head decision: a parent-based trace ID ratio, except
// that a trace not sampled is still recorded (RecordOnly) when a tail rule is
// on, so that the tail processor can keep it for an error or a slow root.
// The sampled flag sent upstream in traceparent is the head decision, so
// vLLM samples the same traces at their start.
type headSampler struct {
	inner sdktrace.Sampler
	tail  *tailProcessor
	// drop is set when no tail rule is on (keep_errors off, no
	// keep_slower_than): a trace not sampled can never be kept, and recording
	// its spans only to throw them away cost some 50 allocations a request.
	// Such a trace is dropped at its start, and as its spans never reach the
	// tail processor, its request is counted as discarded here.
	drop bool
}

func (s headSampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	r := s.inner.ShouldSample(p)
	if r.Decision != sdktrace.Drop {
		return r
	}
	if !s.drop {
		r.Decision = sdktrace.RecordOnly
	} else if isLocalRoot(trace.SpanContextFromContext(p.ParentContext)) && !s.tail.closed.Load() {
		s.tail.discarded.Add(1)
	}
	return r
}

func (s headSampler) Description() string { return "TailKeep{" + s.inner.Description() + "}" }

// exportLogInterval spaces exporter failure logs: a collector that is down
// fails every batch.
const exportLogInterval = 30 * time.Second

// loggingExporter counts and logs failed exports, the exporter's header values
// masked. It reports success to the batch processor, which would otherwise hand
// the error to OTel's global handler and have it logged a second time.
//
// It also releases the spans it is given from the export gate, and cancels
// every export once abort is called.
type loggingExporter struct {
	sdktrace.SpanExporter
	logger *slog.Logger
	redact *redactor
	gate   *exportGate
	// abortCtx ends every export, running or to come, once abort is called.
	abortCtx context.Context
	abort    context.CancelFunc
	// drained is closed when the batch processor calls Shutdown, which it
	// does only after its last export has returned.
	drained   chan struct{}
	drainOnce sync.Once
	// shutdown runs the exporter's Shutdown once: Tracing.Shutdown calls it
	// after a deadline passed while the batch processor still will.
	shutdown    sync.Once
	shutdownErr error
	failures    atomic.Uint64
	lastLog     atomic.Int64
}

func (e *loggingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	e.gate.taken(len(spans))
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(e.abortCtx, cancel)
	err := e.SpanExporter.ExportSpans(ctx, spans)
	stop()
	cancel()
	if err == nil {
		return nil
	}
	n := e.failures.Add(1)
	now := time.Now().UnixNano()
	last := e.lastLog.Load()
	if now-last >= int64(exportLogInterval) && e.lastLog.CompareAndSwap(last, now) {
		e.logger.Warn("tracing: span export failed", "error", e.redact.clean(err.Error()), "spans", len(spans), "failures", n)
	}
	return nil
}

// Shutdown implements sdktrace.SpanExporter, for the batch processor: its
// exports have all returned, and their failures are counted.
func (e *loggingExporter) Shutdown(ctx context.Context) error {
	e.drainOnce.Do(func() { close(e.drained) })
	return e.closeExporter(ctx)
}

// closeExporter shuts the exporter down; only the first call reaches it.
func (e *loggingExporter) closeExporter(ctx context.Context) error {
	e.shutdown.Do(func() { e.shutdownErr = e.SpanExporter.Shutdown(ctx) })
	return e.shutdownErr
}
