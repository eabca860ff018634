package gateway

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// upstreamLogEvery is how often a backend's "upstream failed" warning may go out: with
// every target of a backend down, each failed request logged one besides its access
// log line, about 113k lines in 5 s, burying every other line.
const upstreamLogEvery = time.Second

// upstreamLog throttles one backend's "upstream failed" warnings: the first goes out,
// then at most one per upstreamLogEvery, which says how many were left out since the
// one before. Two atomic counters, read by every failed request of the backend: no
// lock for the requests of an outage to queue on, and no allocation.
type upstreamLog struct {
	// next is when the next line may go out, in Unix nanoseconds; 0 lets the first.
	next atomic.Int64
	// left counts the lines left out since the last one that went out.
	left atomic.Int64
}

// allow reports whether a failure at now (Unix nanoseconds) is logged, and if so how
// many were left out since the last line. A failure counted while the line that
// clears the count is decided goes with the next line.
func (f *upstreamLog) allow(now int64) (bool, int64) {
	next := f.next.Load()
	if now < next || !f.next.CompareAndSwap(next, now+int64(upstreamLogEvery)) {
		f.left.Add(1)
		return false, 0
	}
	return true, f.left.Swap(0)
}

// upstreamLogOf is the throttle of the backend named name ("" for a request that
// reached none), nil for a name the runtime does not have.
func (rt *runtime) upstreamLogOf(name string) *upstreamLog { return rt.upstreamLogs[name] }

// carryUpstreamLogs hands old's throttles to rt for the backends they share, so that a
// reload during an outage does not let a second line through within the interval.
func carryUpstreamLogs(old, rt *runtime) {
	if old == nil {
		return
	}
	for name, f := range old.upstreamLogs {
		if _, ok := rt.upstreamLogs[name]; ok {
			rt.upstreamLogs[name] = f
		}
	}
}

// warnUpstreamFailed logs that the request got no usable answer from its upstream
// (err, after attempts attempts), as its backend's upstreamLog lets it: the line names
// the request, its endpoint when it has one, the backend and the target its last
// attempt went to, and, when earlier lines were left out, how many (suppressed).
func (r *request) warnUpstreamFailed(endpoint string, attempts int, err error) {
	f := r.rt.upstreamLogOf(r.backend)
	var suppressed int64
	if f != nil {
		var ok bool
		if ok, suppressed = f.allow(time.Now().UnixNano()); !ok {
			return
		}
	}
	attrs := [7]slog.Attr{slog.String("request_id", string(r.reqID))}
	n := 1
	if endpoint != "" {
		attrs[n] = slog.String("endpoint", endpoint)
		n++
	}
	attrs[n] = slog.String("backend", r.backend)
	attrs[n+1] = slog.String("target", r.rt.targetLabel(r.be, r.res.Target))
	attrs[n+2] = slog.Int("attempts", attempts)
	attrs[n+3] = slog.String("error", errString(err))
	n += 4
	if suppressed > 0 {
		attrs[n] = slog.Int64("suppressed", suppressed)
		n++
	}
	r.s.log.LogAttrs(context.Background(), slog.LevelWarn, "upstream failed", attrs[:n]...)
}
