package tracing

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(hungCollectorEnv) != "" {
		os.Exit(serveHungCollector())
	}
	goleak.VerifyTestMain(m)
}

// newTestTracing builds the real pipeline (head sampler, tail processor,
// batch processor) around an in-memory exporter.
func newTestTracing(t testing.TB, cfg Config) (*Tracing, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tr, err := newTracing(context.Background(), cfg, nil, exp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tr.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return tr, exp
}

func exported(t testing.TB, tr *Tracing, exp *tracetest.InMemoryExporter) tracetest.SpanStubs {
	t.Helper()
	if err := tr.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	return exp.GetSpans()
}

// shape describes one simulated gateway request.
type shape struct {
	rootStatus  int           // server status; 5xx is an error
	childStatus int           // upstream status; 4xx and 5xx are errors
	dur         time.Duration // root span duration
}

var upstream = UpstreamSpec("chat", "openai", "llama-3.1-8b", "llama", "http://10.0.0.1:8000/v1")

// request makes a trace shaped like a gateway request: a server span with
// auth, limit, route and upstream children. Children end before the root,
// as in the gateway.
func request(tr *Tracing, ctx context.Context, s shape) trace.SpanContext {
	start := time.Now()
	ctx, root := tr.StartAt(ctx, ServerSpec("POST", "/v1/chat/completions"), start)
	for _, spec := range []*Spec{SpecAuth, SpecLimit, SpecRoute} {
		_, c := tr.Start(ctx, spec)
		c.End()
	}
	_, up := tr.Start(ctx, upstream)
	if s.childStatus != 0 {
		SetClientStatus(up, s.childStatus)
	}
	up.End()
	if s.rootStatus == 0 {
		s.rootStatus = 200
	}
	SetServerStatus(root, s.rootStatus)
	root.End(trace.WithTimestamp(start.Add(s.dur)))
	return root.SpanContext()
}

const spansPerRequest = 5

func TestTailSampling(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		shape shape
		keep  bool
	}{
		{"ratio 0 drops a plain request", Config{SampleRatio: ptr(0.0)}, shape{dur: 10 * time.Millisecond}, false},
		{"ratio 0 keeps a failed request", Config{SampleRatio: ptr(0.0)}, shape{rootStatus: 502, dur: 10 * time.Millisecond}, true},
		{"ratio 0 keeps a failed attempt that was retried", Config{SampleRatio: ptr(0.0)}, shape{childStatus: 503, dur: 10 * time.Millisecond}, true},
		{"ratio 0 drops a 4xx answer", Config{SampleRatio: ptr(0.0)}, shape{rootStatus: 429, dur: 10 * time.Millisecond}, false},
		{"keep_errors false drops errors", Config{SampleRatio: ptr(0.0), KeepErrors: ptr(false)}, shape{rootStatus: 500}, false},
		{"ratio 0 keeps a slow request", Config{SampleRatio: ptr(0.0), KeepSlowerThan: time.Second}, shape{dur: 1500 * time.Millisecond}, true},
		{"threshold is inclusive", Config{SampleRatio: ptr(0.0), KeepSlowerThan: time.Second}, shape{dur: time.Second}, true},
		{"ratio 0 drops a fast request", Config{SampleRatio: ptr(0.0), KeepSlowerThan: time.Second}, shape{dur: 999 * time.Millisecond}, false},
		{"keep_slower_than 0 is off", Config{SampleRatio: ptr(0.0)}, shape{dur: time.Hour}, false},
		{"ratio 1 keeps a plain request", Config{SampleRatio: ptr(1.0)}, shape{dur: 10 * time.Millisecond}, true},
		{"default ratio keeps everything", Config{}, shape{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, exp := newTestTracing(t, tt.cfg)
			root := request(tr, context.Background(), tt.shape)
			spans := exported(t, tr, exp)
			want := 0
			if tt.keep {
				want = spansPerRequest
			}
			if len(spans) != want {
				t.Fatalf("exported %d spans, want %d", len(spans), want)
			}
			for _, s := range spans {
				if s.SpanContext.TraceID() != root.TraceID() {
					t.Errorf("span %q in trace %s, want %s", s.Name, s.SpanContext.TraceID(), root.TraceID())
				}
				if !s.SpanContext.IsSampled() {
					t.Errorf("span %q exported without the sampled flag", s.Name)
				}
			}
			st := tr.Stats()
			if tt.keep && (st.Kept != 1 || st.Discarded != 0) || !tt.keep && (st.Kept != 0 || st.Discarded != 1) {
				t.Errorf("stats %+v, keep %v", st, tt.keep)
			}
			if st.Pending != 0 {
				t.Errorf("%d traces still pending", st.Pending)
			}
		})
	}
}

func TestTailSamplingKeepsTreeShape(t *testing.T) {
	tr, exp := newTestTracing(t, Config{SampleRatio: ptr(0.0)})
	root := request(tr, context.Background(), shape{rootStatus: 500})
	spans := exported(t, tr, exp)
	byName := map[string]tracetest.SpanStub{}
	for _, s := range spans {
		byName[s.Name] = s
	}
	server, ok := byName["POST /v1/chat/completions"]
	if !ok || server.Parent.IsValid() || server.SpanKind != trace.SpanKindServer || server.Status.Code != codes.Error {
		t.Fatalf("server span %+v", server)
	}
	if server.SpanContext.SpanID() != root.SpanID() {
		t.Error("server span is not the root")
	}
	for _, name := range []string{"tollgate.auth", "tollgate.ratelimit", "tollgate.route", "chat llama-3.1-8b"} {
		t.Run(name, func(t *testing.T) {
			s, ok := byName[name]
			if !ok {
				t.Fatal("not exported")
			}
			if s.Parent.SpanID() != root.SpanID() {
				t.Errorf("parent %s, want the server span %s", s.Parent.SpanID(), root.SpanID())
			}
		})
	}
}

func TestRatioSampling(t *testing.T) {
	tr, exp := newTestTracing(t, Config{SampleRatio: ptr(0.5)})
	const n = 2000
	for range n {
		request(tr, context.Background(), shape{})
	}
	spans := len(exported(t, tr, exp))
	// The sampler's decisions, not the spans exported: 2000 requests of several spans
	// each can fill the export queue when the exporter's goroutine gets no CPU for a
	// while, and the spans it turns away are counted, not exported.
	st := tr.Stats()
	kept := int(st.Kept)
	// Trace IDs are random: 2000 draws at p=0.5 have a standard deviation
	// of about 22, so +-150 is a 7-sigma band.
	if kept < n/2-150 || kept > n/2+150 {
		t.Errorf("kept %d of %d traces at ratio 0.5", kept, n)
	}
	if st.Kept+st.Discarded != n {
		t.Errorf("stats %+v do not add up to %d", st, n)
	}
	if got := uint64(spans) + st.SpansQueueDropped; got != uint64(kept*spansPerRequest) {
		t.Errorf("%d spans exported and %d turned away by the queue, want %d of %d kept traces",
			spans, st.SpansQueueDropped, kept*spansPerRequest, kept)
	}
}

func TestRemoteParent(t *testing.T) {
	tid := trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	sid := trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7}
	remote := func(sampled bool) context.Context {
		var flags trace.TraceFlags
		if sampled {
			flags = trace.FlagsSampled
		}
		return trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: tid, SpanID: sid, TraceFlags: flags, Remote: true,
		}))
	}
	tests := []struct {
		name    string
		cfg     Config
		sampled bool
		shape   shape
		keep    bool
	}{
		{"sampled parent is honoured at ratio 0", Config{SampleRatio: ptr(0.0)}, true, shape{}, true},
		{"unsampled parent is honoured at ratio 1", Config{SampleRatio: ptr(1.0)}, false, shape{}, false},
		{"unsampled parent still keeps errors", Config{SampleRatio: ptr(1.0)}, false, shape{rootStatus: 503}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, exp := newTestTracing(t, tt.cfg)
			root := request(tr, remote(tt.sampled), tt.shape)
			if root.TraceID() != tid {
				t.Fatalf("root in trace %s, want the client's %s", root.TraceID(), tid)
			}
			spans := exported(t, tr, exp)
			if got := len(spans) == spansPerRequest; got != tt.keep {
				t.Fatalf("exported %d spans, keep %v", len(spans), tt.keep)
			}
			for _, s := range spans {
				if s.Name == "POST /v1/chat/completions" && (s.Parent.SpanID() != sid || !s.Parent.IsRemote()) {
					t.Errorf("server span's parent %v, want the client's span %s", s.Parent, sid)
				}
			}
		})
	}
}

func TestLateChildFollowsRootDecision(t *testing.T) {
	tests := []struct {
		name   string
		status int
		want   int
	}{
		{"kept trace", 500, 2},
		{"dropped trace", 200, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, exp := newTestTracing(t, Config{SampleRatio: ptr(0.0)})
			ctx, root := tr.Start(context.Background(), ServerSpec("POST", "/v1/chat/completions"))
			_, late := tr.Start(ctx, upstream)
			SetServerStatus(root, tt.status)
			root.End()
			late.End()
			if got := len(exported(t, tr, exp)); got != tt.want {
				t.Errorf("exported %d spans, want %d", got, tt.want)
			}
			if p := tr.Stats().Pending; p != 0 {
				t.Errorf("late child left %d traces pending", p)
			}
		})
	}
}

func TestPendingTracesAreBounded(t *testing.T) {
	const limit, traces = 4, 10
	tr, exp := newTestTracing(t, Config{SampleRatio: ptr(0.0), MaxPendingTraces: limit})
	roots := make([]trace.Span, traces)
	for i := range roots {
		// Requests in flight: their children ended, their roots did not.
		var ctx context.Context
		ctx, roots[i] = tr.Start(context.Background(), ServerSpec("POST", "/v1/chat/completions"))
		_, c := tr.Start(ctx, SpecAuth)
		c.End()
		if p := tr.Stats().Pending; p > limit {
			t.Fatalf("%d traces pending after %d requests, limit %d", p, i+1, limit)
		}
	}
	st := tr.Stats()
	if st.Pending != limit || st.Evicted != traces-limit {
		t.Fatalf("stats %+v, want %d pending and %d evicted", st, limit, traces-limit)
	}
	for _, r := range roots {
		SetServerStatus(r, 500)
		r.End()
	}
	// Every root is kept for its error; only the newest traces still had
	// their child: the oldest were dropped.
	children := map[trace.TraceID]bool{}
	for _, s := range exported(t, tr, exp) {
		if s.Name == "tollgate.auth" {
			children[s.SpanContext.TraceID()] = true
		}
	}
	for i, r := range roots {
		if got, want := children[r.SpanContext().TraceID()], i >= traces-limit; got != want {
			t.Errorf("request %d: child exported %v, want %v", i, got, want)
		}
	}
}

func TestPendingTraceSpansAreBounded(t *testing.T) {
	tr, exp := newTestTracing(t, Config{SampleRatio: ptr(0.0)})
	ctx, root := tr.Start(context.Background(), ServerSpec("POST", "/v1/chat/completions"))
	const extra = 10
	for range maxSpansPerTrace + extra {
		_, c := tr.Start(ctx, SpecRoute)
		c.End()
	}
	root.SetStatus(codes.Error, "")
	root.End()
	if got := len(exported(t, tr, exp)); got != maxSpansPerTrace+1 {
		t.Errorf("exported %d spans, want %d", got, maxSpansPerTrace+1)
	}
	if d := tr.Stats().SpansDropped; d != extra {
		t.Errorf("dropped %d spans, want %d", d, extra)
	}
}

func TestShardedPendingBound(t *testing.T) {
	const limit = 2048
	tr, _ := newTestTracing(t, Config{SampleRatio: ptr(0.0), MaxPendingTraces: limit})
	for range 3 * limit {
		ctx, root := tr.Start(context.Background(), SpecRoute)
		_, c := tr.Start(ctx, SpecAuth)
		c.End()
		_ = root // never ends: the request is still running
	}
	st := tr.Stats()
	// Each of the 16 shards holds at most limit/16; random trace IDs fill
	// them all well past that after 3x the limit.
	if st.Pending > limit || st.Pending < limit*9/10 {
		t.Errorf("%d traces pending, want close to and at most %d", st.Pending, limit)
	}
	if int(st.Evicted)+st.Pending != 3*limit {
		t.Errorf("evicted %d + pending %d != %d", st.Evicted, st.Pending, 3*limit)
	}
}

func TestShutdownDropsPending(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tr, err := newTracing(context.Background(), Config{SampleRatio: ptr(0.0)}, nil, exp)
	if err != nil {
		t.Fatal(err)
	}
	ctx, root := tr.Start(context.Background(), SpecRoute)
	_, c := tr.Start(ctx, SpecAuth)
	c.End()
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p := tr.tail.pending(); p != 0 {
		t.Errorf("%d traces pending after Shutdown", p)
	}
	root.SetStatus(codes.Error, "")
	root.End() // after Shutdown: ignored, no panic
	if n := len(exp.GetSpans()); n != 0 {
		t.Errorf("exported %d spans after Shutdown", n)
	}
}

func TestHeadSamplerRecordsForTailRules(t *testing.T) {
	s := headSampler{inner: sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0))}
	r := s.ShouldSample(sdktrace.SamplingParameters{
		ParentContext: context.Background(),
		TraceID:       trace.TraceID{1},
		Name:          "x",
		Attributes:    []attribute.KeyValue{attribute.String("a", "b")},
	})
	if r.Decision != sdktrace.RecordOnly {
		t.Errorf("decision %v, want RecordOnly", r.Decision)
	}
	if d := s.Description(); d == "" {
		t.Error("empty description")
	}
}

// A client that wraps several LLM calls in one trace of its own sends the
// same trace ID on every request; each request's server span is a local root
// of its own and is kept or dropped by its own outcome alone.
func TestTailDecisionPerRequestInSharedTrace(t *testing.T) {
	tid := trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	// The client's own sampler dropped the trace (flags 00): only the
	// gateway's keep_errors rule can keep a request.
	client := func(sid byte) context.Context {
		return trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: tid, SpanID: trace.SpanID{0, 0, 0, 0, 0, 0, 0, sid}, Remote: true,
		}))
	}
	spanNames := func(spans tracetest.SpanStubs) []string {
		var names []string
		for _, s := range spans {
			names = append(names, s.Name)
		}
		return names
	}

	t.Run("failed request after a dropped one keeps its children", func(t *testing.T) {
		tr, exp := newTestTracing(t, Config{SampleRatio: ptr(1.0)})
		request(tr, client(1), shape{dur: 10 * time.Millisecond})
		b := request(tr, client(2), shape{rootStatus: 502, childStatus: 503, dur: 10 * time.Millisecond})
		spans := exported(t, tr, exp)
		if len(spans) != spansPerRequest {
			t.Fatalf("exported %d spans %v, want the failed request's %d", len(spans), spanNames(spans), spansPerRequest)
		}
		for _, s := range spans {
			if s.SpanContext.SpanID() != b.SpanID() && s.Parent.SpanID() != b.SpanID() {
				t.Errorf("span %q is not of the failed request", s.Name)
			}
		}
	})

	t.Run("dropped request after a kept one loses its children too", func(t *testing.T) {
		tr, exp := newTestTracing(t, Config{SampleRatio: ptr(1.0)})
		request(tr, client(1), shape{rootStatus: 502, dur: 10 * time.Millisecond})
		request(tr, client(2), shape{dur: 10 * time.Millisecond})
		if spans := exported(t, tr, exp); len(spans) != spansPerRequest {
			t.Fatalf("exported %d spans %v, want the failed request's %d and no orphans", len(spans), spanNames(spans), spansPerRequest)
		}
	})

	t.Run("healthy request overlapping a failed one is not kept", func(t *testing.T) {
		tr, exp := newTestTracing(t, Config{SampleRatio: ptr(1.0)})
		// B is in flight: its failed upstream attempt has ended.
		bctx, broot := tr.Start(client(2), ServerSpec("POST", "/v1/chat/completions"))
		_, bup := tr.Start(bctx, upstream)
		SetClientStatus(bup, 503)
		bup.End()
		// A, healthy, finishes meanwhile.
		a := request(tr, client(1), shape{dur: 10 * time.Millisecond})
		SetServerStatus(broot, 502)
		broot.End()
		spans := exported(t, tr, exp)
		for _, s := range spans {
			if s.SpanContext.SpanID() == a.SpanID() || s.Parent.SpanID() == a.SpanID() {
				t.Errorf("healthy request's span %q was kept for another request's failure", s.Name)
			}
		}
		if len(spans) != 2 {
			t.Errorf("exported %d spans %v, want the failed request's server and upstream spans", len(spans), spanNames(spans))
		}
		st := tr.Stats()
		if st.Kept != 1 || st.Discarded != 1 || st.Pending != 0 {
			t.Errorf("stats %+v, want 1 kept, 1 discarded, none pending", st)
		}
	})

	t.Run("concurrent requests do not share a span budget", func(t *testing.T) {
		tr, exp := newTestTracing(t, Config{SampleRatio: ptr(1.0)})
		const n = 100
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { request(tr, client(byte(i)), shape{childStatus: 503, dur: time.Millisecond}) })
		}
		wg.Wait()
		if got := len(exported(t, tr, exp)); got != n*spansPerRequest {
			t.Errorf("exported %d spans, want %d", got, n*spansPerRequest)
		}
		if st := tr.Stats(); st.Kept != n || st.SpansDropped != 0 || st.Pending != 0 {
			t.Errorf("stats %+v, want %d kept, none dropped or pending", st, n)
		}
	})
}

// A span below a child of the server span (a library's span under the
// upstream call) belongs to the same request: its error keeps the request,
// and it waits and goes with the request's decision.
func TestTailDecisionCoversNestedSpans(t *testing.T) {
	tests := []struct {
		name     string
		innerErr bool
		want     int
	}{
		{"error two levels down keeps the request", true, 3},
		{"healthy request drops every level", false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, exp := newTestTracing(t, Config{SampleRatio: ptr(0.0)})
			ctx, root := tr.Start(context.Background(), ServerSpec("POST", "/v1/chat/completions"))
			uctx, up := tr.Start(ctx, upstream)
			_, inner := tr.Start(uctx, SpecRoute)
			if tt.innerErr {
				inner.SetStatus(codes.Error, "")
			}
			inner.End()
			up.End()
			root.End()
			if got := len(exported(t, tr, exp)); got != tt.want {
				t.Errorf("exported %d spans, want %d", got, tt.want)
			}
			if st := tr.Stats(); st.Pending != 0 {
				t.Errorf("%d requests pending", st.Pending)
			}
			for i := range tr.tail.shards {
				if n := len(tr.tail.shards[i].roots); n != 0 {
					t.Errorf("shard %d remembers %d open spans after every span ended", i, n)
				}
			}
		})
	}
}

func TestOpenSpanRootsAreBounded(t *testing.T) {
	const limit = 4
	tr, _ := newTestTracing(t, Config{SampleRatio: ptr(0.0), MaxPendingTraces: limit})
	ctx, root := tr.Start(context.Background(), ServerSpec("POST", "/v1/chat/completions"))
	// Children that never end: only their bound keeps the map from growing.
	for range 10 * openPerPending * limit {
		tr.Start(ctx, SpecAuth)
	}
	if n := len(tr.tail.shards[0].roots); n > openPerPending*limit {
		t.Errorf("%d open spans remembered, bound %d", n, openPerPending*limit)
	}
	root.End()
}
