package tracing

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// maxSpansPerTrace bounds one pending request; a request makes a handful of
// spans (server, auth, limit, route, one per attempt), so hitting it means a
// runaway loop, not a real request.
const maxSpansPerTrace = 256

// decidedPerShard is how many recent decisions each shard remembers, so that
// a span ending after its root follows the root's decision instead of
// waiting in memory for a root that will never end again.
const decidedPerShard = 256

// openPerPending bounds a shard's map of open spans to their roots, relative
// to its pending bound: a request has one or two spans open at a time, so
// only spans that never end (a bug elsewhere) fill it.
const openPerPending = 8

// tailProcessor records every span and decides per local root span (one
// gateway request) when that root ends: spans sampled at their start pass
// straight through; the others wait in memory and are exported only when
// the root is in error (or any of its descendants is), or lasted at least
// keepSlow. It hands kept spans to next, a BatchSpanProcessor, marked as
// sampled.
//
// The decision is keyed by trace ID and root span ID, not by trace ID alone:
// a client that makes several LLM calls within one trace of its own sends
// the same trace ID on each, and each call is a request of its own, kept or
// dropped by its own outcome.
type tailProcessor struct {
	next       sdktrace.SpanProcessor
	keepErrors bool
	keepSlow   time.Duration

	shards      []shard
	shardMask   uint64
	maxPerShard int
	maxOpen     int
	closed      atomic.Bool

	kept, discarded, evicted, spansDropped atomic.Uint64
}

// treeKey names one local span tree: the trace and the span ID of its
// local root.
type treeKey struct {
	trace trace.TraceID
	root  trace.SpanID
}

type shard struct {
	mu      sync.Mutex
	pending map[treeKey]*pendingTrace
	// oldest and newest link the pending trees in arrival order, for
	// eviction.
	oldest, newest *pendingTrace

	// roots maps each open, unsampled, non-root span to its local root,
	// so that its descendants and its own end find their tree.
	roots map[trace.SpanID]trace.SpanID

	decided map[treeKey]bool
	ring    [decidedPerShard]treeKey
	ringLen int
	ringPos int

	// Shards sit side by side in one slice; padding keeps each shard's
	// mutex on its own cache line.
	_ [64]byte
}

type pendingTrace struct {
	key        treeKey
	spans      []sdktrace.ReadOnlySpan
	hasError   bool
	prev, next *pendingTrace
}

var pendingPool = sync.Pool{New: func() any { return &pendingTrace{spans: make([]sdktrace.ReadOnlySpan, 0, 8)} }}

func newTailProcessor(next sdktrace.SpanProcessor, keepErrors bool, keepSlow time.Duration, maxPending int) *tailProcessor {
	// Sharding spreads the lock over cores at high request rates; small
	// bounds stay in one shard so that the bound is exact.
	n := 1
	if maxPending >= 1024 {
		n = 16
	}
	p := &tailProcessor{
		next:        next,
		keepErrors:  keepErrors,
		keepSlow:    keepSlow,
		shards:      make([]shard, n),
		shardMask:   uint64(n - 1),
		maxPerShard: (maxPending + n - 1) / n,
	}
	p.maxOpen = openPerPending * p.maxPerShard
	for i := range p.shards {
		p.shards[i].pending = make(map[treeKey]*pendingTrace)
		p.shards[i].roots = make(map[trace.SpanID]trace.SpanID)
		p.shards[i].decided = make(map[treeKey]bool, decidedPerShard)
	}
	return p
}

func (p *tailProcessor) shard(id trace.TraceID) *shard {
	// Trace IDs are random, so their last byte spreads evenly. All spans of
	// a trace share a shard, so a span's parent is always found in it.
	return &p.shards[uint64(id[15])&p.shardMask]
}

// isLocalRoot says whether a span with this parent is the root of a local
// tree: it has no parent, or its parent is in another process.
func isLocalRoot(parent trace.SpanContext) bool {
	return !parent.IsValid() || parent.IsRemote()
}

// OnStart implements sdktrace.SpanProcessor. It records which local root an
// unsampled child belongs to; sampled spans and roots need no record.
func (p *tailProcessor) OnStart(parent context.Context, s sdktrace.ReadWriteSpan) {
	p.next.OnStart(parent, s)
	sc := s.SpanContext()
	ps := s.Parent()
	if sc.IsSampled() || isLocalRoot(ps) || p.closed.Load() {
		return
	}
	sh := p.shard(sc.TraceID())
	sh.mu.Lock()
	if len(sh.roots) >= p.maxOpen {
		// Only spans that never end get here; forgetting one costs its
		// descendants their tree, not memory.
		for k := range sh.roots {
			delete(sh.roots, k)
			break
		}
	}
	sh.roots[sc.SpanID()] = sh.rootOf(ps.SpanID())
	sh.mu.Unlock()
}

// rootOf returns the local root of the span parentID, which is the root
// itself when it has no entry. The caller holds sh.mu.
func (sh *shard) rootOf(parentID trace.SpanID) trace.SpanID {
	if r, ok := sh.roots[parentID]; ok {
		return r
	}
	return parentID
}

// OnEnd implements sdktrace.SpanProcessor.
func (p *tailProcessor) OnEnd(s sdktrace.ReadOnlySpan) {
	if p.closed.Load() {
		return
	}
	sc := s.SpanContext()
	parent := s.Parent()
	isRoot := isLocalRoot(parent)
	if s.Name() == discardedName {
		// Discard ended it: no export, and an unsampled child's record of its
		// root goes.
		if !sc.IsSampled() && !isRoot {
			sh := p.shard(sc.TraceID())
			sh.mu.Lock()
			delete(sh.roots, sc.SpanID())
			sh.mu.Unlock()
		}
		return
	}
	if sc.IsSampled() {
		// The head sampler kept the tree: a sampled root's children are
		// sampled too and never wait.
		if isRoot {
			p.kept.Add(1)
		}
		p.next.OnEnd(s)
		return
	}
	key := treeKey{trace: sc.TraceID(), root: sc.SpanID()}
	isErr := s.Status().Code == codes.Error
	sh := p.shard(key.trace)

	sh.mu.Lock()
	if !isRoot {
		if r, ok := sh.roots[key.root]; ok {
			key.root = r
			delete(sh.roots, sc.SpanID())
		} else {
			key.root = sh.rootOf(parent.SpanID())
		}
		if keep, ok := sh.decided[key]; ok {
			sh.mu.Unlock()
			if keep {
				p.next.OnEnd(sampledSpan{s})
			}
			return
		}
		pt := sh.pending[key]
		if pt == nil {
			pt = sh.add(key)
			for len(sh.pending) > p.maxPerShard {
				p.evictOldest(sh)
			}
		}
		if len(pt.spans) >= maxSpansPerTrace {
			p.spansDropped.Add(1)
		} else {
			pt.spans = append(pt.spans, s)
		}
		pt.hasError = pt.hasError || isErr
		sh.mu.Unlock()
		return
	}
	pt := sh.pending[key]
	if pt != nil {
		sh.remove(pt)
	}
	keep := (p.keepErrors && (isErr || (pt != nil && pt.hasError))) ||
		(p.keepSlow > 0 && s.EndTime().Sub(s.StartTime()) >= p.keepSlow)
	sh.remember(key, keep)
	sh.mu.Unlock()

	if keep {
		p.kept.Add(1)
		if pt != nil {
			for _, c := range pt.spans {
				p.next.OnEnd(sampledSpan{c})
			}
		}
		p.next.OnEnd(sampledSpan{s})
	} else {
		p.discarded.Add(1)
	}
	if pt != nil {
		release(pt)
	}
}

// evictOldest drops the request whose spans have waited longest. The caller
// holds sh.mu.
func (p *tailProcessor) evictOldest(sh *shard) {
	pt := sh.oldest
	sh.remove(pt)
	p.evicted.Add(1)
	release(pt)
}

func (sh *shard) add(key treeKey) *pendingTrace {
	pt := pendingPool.Get().(*pendingTrace)
	pt.key = key
	pt.prev = sh.newest
	if sh.newest != nil {
		sh.newest.next = pt
	} else {
		sh.oldest = pt
	}
	sh.newest = pt
	sh.pending[key] = pt
	return pt
}

func (sh *shard) remove(pt *pendingTrace) {
	if pt.prev != nil {
		pt.prev.next = pt.next
	} else {
		sh.oldest = pt.next
	}
	if pt.next != nil {
		pt.next.prev = pt.prev
	} else {
		sh.newest = pt.prev
	}
	pt.prev, pt.next = nil, nil
	delete(sh.pending, pt.key)
}

func (sh *shard) remember(key treeKey, keep bool) {
	if _, ok := sh.decided[key]; !ok {
		if sh.ringLen == decidedPerShard {
			delete(sh.decided, sh.ring[sh.ringPos])
		} else {
			sh.ringLen++
		}
		sh.ring[sh.ringPos] = key
		sh.ringPos = (sh.ringPos + 1) % decidedPerShard
	}
	sh.decided[key] = keep
}

func release(pt *pendingTrace) {
	clear(pt.spans)
	if cap(pt.spans) > 64 {
		pt.spans = make([]sdktrace.ReadOnlySpan, 0, 8)
	}
	*pt = pendingTrace{spans: pt.spans[:0]}
	pendingPool.Put(pt)
}

// Shutdown implements sdktrace.SpanProcessor. Spans still waiting for their
// root are dropped: their requests did not finish.
func (p *tailProcessor) Shutdown(ctx context.Context) error {
	if p.closed.Swap(true) {
		return nil
	}
	for i := range p.shards {
		sh := &p.shards[i]
		sh.mu.Lock()
		for sh.oldest != nil {
			pt := sh.oldest
			sh.remove(pt)
			release(pt)
		}
		clear(sh.roots)
		sh.mu.Unlock()
	}
	return p.next.Shutdown(ctx)
}

// ForceFlush implements sdktrace.SpanProcessor; undecided requests stay
// pending.
func (p *tailProcessor) ForceFlush(ctx context.Context) error {
	return p.next.ForceFlush(ctx)
}

func (p *tailProcessor) pending() int {
	n := 0
	for i := range p.shards {
		sh := &p.shards[i]
		sh.mu.Lock()
		n += len(sh.pending)
		sh.mu.Unlock()
	}
	return n
}

// sampledSpan presents a span recorded without the sampled flag as sampled,
// because the batch processor exports only sampled spans and the decision to
// keep it was taken after it started.
type sampledSpan struct{ sdktrace.ReadOnlySpan }

func (s sampledSpan) SpanContext() trace.SpanContext {
	sc := s.ReadOnlySpan.SpanContext()
	return sc.WithTraceFlags(sc.TraceFlags().WithSampled(true))
}

// flushSlack is room in the batch processor's queue beyond what exportGate
// admits, for the markers ForceFlush puts into it: a marker takes a slot no
// admission counted, and a flush that times out behind a hung export leaves
// its marker queued. A slot costs 16 bytes.
const flushSlack = 64

// exportGate bounds the spans waiting for export (handed on to the batch
// processor and not yet given to the exporter) and counts the ones it turns
// away. The batch processor drops a span silently when its queue is full, so
// the gate admits no more than that queue holds (loggingExporter releases the
// spans as the exporter takes them), and every drop happens here, where it is
// counted.
type exportGate struct {
	sdktrace.SpanProcessor
	limit   int64
	queued  atomic.Int64
	dropped atomic.Uint64
}

// OnEnd implements sdktrace.SpanProcessor.
func (g *exportGate) OnEnd(s sdktrace.ReadOnlySpan) {
	if g.queued.Add(1) > g.limit {
		g.queued.Add(-1)
		g.dropped.Add(1)
		return
	}
	g.SpanProcessor.OnEnd(s)
}

// taken releases n spans that the exporter has been given.
func (g *exportGate) taken(n int) { g.queued.Add(-int64(n)) }
