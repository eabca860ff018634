package gateway

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// upstreamLogEvery is how often a backend's warning of one kind (upstreamWarning) may
// go out: with every target of a backend down, each failed request logged an
// "upstream failed" warning besides its access log line, about 113k lines in 5 s,
// burying every other line; streams cut by a crashing upstream, and answers refused
// under server.max_buffered_bytes in an overload, flood the same way.
const upstreamLogEvery = time.Second

// upstreamLog throttles one backend's warnings of one kind: the first goes out, then
// at most one per upstreamLogEvery, which says how many were left out since the one
// before. Two atomic counters, read by every failed request of the backend: no lock
// for the requests of an outage to queue on, and no allocation.
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

// upstreamWarning is one of the per-request warnings of a failed upstream call, each
// throttled apart: they tell different things (no answer at all, a stream cut after
// its 200, an answer the gateway had no room for), so a flood of one must not hold
// back the first line of another, and a line's suppressed counts its own kind only.
type upstreamWarning uint8

const (
	// warnFailed is "upstream failed": no usable answer before the 200.
	warnFailed upstreamWarning = iota
	// warnStreamFailed is "upstream stream failed": the stream ended badly after its 200.
	warnStreamFailed
	// warnAnswerRefused is "upstream answer refused: …": an answer that found no
	// room under server.max_buffered_bytes.
	warnAnswerRefused
	upstreamWarnings
)

// backendLogs are a backend's throttles, one per upstreamWarning.
type backendLogs [upstreamWarnings]upstreamLog

// upstreamLogOf is the throttle of warning w for the backend named name ("" for a
// request that reached none), nil for a name the runtime does not have.
func (rt *runtime) upstreamLogOf(name string, w upstreamWarning) *upstreamLog {
	if l := rt.upstreamLogs[name]; l != nil {
		return &l[w]
	}
	return nil
}

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
	r.warnUpstream(warnFailed, "upstream failed", endpoint, attempts, err)
}

// warnStreamFailed logs that the request's stream ended badly after its 200 (err), as
// its backend's throttle of the warning lets it: the line names the request, its
// endpoint, the backend and the target the stream came from, and, when earlier lines
// were left out, how many (suppressed).
func (r *request) warnStreamFailed(err error) {
	endpoint := ""
	if r.ep != nil {
		endpoint = r.ep.name
	}
	r.warnUpstream(warnStreamFailed, "upstream stream failed", endpoint, -1, err)
}

// warnUpstream writes warning w's line msg, as its backend's throttle of w lets it:
// the request, its endpoint when it has one, the backend and target, the attempts
// when attempts is 0 or more, err, and, when earlier lines were left out, how many
// (suppressed).
func (r *request) warnUpstream(w upstreamWarning, msg, endpoint string, attempts int, err error) {
	suppressed, ok := r.allowWarning(w)
	if !ok {
		return
	}
	attrs := [7]slog.Attr{slog.String("request_id", string(r.reqID))}
	n := 1
	if endpoint != "" {
		attrs[n] = slog.String("endpoint", endpoint)
		n++
	}
	attrs[n] = slog.String("backend", r.backend)
	attrs[n+1] = slog.String("target", r.rt.targetLabel(r.be, r.res.Target))
	n += 2
	if attempts >= 0 {
		attrs[n] = slog.Int("attempts", attempts)
		n++
	}
	attrs[n] = slog.String("error", errString(err))
	n++
	if suppressed > 0 {
		attrs[n] = slog.Int64("suppressed", suppressed)
		n++
	}
	r.s.log.LogAttrs(context.Background(), slog.LevelWarn, msg, attrs[:n]...)
}

// warnAnswerRefused logs that the request's upstream answer found no room under
// server.max_buffered_bytes, as its backend's throttle of the warning lets it: the
// line names the request, its endpoint when it has one, the backend and target that
// answered, what is held against the bound and the bound, and, when earlier lines
// were left out, how many (suppressed).
func (r *request) warnAnswerRefused() {
	suppressed, ok := r.allowWarning(warnAnswerRefused)
	if !ok {
		return
	}
	attrs := [7]slog.Attr{slog.String("request_id", string(r.reqID))}
	n := 1
	if r.ep != nil {
		attrs[n] = slog.String("endpoint", r.ep.name)
		n++
	}
	attrs[n] = slog.String("backend", r.backend)
	attrs[n+1] = slog.String("target", r.rt.targetLabel(r.be, r.res.Target))
	attrs[n+2] = slog.Int64("buffered_bytes", r.s.buffered())
	attrs[n+3] = slog.Int64("max_buffered_bytes", r.rt.maxBuffered)
	n += 4
	if suppressed > 0 {
		attrs[n] = slog.Int64("suppressed", suppressed)
		n++
	}
	r.s.log.LogAttrs(context.Background(), slog.LevelWarn, "upstream answer refused: server.max_buffered_bytes has no room for it", attrs[:n]...)
}

// allowWarning reports whether the request's warning w goes out now, as its backend's
// throttle of w lets it, and how many of them were left out before it. A backend the
// runtime does not have (none) logs every line.
func (r *request) allowWarning(w upstreamWarning) (suppressed int64, ok bool) {
	f := r.rt.upstreamLogOf(r.backend, w)
	if f == nil {
		return 0, true
	}
	ok, suppressed = f.allow(time.Now().UnixNano())
	return suppressed, ok
}
