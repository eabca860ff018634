// Package logq puts a bounded in-memory queue of log lines in front of the process's
// stderr, so that a log reader that stalls (a shipper under back-pressure, a SIGSTOPped
// sidecar) costs log lines, never the goroutines that log.
//
// A blocking write to a full pipe, made while answering a request, held every answer
// and the shutdown behind the log reader: the gateway stopped answering after 64 KiB
// of access lines while its /readyz still said 200. Write now only copies the line
// into a buffer under a short mutex; one goroutine writes the buffer out in batches.
package logq

import (
	"bytes"
	"context"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMax is the bound of a Queue made by New: 4 MiB of lines, some 10,000 access
// lines, or seconds of logging at tens of thousands of requests a second.
const DefaultMax = 4 << 20

// linger is how long the writer waits, once a batch is out and nothing more is
// queued, before it goes idle. While it lingers, Write does not wake it: under load a
// line arrives within the linger and the writer never sleeps, so the request path pays
// no goroutine wake (a futex call) per line and the lines go out in batches, one write
// system call each.
const linger = time.Millisecond

// Queue is an io.Writer that queues whole lines for a writer goroutine, up to a bound
// in bytes, and drops what would exceed it. It is safe for concurrent use; each Write
// comes out whole, never split or interleaved with another, in the order of the Writes.
type Queue struct {
	w      io.Writer
	max    int
	linger time.Duration
	// wake has one slot: Write sends on it, without blocking, only when it finds the
	// writer idle, which it then marks busy, so a wake is never lost or left over.
	wake chan struct{}
	done chan struct{}
	// dropped counts the lines dropped, for Dropped to read without mu.
	dropped atomic.Uint64

	mu  sync.Mutex
	buf []byte
	// inflight is the batch being written, counted against max with buf, and read by
	// Close to count what it leaves unwritten.
	inflight []byte
	// unreported are the lines dropped since the last notice.
	unreported uint64
	idle       bool
	closed     bool
	stopped    bool
	notice     func(b []byte, n uint64) []byte
}

// New returns a Queue in front of w bounded at DefaultMax bytes, and starts its writer.
// Close it to write what is queued.
func New(w io.Writer) *Queue { return newQueue(w, DefaultMax, linger) }

func newQueue(w io.Writer, limit int, linger time.Duration) *Queue {
	// The buffers grow, by append, to what the load needs, up to limit each.
	const start = 64 << 10
	q := &Queue{w: w, max: limit, linger: linger, wake: make(chan struct{}, 1), done: make(chan struct{}),
		buf: make([]byte, 0, min(start, limit)), notice: jsonNotice}
	go q.run(make([]byte, 0, min(start, limit)))
	return q
}

// Write queues p, which is one or more whole lines, and returns len(p) and no error.
// It never waits on the writer: when p does not fit under the bound, or the Queue is
// closed and its writer gone, p is dropped and counted. A line is never split.
func (q *Queue) Write(p []byte) (int, error) {
	q.mu.Lock()
	if q.stopped || len(q.buf)+len(q.inflight)+len(p) > q.max {
		n := uint64(max(bytes.Count(p, newline), 1))
		q.unreported += n
		q.dropped.Add(n)
		q.signal()
		q.mu.Unlock()
		return len(p), nil
	}
	q.buf = append(q.buf, p...)
	q.signal()
	q.mu.Unlock()
	return len(p), nil
}

var newline = []byte{'\n'}

// signal wakes the writer if it is idle; the caller holds mu.
func (q *Queue) signal() {
	if q.idle {
		q.idle = false
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// Dropped returns how many lines were dropped since the Queue was made.
func (q *Queue) Dropped() uint64 { return q.dropped.Load() }

// SetNotice sets how the line that reports n dropped lines is written: f appends it
// to b, or returns b as it is to write none. The writer writes it itself, after the
// batch it takes next, so that it is not dropped in turn however full the queue.
func (q *Queue) SetNotice(f func(b []byte, n uint64) []byte) {
	q.mu.Lock()
	q.notice = f
	q.mu.Unlock()
}

// Close writes what is queued, and the notice of lines dropped, and stops the writer.
// If ctx ends first (the reader is stalled), it returns the number of queued lines left
// unwritten, the batch the writer is stuck in counted whole, and ctx's error; the
// writer is left blocked in its write, and the lines dropped before stay in Dropped. Writes after Close are queued while the writer
// drains and dropped once it has stopped.
func (q *Queue) Close(ctx context.Context) (int, error) {
	q.mu.Lock()
	q.closed = true
	q.signal()
	q.mu.Unlock()
	select {
	case <-q.done:
		return 0, nil
	case <-ctx.Done():
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	lost := bytes.Count(q.buf, newline) + bytes.Count(q.inflight, newline)
	return lost, ctx.Err()
}

// run is the writer: it takes the whole queue as a batch, writes it with one Write,
// and gives the buffer back for the next batch.
func (q *Queue) run(out []byte) {
	defer close(q.done)
	for {
		q.mu.Lock()
		q.inflight = nil
		if q.empty() && !q.closed && q.linger > 0 {
			q.mu.Unlock()
			time.Sleep(q.linger)
			q.mu.Lock()
		}
		for q.empty() {
			if q.closed {
				q.stopped = true
				q.mu.Unlock()
				return
			}
			q.idle = true
			q.mu.Unlock()
			<-q.wake
			q.mu.Lock()
		}
		out, q.buf = q.buf, out[:0]
		q.inflight = out
		n, notice := q.unreported, q.notice
		q.unreported = 0
		q.mu.Unlock()
		if n > 0 {
			// Appended to the batch, past the bound: the notice is never dropped,
			// and its lines are lost ones already counted.
			out = notice(out, n)
		}
		// An error (EPIPE once the reader is gone, SIGPIPE being ignored) loses
		// the batch: there is nowhere else to say so.
		_, _ = q.w.Write(out)
	}
}

// empty reports whether there is nothing to write; the caller holds mu.
func (q *Queue) empty() bool { return len(q.buf) == 0 && q.unreported == 0 }

// jsonNotice is the notice of a Queue whose SetNotice was not called: a JSON line as
// slog's JSON handler writes one.
func jsonNotice(b []byte, n uint64) []byte {
	b = append(b, `{"time":"`...)
	b = time.Now().UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":"WARN","msg":"log lines dropped: the log reader fell behind","lines":`...)
	b = strconv.AppendUint(b, n, 10)
	return append(b, "}\n"...)
}
