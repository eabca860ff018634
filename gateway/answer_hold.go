package gateway

import (
	"context"
	"io"
	"log/slog"
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
// counts nothing.

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
	// are sequentially consistent), and they do not both pass the bound unseen.
	d := int64(n - r.ansHeld)
	if t := r.s.answerBytes.Add(d) + r.s.bodyBytes.Load(); d > 0 && t > r.rt.maxBuffered && t != int64(n+r.bodyHeld) {
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
	n := 0
	if resp != nil && !resp.IsBodyStream() {
		if c := cap(resp.Body()); c > maxPooledBuffer {
			n = c
		}
	}
	if d := n - r.ansHeld; d != 0 {
		r.s.answerBytes.Add(int64(d))
		r.ansHeld = n
	}
}

// holdUntilWritten hands what the request's answer holds to fasthttp with resp's body,
// which becomes the response's body stream (heldAnswer): written whole in one write,
// it gives the hold back when fasthttp closes it, once written, once its write failed
// (a client gone, the send deadline), or when the response is dropped unwritten.
func (r *request) holdUntilWritten(resp *fasthttp.Response) {
	if r.ansHeld == 0 {
		return
	}
	b := resp.Body()
	if old := resp.SwapBody(nil); unsafe.SliceData(old) != unsafe.SliceData(b) {
		// b is the response's raw body (a large one is set so, not copied): the
		// response keeps its own buffer.
		resp.SwapBody(old)
	}
	// Otherwise b was the response's buffer, now taken from it: resetting the
	// response for the stream, fasthttp would give it to another response's body
	// while it is still being written.
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
// why. Its limits settle as for any upstream failure: nothing reached the client.
func (r *request) refuseAnswer(ctx *fasthttp.RequestCtx) *apiError {
	endpoint := ""
	if r.ep != nil {
		endpoint = r.ep.name
	}
	r.s.log.LogAttrs(context.Background(), slog.LevelWarn, "upstream answer refused: server.max_buffered_bytes has no room for it",
		slog.String("request_id", string(r.reqID)), slog.String("endpoint", endpoint), slog.String("backend", r.backend),
		slog.String("target", r.rt.targetLabel(r.be, r.res.Target)),
		slog.Int64("buffered_bytes", r.s.buffered()), slog.Int64("max_buffered_bytes", r.rt.maxBuffered))
	return r.overloaded(ctx)
}
