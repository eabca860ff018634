package providers

import (
	"io"
	"time"
)

// relayQueue is the framing a bridge stream shares: the chat completions stream it
// reads (in), and the events each chat chunk gave, written into one reused buffer
// and yielded one by one. What a chunk gives is the bridge's own (relay).
type relayQueue struct {
	in  Events
	iev Event
	// chat is the chat request body, which the inner stream may read until it is
	// closed.
	chat *[]byte
	// begun is set once the bridge wrote its first events (its begin), finished once
	// a chunk's choice had a finish_reason.
	begun, finished bool
	// ended is set once the bridge wrote its last event, done once the end went out.
	// drain: the end came before the inner stream's (at the usage chunk), which is
	// ended too before the stream ends (endInner).
	ended, done, drain bool
	// continuous is set when the chat stream was asked for usage on every chunk
	// (continuous_usage_stats): usage on the finish_reason chunk is then no sign of
	// the end, which the usage chunk after it brings, with the final usage (vLLM's
	// alone has the prompt's cached tokens).
	continuous bool
	// chunk and choice are what readChunk read of the chat chunk in iev.
	chunk  chatChunk
	choice chatChoice
	// gen is the size of the generated text of the chat chunks read (their
	// OutputBytes) not yet given to an event: it goes with the next content event
	// yielded.
	gen   int
	pend  []byte
	marks []queuedEvent
	next  int
}

// queuedEvent is an event waiting in relayQueue.pend: its bytes end at end, where the
// next one's begin. usage marks the event that carries the stream's usage.
type queuedEvent struct {
	name    []byte
	end     int
	content bool
	usage   bool
	err     bool
}

// relay is a bridge's translation of the inner stream's events, written into the
// queue's pend with mark; readChunk reads each chat chunk for it.
type relay interface {
	// take takes a chat chunk's own members (c) and its usage (iev's), before
	// anything of the chunk is written.
	take(iev *Event, c *chatChunk)
	// begin writes the stream's first events, once, and sets the queue's begun.
	begin()
	// choice translates the chunk's choice of index 0.
	choice(c *chatChoice) error
	// finish ends the stream at the chat stream's end.
	finish()
	// fail ends the stream at a chat error object.
	fail(data []byte)
	// streamUsage is the usage the event marked usage carries, read when it is
	// yielded.
	streamUsage() (Usage, bool)
}

// pull yields the next event queued, reading the inner stream and translating it
// with r until one is; once the bridge ended, the end, then io.EOF.
func (q *relayQueue) pull(ev *Event, r relay) error {
	for {
		if q.next < len(q.marks) {
			m := &q.marks[q.next]
			start := 0
			if q.next > 0 {
				start = q.marks[q.next-1].end
			}
			q.next++
			*ev = Event{Data: q.pend[start:m.end], Name: m.name, Content: m.content, Error: m.err}
			if m.content {
				ev.OutputBytes, q.gen = q.gen, 0
			}
			if m.usage {
				ev.Usage, ev.HasUsage = r.streamUsage()
			} else if u, ok := r.streamUsage(); ok {
				// The usage so far, where the chat stream gives it before its end
				// (asked for on every chunk): a stream cut before the event that
				// carries the final one is settled with it.
				ev.Usage, ev.SoFar = u, true
			}
			return nil
		}
		if q.ended {
			*ev = Event{}
			if q.done {
				return io.EOF
			}
			if q.drain {
				q.drain = false
				q.endInner()
			}
			q.done, ev.Done = true, true
			return nil
		}
		q.pend, q.marks, q.next = q.pend[:0], q.marks[:0], 0
		if err := q.in.Next(&q.iev); err != nil {
			return err
		}
		switch {
		case q.iev.KeepAlive:
			*ev = Event{KeepAlive: true}
			return nil
		case q.iev.Done:
			r.finish()
		case q.iev.Error:
			r.fail(q.iev.Data)
		default:
			q.gen += q.iev.OutputBytes
			if err := q.readChunk(r); err != nil {
				// What a bridge cannot lay out (a tool call resumed after it was
				// done) may be a valid chat stream: the target is not judged by it.
				return err
			}
		}
	}
}

// ender is an inner stream a bridge can end before its own end, its answer whole:
// endEarly reports whether it did. What the upstream sends after ([DONE], the body's
// end) is then read when the stream is closed, as after [DONE]: within drainWait,
// else its connection is dropped.
type ender interface{ endEarly() bool }

// endInner ends the inner stream past the bridge's end. Read on here, an upstream
// that sends neither [DONE] nor its body's end after its usage chunk would hold the
// client's stream, whose last event went out, until stream_idle_timeout or the
// backend's timeout. An inner stream that cannot be ended so is read to its own end:
// [DONE], or an error, which ends an answer already whole as cleanly. Anything else
// that comes is dropped: the last event went out.
func (q *relayQueue) endInner() {
	if e, ok := q.in.(ender); ok && e.endEarly() {
		return
	}
	for {
		if err := q.in.Next(&q.iev); err != nil || q.iev.Done {
			return
		}
	}
}

// mark queues the event written in pend since the last one.
func (q *relayQueue) mark(name []byte, content bool) {
	q.marks = append(q.marks, queuedEvent{name: name, end: len(q.pend), content: content})
}

// closeInner closes the inner stream and gives back the chat body it read.
func (q *relayQueue) closeInner() error {
	err := q.in.Close()
	if q.chat != nil {
		putBody(q.chat)
	}
	return err
}

// reset readies q for the pool; a buffer one long stream grew goes with it.
func (q *relayQueue) reset() {
	q.in, q.chat, q.iev = nil, nil, Event{}
	q.begun, q.finished = false, false
	q.ended, q.done, q.drain, q.continuous = false, false, false, false
	q.chunk, q.choice, q.gen = chatChunk{}, chatChoice{}, 0
	q.pend, q.marks, q.next = trimBuf(q.pend), q.marks[:0], 0
}

// NotifyWait implements Waiter.
func (q *relayQueue) NotifyWait(fn func() error) bool {
	w, ok := q.in.(Waiter)
	return ok && w.NotifyWait(fn)
}

// NotifySilence implements SilenceNotifier.
func (q *relayQueue) NotifySilence(every time.Duration, fn func() error) bool {
	n, ok := q.in.(SilenceNotifier)
	return ok && n.NotifySilence(every, fn)
}

// Abort implements Aborter.
func (q *relayQueue) Abort() {
	if a, ok := q.in.(Aborter); ok {
		a.Abort()
	}
}
