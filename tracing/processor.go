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

// maxSpansPerTrace bounds one pending trace; a request makes a handful of
// spans (server, auth, limit, route, one per attempt), so hitting it means a
// runaway loop, not a real request.
const maxSpansPerTrace = 256

// decidedPerShard is how many recent decisions each shard remembers, so that
// a span ending after its root follows the root's decision instead of
// waiting in memory for a root that will never end again.
const decidedPerShard = 256

// tailProcessor records every span and decides per trace when the trace's
// local root span ends: traces already sampled at their start pass straight
// through; the others wait in memory and are exported only when the root is
// in error (or any of its spans is), or lasted at least keepSlow. It hands
// kept spans to next, a BatchSpanProcessor, marked as sampled.
type tailProcessor struct {
	next       sdktrace.SpanProcessor
	keepErrors bool
	keepSlow   time.Duration

	shards      []shard
	shardMask   uint64
	maxPerShard int
	closed      atomic.Bool

	kept, discarded, evicted, spansDropped atomic.Uint64
}

type shard struct {
	mu      sync.Mutex
	pending map[trace.TraceID]*pendingTrace
	// oldest and newest link the pending traces in arrival order, for
	// eviction.
	oldest, newest *pendingTrace

	decided map[trace.TraceID]bool
	ring    [decidedPerShard]trace.TraceID
	ringLen int
	ringPos int

	// Shards sit side by side in one slice; padding keeps each shard's
	// mutex on its own cache line.
	_ [64]byte
}

type pendingTrace struct {
	id         trace.TraceID
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
	for i := range p.shards {
		p.shards[i].pending = make(map[trace.TraceID]*pendingTrace)
		p.shards[i].decided = make(map[trace.TraceID]bool, decidedPerShard)
	}
	return p
}

func (p *tailProcessor) shard(id trace.TraceID) *shard {
	// Trace IDs are random, so their last byte spreads evenly.
	return &p.shards[uint64(id[15])&p.shardMask]
}

// OnStart implements sdktrace.SpanProcessor.
func (p *tailProcessor) OnStart(parent context.Context, s sdktrace.ReadWriteSpan) {
	p.next.OnStart(parent, s)
}

// OnEnd implements sdktrace.SpanProcessor.
func (p *tailProcessor) OnEnd(s sdktrace.ReadOnlySpan) {
	if p.closed.Load() {
		return
	}
	sc := s.SpanContext()
	parent := s.Parent()
	isRoot := !parent.IsValid() || parent.IsRemote()
	if sc.IsSampled() && !isRoot {
		p.next.OnEnd(s)
		return
	}
	id := sc.TraceID()
	isErr := s.Status().Code == codes.Error
	sh := p.shard(id)

	sh.mu.Lock()
	if !isRoot {
		if keep, ok := sh.decided[id]; ok {
			sh.mu.Unlock()
			if keep {
				p.next.OnEnd(sampledSpan{s})
			}
			return
		}
		pt := sh.pending[id]
		if pt == nil {
			pt = sh.add(id)
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
	pt := sh.pending[id]
	if pt != nil {
		sh.remove(pt)
	}
	keep := sc.IsSampled() ||
		(p.keepErrors && (isErr || (pt != nil && pt.hasError))) ||
		(p.keepSlow > 0 && s.EndTime().Sub(s.StartTime()) >= p.keepSlow)
	sh.remember(id, keep)
	sh.mu.Unlock()

	if keep {
		p.kept.Add(1)
		if pt != nil {
			for _, c := range pt.spans {
				p.next.OnEnd(sampledSpan{c})
			}
		}
		if sc.IsSampled() {
			p.next.OnEnd(s)
		} else {
			p.next.OnEnd(sampledSpan{s})
		}
	} else {
		p.discarded.Add(1)
	}
	if pt != nil {
		release(pt)
	}
}

// evictOldest drops the trace that has waited longest. The caller holds sh.mu.
func (p *tailProcessor) evictOldest(sh *shard) {
	pt := sh.oldest
	sh.remove(pt)
	p.evicted.Add(1)
	release(pt)
}

func (sh *shard) add(id trace.TraceID) *pendingTrace {
	pt := pendingPool.Get().(*pendingTrace)
	pt.id = id
	pt.prev = sh.newest
	if sh.newest != nil {
		sh.newest.next = pt
	} else {
		sh.oldest = pt
	}
	sh.newest = pt
	sh.pending[id] = pt
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
	delete(sh.pending, pt.id)
}

func (sh *shard) remember(id trace.TraceID, keep bool) {
	if _, ok := sh.decided[id]; !ok {
		if sh.ringLen == decidedPerShard {
			delete(sh.decided, sh.ring[sh.ringPos])
		} else {
			sh.ringLen++
		}
		sh.ring[sh.ringPos] = id
		sh.ringPos = (sh.ringPos + 1) % decidedPerShard
	}
	sh.decided[id] = keep
}

func release(pt *pendingTrace) {
	clear(pt.spans)
	if cap(pt.spans) > 64 {
		pt.spans = make([]sdktrace.ReadOnlySpan, 0, 8)
	}
	*pt = pendingTrace{spans: pt.spans[:0]}
	pendingPool.Put(pt)
}

// Shutdown implements sdktrace.SpanProcessor. Traces still waiting for their
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
		sh.mu.Unlock()
	}
	return p.next.Shutdown(ctx)
}

// ForceFlush implements sdktrace.SpanProcessor; undecided traces stay pending.
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
