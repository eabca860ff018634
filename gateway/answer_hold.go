package gateway

import (
	"io"
	"sync"
	"unsafe"

	"github.com/valyala/fasthttp"
)

// An upstream answer that is not streamed is held whole in memory, up to its
// backend's max_response_bytes (64 MiB by default), from its read until fasthttp has
// written it to the client: 200 requests whose upstream answers 60 MB each would hold
// 12 GB. Such answers count against server.max_buffered_bytes with the request bodies,
// one bound for what the gateway holds in memory for its clients: a buffer over 64 KiB
// counts while the answer is read (the call's providers.AnswerHold, growing with what
// came), then the body the client gets in its place (holdAnswerBody: the same buffer
// passed on, or the translation that replaced it; the read buffer and its
// translation live together only while it is made, with no wait in between, and
// count as one), until fasthttp has written it (heldAnswer). An answer with no room
// ends its attempt with providers.ErrAnswerNoRoom, its upstream connection closed,
// and the client gets 503 overloaded (refuseAnswer). A stream is not held whole and
// counts nothing, but the error answer a streaming call gets, and an audio answer a
// streaming call gets whole, are read whole and count as above. An upstream's error
// answer kept while the next backend is tried (keepAnswer) counts too, moved, not
// copied, and never refused: it takes no more memory than it did, and a refusal
// would only put the gateway's 503 in place of the upstream's answer, which is there
// already; the next backend's answer finds the room it leaves.

// buffered is what the request bodies and the answers held take together against
// server.max_buffered_bytes now.
func (s *Server) buffered() int64 { return s.bodyBytes.Load() + s.answerBytes.Load() }

// HoldAnswer implements providers.AnswerHold: the buffer an upstream's answer is read
// into, n bytes, counts against server.max_buffered_bytes in place of what the
// request's answer held before, and it reports false, counting nothing, when that
// would take what every request holds, bodies and answers, past the bound. As for a
// body, an answer alone is always taken: with its request's body, the only bytes
// held, up to its backend's max_response_bytes.
func (r *request) HoldAnswer(n int) bool {
	// Added to one counter, then the other read, as holdBody does the other way
	// round: of a body and an answer held at once, one sees the other (Go's atomics
	// are sequentially consistent), and they do not both pass the bound unseen. What
	// the request holds itself (its body, an earlier answer kept for the
	// fallbacks) is no other request's: with it alone, the answer is taken.
	d := int64(n - r.ansHeld)
	if t := r.s.answerBytes.Add(d) + r.s.bodyBytes.Load(); d > 0 && t > r.rt.maxBuffered && t != int64(n+r.bodyHeld+r.keptHeld) {
		r.s.answerBytes.Add(-d)
		return false
	}
	r.ansHeld = n
	return true
}

// holdAnswerBody counts the body of resp, the request's response once an attempt has
// ended (or been dropped for the next), as what its answer holds, in place of what
// that held: the answer read or the translation that replaced it, an upstream's error
// answer, or nothing; nil resp is nothing. Only a body over maxPooledBuffer counts,
// and this never refuses: the bytes are there already.
func (r *request) holdAnswerBody(resp *fasthttp.Response) {
	r.setAnswerHolds(bodyHold(resp), r.keptHeld)
}

// bodyHold is what resp's body takes against server.max_buffered_bytes: its
// capacity when over maxPooledBuffer, else 0; 0 for nil resp or a body stream.
func bodyHold(resp *fasthttp.Response) int {
	if resp == nil || resp.IsBodyStream() {
		return 0
	}
	if c := cap(resp.Body()); c > maxPooledBuffer {
		return c
	}
	return 0
}

// setAnswerHolds counts ans as what the request's answer holds and kept as what its
// kept answer holds, in place of what they held, in one step: an answer moved from
// one to the other is never counted twice, nor missed, by another request's
// HoldAnswer meanwhile.
func (r *request) setAnswerHolds(ans, kept int) {
	if d := ans + kept - r.ansHeld - r.keptHeld; d != 0 {
		r.s.answerBytes.Add(int64(d))
	}
	r.ansHeld, r.keptHeld = ans, kept
}

// keepAnswer keeps the upstream's error answer in resp before the next backend is
// tried, for the send loop to put back (restoreAnswer) should that backend make no
// attempt (a fallback that cannot take the call, no target in service, every one
// busy); resp is reset for that attempt after. A body over maxPooledBuffer (up to
// max_response_bytes) is moved, not copied, and counts as kept; a smaller one is
// copied, into kept's own buffer.
func (r *request) keepAnswer(resp *fasthttp.Response) {
	if r.kept == nil {
		r.kept = fasthttp.AcquireResponse()
	}
	if bodyHold(resp) == 0 {
		resp.CopyTo(r.kept)
	} else {
		r.kept.Reset()
		resp.Header.CopyTo(&r.kept.Header)
		r.kept.SetBodyRaw(takeBody(resp))
	}
	r.setAnswerHolds(bodyHold(resp), bodyHold(r.kept))
}

// restoreAnswer puts the answer keepAnswer kept back in resp, as the request's
// answer, moved back when it was moved.
func (r *request) restoreAnswer(resp *fasthttp.Response) {
	if r.keptHeld == 0 {
		r.kept.CopyTo(resp)
	} else {
		resp.Reset()
		r.kept.Header.CopyTo(&resp.Header)
		resp.SetBodyRaw(takeBody(r.kept))
	}
	r.setAnswerHolds(bodyHold(resp), bodyHold(r.kept))
}

// dropKept lets go of a large answer keepAnswer kept, which no longer stands: an
// attempt made since, or an error that was no upstream's answer, replaced it. A
// small one stays in kept's buffer, for the next to be copied into.
func (r *request) dropKept() {
	if r.keptHeld > 0 {
		r.kept.ResetBody()
		r.setAnswerHolds(r.ansHeld, 0)
	}
}

// takeBody takes resp's body from it, without copying: its raw body (SetBodyRaw,
// as a large answer is set) or its buffer's bytes, which it then no longer has.
func takeBody(resp *fasthttp.Response) []byte {
	b := resp.Body()
	if old := resp.SwapBody(nil); unsafe.SliceData(old) != unsafe.SliceData(b) {
		// b is the response's raw body, which SwapBody dropped: the response
		// keeps its own buffer.
		resp.SwapBody(old)
	}
	return b
}

// holdUntilWritten hands what the request's answer holds to fasthttp with resp's body,
// which becomes the response's body stream (heldAnswer): written whole in one write,
// it gives the hold back when fasthttp closes it, once written, once its write failed
// (a client gone, the send deadline), or when the response is dropped unwritten.
func (r *request) holdUntilWritten(resp *fasthttp.Response) {
	if r.ansHeld == 0 {
		return
	}
	// Taken from the response, its buffer too: resetting the response for the
	// stream, fasthttp would give that to another response's body while it is
	// still being written.
	b := takeBody(resp)
	h := heldAnswers.Get().(*heldAnswer)
	h.s, h.b, h.n = r.s, b, r.ansHeld
	r.ansHeld = 0
	resp.SetBodyStream(h, len(b))
}

// heldAnswer is an answer's body handed to fasthttp with its hold against
// server.max_buffered_bytes (holdUntilWritten), which its Close gives back. It is
// pooled, and knows nothing of its request: fasthttp closes it after the request's
// release.
type heldAnswer struct {
	s *Server
	b []byte
	n int
}

var heldAnswers = sync.Pool{New: func() any { return new(heldAnswer) }}

// Read implements io.Reader.
func (h *heldAnswer) Read(p []byte) (int, error) {
	if len(h.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, h.b)
	h.b = h.b[n:]
	return n, nil
}

// WriteTo writes the body in one write, which fasthttp's writer passes to the
// connection without copying it (but for what fits in its buffer behind the header).
func (h *heldAnswer) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(h.b)
	h.b = h.b[n:]
	return int64(n), err
}

// Close gives the answer's hold back.
func (h *heldAnswer) Close() error {
	h.s.answerBytes.Add(-int64(h.n))
	*h = heldAnswer{}
	heldAnswers.Put(h)
	return nil
}

// refuseAnswer is the answer to a request whose upstream answer found no room under
// server.max_buffered_bytes (providers.ErrAnswerNoRoom): 503 overloaded, its
// wait set (overloaded), as for a body with no room, and a line for the operator saying
// why (warnAnswerRefused, throttled). Its limits settle as for any upstream failure:
// nothing reached the client.
func (r *request) refuseAnswer(ctx *fasthttp.RequestCtx) *apiError {
	r.warnAnswerRefused()
	return r.overloaded(ctx)
}
