package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/internal/connwrap"
	"github.com/tollgate/tollgate/providers"
)

// A stream can last minutes and a gateway holds thousands, so what each one keeps
// alive matters more than a few instructions per event. Through fasthttp's body
// stream a stream holds the connection's worker goroutine, whose stack has grown to
// 16 KiB on the way through the handler and the upstream dial and stays there (the
// stream's steady depth is just too deep for the GC to halve it), and the 4 KiB
// response writer. An HTTP/1.1 stream therefore hijacks its connection once its
// response is decided: a fresh goroutine with a small stack writes the header and
// then each event as one chunk straight to the socket from the request's own event
// buffer. When the stream ends the connection goes back to fasthttp (ServeConn) for
// the client's next request, as keep-alive would have had it.
//
// fasthttp keeps its hijack goroutine's connection reader (8 KiB) and the RequestCtx
// until the hijack handler returns. Unless the client has already sent more bytes
// behind the stream's request (pipelining), which only that reader holds, the handler
// therefore hands the stream to a goroutine of its own and returns: the reader goes
// to the collector and the RequestCtx back to fasthttp's pool while the stream runs,
// and the stream's goroutine serves the connection's next request itself.

// chunkRoom is the space kept in front of each event in request.out for its chunk
// header: up to 8 hex digits and CRLF.
const chunkRoom = 10

var (
	errRelayPanic = errors.New("stream relay panicked")
	errConnFailed = errors.New("client connection failed")
)

var (
	strCRLF      = []byte("\r\n")
	strLastChunk = []byte("0\r\n\r\n")
	chunkSpace   [chunkRoom]byte
)

// eventBuf is out ready for one more event: behind the response header if it is
// still held, with chunkRoom bytes of room in front of the first event.
func (r *request) eventBuf() []byte {
	if len(r.out) == r.outHead {
		return append(r.out, chunkSpace[:]...)
	}
	return r.out
}

// hijackStream hands the response to serveHijacked. The header is serialized now,
// while the RequestCtx is the handler's; the caller has set what it carries.
func (r *request) hijackStream(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	r.setRequestIDHeader(h)
	// HTTP/1.0 has no chunks: such a client reads the events to the end of the
	// connection.
	r.chunked = ctx.Request.Header.IsHTTP11()
	if r.chunked {
		h.SetContentLength(-1)
	} else {
		h.SetContentLength(-2)
	}
	r.keepConn = r.chunked && !ctx.Request.Header.ConnectionClose() && !r.s.draining.Load()
	if !r.keepConn {
		h.SetConnectionClose()
	}
	// The header waits in out to go out with the first events.
	r.out = h.AppendBytes(r.out[:0])
	r.outHead = len(r.out)
	r.conn = ctx.Conn()
	// The stream may outlive the RequestCtx: drop the request's views of its buffers.
	r.body, r.call.Body, r.call.Header, r.subj.User = nil, nil, nil, nil
	// Nor does it need the client's body any more (nothing is retried once the
	// answer's header went out): its buffers go to the next request, not along with
	// the stream.
	putBodyBuf(r.bodyBuf)
	putBodyBuf(r.spliceBuf)
	r.bodyBuf, r.spliceBuf = nil, nil
	r.dropBodyHold()
	r.s.hijacked.Add(1)
	ctx.HijackSetNoResponse(true)
	hijack(ctx, r.hijackFn)
}

// hijack has h run on ctx's connection once the handler returns. Tests that drive
// the handler without a server wrap it to run h themselves.
var hijack = (*fasthttp.RequestCtx).Hijack

// detach runs r's stream on conn on a goroutine of its own. Tests that drive the
// handler without a server replace it to run the stream before the hijack handler
// returns.
var detach = func(r *request, conn net.Conn) { go r.streamDetached(conn) }

// serveHijacked takes the connection fasthttp handed over (hc reads through
// fasthttp's buffered reader; writes go straight to the socket) and runs the stream
// on it: on a goroutine of its own when nothing is buffered behind the request, so
// that fasthttp can take back its reader and the RequestCtx, and here otherwise.
// fasthttp keeps this goroutine pinned to the old reader and RequestCtx until it
// returns, so from here the connection's next request gets a goroutine of its own.
func (r *request) serveHijacked(hc net.Conn) {
	conn, s := r.conn, r.s
	next, held := pipelined(conn, hc, r.peek[:])
	if next != nil && !held {
		detach(r, conn)
		return
	}
	var failed error
	if next == nil {
		// The connection failed its deadline calls before the first write.
		failed = errConnFailed
	}
	if keep, _ := r.streamTo(failed, false); !keep {
		s.hijacked.Add(-1)
		_ = conn.Close()
		return
	}
	go s.serveNext(next)
}

// streamDetached runs the stream on the stream's own goroutine, which then serves the
// connection's next request itself. The client's connection is watched meanwhile.
func (r *request) streamDetached(conn net.Conn) {
	s := r.s
	keep, first := r.streamTo(nil, true)
	if !keep {
		s.hijacked.Add(-1)
		_ = conn.Close()
		return
	}
	if first >= 0 {
		// The client sent its next request while the stream ran. A connection
		// that came here wrapped is served by its wrapper, not wrapped again, as
		// in awaitNext.
		next, fb := conn, asFirstByteConn(conn)
		if fb == nil {
			next, fb = newFirstByteConn(conn)
		}
		fb.b[0] = byte(first)
		fb.ahead = fb.b[:1]
		s.serveNext(next)
		return
	}
	// Waiting for the next request, the connection still counts as hijacked, and
	// then until its loop ends (serveNext): a request whose first byte came as the
	// drain began is answered before the drain ends.
	if next := s.awaitNext(conn); next != nil {
		s.serveNext(next)
		return
	}
	s.hijacked.Add(-1)
}

// serveNext serves the requests a client sends on its stream's connection next (the
// first already sent, behind the stream or after it), which counts as hijacked from
// the stream (streamTo) until fasthttp's loop for it ends: from the moment its first
// byte is read, the drain waits for the request, which fasthttp's shutdown, begun or
// ended before the loop, does not count. During the drain that request's answer
// closes the connection and ends the loop; before, an idle connection is closed by
// fasthttp's shutdown.
//
// fasthttp keys a connection's idle bookkeeping by the net.Conn it is handed, and the
// loop that hijacked a wrapper for a stream drops the wrapper's entry when it ends,
// after the hijack handler has returned: a wrapper handed over again before then (a
// stream shorter than that, a request pipelined behind it) would lose its new entry
// to the old loop, and a drain would wait for the connection as busy, idle though it
// is, until shutdown_grace ran out. The wrapper's loop lock has the new loop wait
// until the old one is done.
func (s *Server) serveNext(next net.Conn) {
	defer s.hijacked.Add(-1)
	if fb := asFirstByteConn(next); fb != nil {
		fb.loop.Lock()
		defer fb.loop.Unlock()
	}
	_ = s.api.ServeConn(next)
}

// errClientGone ends a stream whose client closed its connection.
var errClientGone = errors.New("client closed the connection")

// watchClient reads the client's connection while its stream runs, as nothing else
// does until the stream is over: a client that hangs up while the upstream is silent
// (its request queued behind others, a long prompt's prefill, a reasoning pause) would
// otherwise be found only by the write of the next event, minutes later, while the
// upstream request, its pool slot and its limits stay taken. When the client has
// gone, the stream is aborted (providers.Aborter) and ends as a client hang-up. A
// byte that arrives is the client's next request (pipelined behind the stream): it is
// kept for it, and the watch ends.
func (r *request) watchClient() {
	n, _ := r.conn.Read(r.peek[:])
	r.watchN = n
	if n == 0 && !r.watchStop.Load() {
		r.gone.Store(true)
		if a, ok := r.stream.(providers.Aborter); ok {
			a.Abort()
		}
	}
	r.watchDone <- struct{}{}
}

// stopWatch ends the watch and returns the byte of the client's next request it
// read, or -1: a read deadline in the past ends the read at once.
func (r *request) stopWatch() int {
	r.watchStop.Store(true)
	failed := r.conn.SetReadDeadline(time.Unix(1, 0)) != nil
	<-r.watchDone
	if failed || r.conn.SetReadDeadline(time.Time{}) != nil {
		r.keepConn = false
	}
	if r.watchN == 0 {
		return -1
	}
	return int(r.peek[0])
}

// awaitNext waits, as fasthttp does on a kept-alive connection, for the first byte of
// the connection's next request, and returns the connection to serve it with; nil,
// the connection closed, when the client closed it, it idled past the server's idle
// timeout, or the server drains. fasthttp counts a connection just handed to
// ServeConn as new, not idle, for its first 5 s, so its shutdown would wait that long
// for a connection that sits idle between requests; waiting here, the server knows
// the connection idle and closes it as soon as it drains.
//
// A stream that ends during the drain had its header sent without Connection: close,
// so its client takes the connection for kept alive and may send its next request on
// it as soon as it has read the end: that one is served (with Connection: close) if
// it comes within drainNextWait. Closed at once, the connection would meet it with an
// EOF or a reset after it was sent, which no client resends for a POST.
func (s *Server) awaitNext(conn net.Conn) net.Conn {
	idle := idleTimeout(s.api)
	var deadline time.Time
	if idle > 0 {
		deadline = time.Now().Add(idle)
	}
	s.afterStreamMu.Lock()
	if s.cut.Load() {
		s.afterStreamMu.Unlock()
		_ = conn.Close()
		return nil
	}
	if s.draining.Load() {
		if d := time.Now().Add(drainNextWait); deadline.IsZero() || d.Before(deadline) {
			deadline = d
		}
	}
	if s.afterStream == nil {
		s.afterStream = make(map[net.Conn]struct{})
	}
	s.afterStream[conn] = struct{}{}
	s.afterStreamMu.Unlock()

	// A connection that came back here before is reused, not wrapped again: one
	// wrapper per stream would pile up on a connection that carries many.
	next, fb := conn, asFirstByteConn(conn)
	reused := fb != nil && len(fb.ahead) == 0
	if !reused {
		// From a pool: most connections that end here close, and then the
		// wrapper goes back instead of costing each stream an allocation.
		next, fb = newFirstByteConn(conn)
	}
	var n int
	if conn.SetReadDeadline(deadline) == nil {
		n, _ = fb.Conn.Read(fb.b[:])
	}

	s.afterStreamMu.Lock()
	delete(s.afterStream, conn)
	s.afterStreamMu.Unlock()
	if n == 0 || conn.SetReadDeadline(time.Time{}) != nil {
		_ = conn.Close()
		if !reused {
			putFirstByteConn(next)
		}
		return nil
	}
	fb.ahead = fb.b[:1]
	return next
}

// trackStream adds (or with on false, removes) a running stream's connection to those
// cutStreams closes. A stream whose upstream answered after cutStreams ran is cut
// at once.
func (s *Server) trackStream(conn net.Conn, on bool) {
	s.afterStreamMu.Lock()
	if on && s.cut.Load() {
		_ = conn.Close()
	} else if on {
		if s.streaming == nil {
			s.streaming = make(map[net.Conn]struct{})
		}
		s.streaming[conn] = struct{}{}
	} else {
		delete(s.streaming, conn)
	}
	s.afterStreamMu.Unlock()
}

// cutStreams closes the connections of the streams still running: the relay's next
// write fails, the client watch sees the connection gone and aborts the upstream, and
// the stream ends as cut by the shutdown (cut, set before), not as a client hang-up.
func (s *Server) cutStreams() {
	s.afterStreamMu.Lock()
	defer s.afterStreamMu.Unlock()
	for c := range s.streaming {
		_ = c.Close()
	}
}

// drainNextWait is how long a connection whose stream ended during the drain waits
// for the client's next request, which a client sends at once when it has one; it
// also delays the end of a drain whose last request was such a stream.
const drainNextWait = 100 * time.Millisecond

// closeAfterStream closes the connections waiting in awaitNext: idle, so nothing is
// cut. At the drain's start those are connections idle since before it; those whose
// stream ends later wait drainNextWait, unless the grace ran out (cutOpen).
func (s *Server) closeAfterStream() {
	s.afterStreamMu.Lock()
	defer s.afterStreamMu.Unlock()
	for c := range s.afterStream {
		_ = c.Close()
	}
}

// firstByteConn is a connection whose next bytes were read ahead: ahead holds those
// not yet read again, the one byte of a wait for the next request (in b), or what
// fasthttp's reader had buffered of the requests the client pipelined behind a
// stream. Everything else goes to the connection itself, and NetConn gives it:
// fasthttp's hijacked connection gives nothing of the connection under it (no
// NetConn, no Linger, no TLS state), and the hang-up watch, the lingering close of a
// 413 and the TLS state of every later request on the connection look for them. A
// connection is wrapped once however many streams it carries: the hang-up watch and
// serveParseError look only so many wrappers deep.
type firstByteConn struct {
	net.Conn
	ahead []byte
	b     [1]byte
	// loop is held while fasthttp serves the wrapper (serveNext).
	loop sync.Mutex
}

// NetConn returns the connection c wraps, for the hang-up watch to find its socket
// and serveParseError its Linger.
func (c *firstByteConn) NetConn() net.Conn { return c.Conn }

func (c *firstByteConn) Read(p []byte) (int, error) {
	if len(c.ahead) > 0 && len(p) > 0 {
		n := copy(p, c.ahead)
		if c.ahead = c.ahead[n:]; len(c.ahead) == 0 {
			// The bytes copied from fasthttp's reader go with it.
			c.ahead = nil
		}
		return n, nil
	}
	return c.Conn.Read(p)
}

// tlsConn is what fasthttp takes for a TLS connection (RequestCtx.IsTLS,
// TLSConnectionState).
type tlsConn interface {
	Handshake() error
	ConnectionState() tls.ConnectionState
}

// tlsFirstByteConn is a firstByteConn over a TLS connection, which it passes for as
// the connection does: requests served on it after a stream are HTTPS ones
// (url.scheme, the client's certificate).
type tlsFirstByteConn struct{ firstByteConn }

func (c *tlsFirstByteConn) Handshake() error { return c.Conn.(tlsConn).Handshake() }

func (c *tlsFirstByteConn) ConnectionState() tls.ConnectionState {
	return c.Conn.(tlsConn).ConnectionState()
}

var (
	firstBytePool    = sync.Pool{New: func() any { return new(firstByteConn) }}
	tlsFirstBytePool = sync.Pool{New: func() any { return new(tlsFirstByteConn) }}
)

// newFirstByteConn wraps conn in a pooled firstByteConn, a tlsFirstByteConn over a
// TLS connection; it returns the wrapper to serve and its firstByteConn.
func newFirstByteConn(conn net.Conn) (net.Conn, *firstByteConn) {
	if _, ok := conn.(tlsConn); ok {
		c := tlsFirstBytePool.Get().(*tlsFirstByteConn)
		c.Conn = conn
		return c, &c.firstByteConn
	}
	c := firstBytePool.Get().(*firstByteConn)
	c.Conn = conn
	return c, c
}

// putFirstByteConn gives a wrapper of newFirstByteConn back to its pool.
func putFirstByteConn(c net.Conn) {
	switch c := c.(type) {
	case *firstByteConn:
		*c = firstByteConn{}
		firstBytePool.Put(c)
	case *tlsFirstByteConn:
		*c = tlsFirstByteConn{}
		tlsFirstBytePool.Put(c)
	}
}

// asFirstByteConn returns c's firstByteConn when c is a wrapper of newFirstByteConn.
func asFirstByteConn(c net.Conn) *firstByteConn {
	switch c := c.(type) {
	case *firstByteConn:
		return c
	case *tlsFirstByteConn:
		return &c.firstByteConn
	}
	return nil
}

// streamTo relays the stream to its connection (r.conn) and ends it (which releases
// r); a non-nil failed ends it with that error before anything is written. With watch,
// the client's connection is read meanwhile (watchClient), and first is the byte of
// the client's next request that read, or -1. keep reports whether the connection may
// go on to the client's next request. The stream counts as hijacked until its caller
// closes the connection, or the fasthttp loop serving the connection's next requests
// ends (serveNext).
func (r *request) streamTo(failed error, watch bool) (keep bool, first int) {
	s, conn := r.s, r.conn
	s.trackStream(conn, true)
	defer s.trackStream(conn, false)
	// The client's connection bounds the stream's writes by how long nothing of
	// them goes out (writeClient), until the stream ends.
	ws, ok := connwrap.Under[writeStaller](conn)
	r.timedWrites = !ok || ws.SetWriteStall(time.Duration(sendTimeout.Load())) != nil
	if !r.timedWrites {
		defer ws.SetWriteStall(0)
	}
	first = -1
	released := false
	watching := false
	// A panic while relaying (a bug) ends this stream and its connection, not the
	// process, as fasthttp's own body stream writer would have had it.
	defer func() {
		if p := recover(); p != nil {
			keep = false
			s.log.LogAttrs(context.Background(), slog.LevelError, "stream relay panicked",
				slog.String("panic", fmt.Sprint(p)), slog.String("stack", string(debug.Stack())))
			if !released {
				released = true
				if watching {
					r.stopWatch()
				}
				_ = r.endStream(errRelayPanic)
			}
		}
	}()
	err := failed
	if err == nil {
		if watch {
			watching = true
			go r.watchFn()
		}
		err = r.relay()
		if watching {
			watching = false
			first = r.stopWatch()
		}
	}
	// While the gateway drains, a request the client has sent already behind the
	// stream is served still, its answer closing the connection (serveAPI), as one
	// on any connection open when the drain began; awaitNext closes one that waits.
	keep = err == nil && r.keepConn && conn.SetWriteDeadline(time.Time{}) == nil
	released = true
	_ = r.endStream(err)
	return keep, first
}

// pipelined returns the connection to serve next: conn as it is, or when hc (fasthttp's
// hijacked connection over conn) had bytes buffered (held), conn's firstByteConn
// holding them to read first; nil if conn failed. scratch is one byte to read into.
// The bytes are copied out rather than read through hc, which would keep fasthttp's
// reader (8 KiB) for the connection's life and put one more wrapper around the
// connection for each such stream.
func pipelined(conn, hc net.Conn, scratch []byte) (next net.Conn, held bool) {
	// A deadline in the past makes a read of the socket fail at once without
	// consuming anything, so the reads below return only what is buffered: in
	// hc's reader, then in conn's firstByteConn under it.
	if conn.SetReadDeadline(time.Unix(1, 0)) != nil {
		return nil, false
	}
	n, _ := hc.Read(scratch)
	var ahead []byte
	if n > 0 {
		// What fasthttp's reader holds fits in one read buffer.
		ahead = make([]byte, 1, readBufferSize)
		ahead[0] = scratch[0]
		for {
			if len(ahead) == cap(ahead) {
				ahead = slices.Grow(ahead, readBufferSize)
			}
			m, err := hc.Read(ahead[len(ahead):cap(ahead)])
			ahead = ahead[:len(ahead)+m]
			if m == 0 || err != nil {
				break
			}
		}
	}
	if conn.SetReadDeadline(time.Time{}) != nil {
		return nil, false
	}
	if len(ahead) == 0 {
		return conn, false
	}
	next, fb := conn, asFirstByteConn(conn)
	if fb == nil {
		next, fb = newFirstByteConn(conn)
	}
	fb.ahead = ahead
	return next, true
}

// maxHeld is how many bytes of events the relay holds before it writes them even
// though the upstream has more ready: about one read of the upstream connection.
const maxHeld = 4 << 10

// relay writes the response header and the events to the client (r.conn). When the
// stream can say when it is about to wait for its upstream (providers.Waiter), events
// are held until then and go out together, one write per upstream read, as nginx
// passes them on: a role chunk and the first content chunk that came in one read take
// one write, not two, and so do the last content chunk, the finish chunk and [DONE].
// Otherwise each event is written as it comes. Events go out as one chunk per write,
// the last with the terminating chunk, or bare to an HTTP/1.0 client.
func (r *request) relay() error {
	held := false
	if w, ok := r.stream.(providers.Waiter); ok {
		held = w.NotifyWait(r.waitFn)
	}
	if n, ok := r.stream.(providers.SilenceNotifier); ok {
		n.NotifySilence(streamKeepAlive, r.silentFn)
	}
	if !held {
		// The header goes out at once, not with the first event, however long
		// that takes.
		if err := r.flush(false); err != nil {
			return err
		}
	}
	for {
		r.nextEvent()
		if r.werr != nil {
			return r.werr
		}
		if r.finished {
			break
		}
		if !held || len(r.out) >= maxHeld {
			if err := r.flush(false); err != nil {
				return err
			}
		}
	}
	if r.failStatus != 0 {
		// The stream failed before its header went out: out holds a whole error
		// answer instead (answerInstead).
		out := r.out
		r.out, r.outHead = out[:0], 0
		return r.writeClient(r.conn, out)
	}
	return r.flush(true)
}

// streamKeepAlive is how long a stream's upstream may stay silent (queued, prefilling,
// thinking) before the client is sent a keep-alive comment of the gateway's own, and
// again after each such interval: a proxy or load balancer in front of the client
// (60 s idle timeouts are common) would otherwise cut the stream.
var streamKeepAlive = 15 * time.Second

// upstreamSilent is the stream's silence hook (providers.SilenceNotifier): the
// upstream has said nothing for streamKeepAlive, so the client gets a keep-alive
// comment. It runs inside stream.Next.
func (r *request) upstreamSilent() error {
	if r.werr == nil {
		r.out = append(r.eventBuf(), strKeepAlive...)
		r.werr = r.flush(false)
	}
	return r.werr
}

// upstreamWait is the stream's wait hook (providers.Waiter): the upstream has nothing
// more ready, so what is held goes to the client now. It runs inside stream.Next.
func (r *request) upstreamWait() error {
	if r.werr == nil {
		r.werr = r.flush(false)
	}
	return r.werr
}

// flush writes what out holds in one write: the response header if it has not gone
// yet, and the events held as one chunk; last adds the terminating chunk.
func (r *request) flush(last bool) error {
	out, h := r.out, r.outHead
	start := 0
	if n := len(out) - h - chunkRoom; n > 0 {
		switch {
		case !r.chunked:
			// Bare events: close the room up behind the header.
			copy(out[h:], out[h+chunkRoom:])
			out = out[:h+n]
		case h == 0:
			// The chunk header fills the end of the room.
			start = chunkRoom - hexLen(n) - 2
			putChunkHeader(out[start:chunkRoom], n)
			out = append(out, strCRLF...)
		default:
			// Behind the response header: the chunk header goes right after it,
			// and the events move up to meet it.
			hl := hexLen(n) + 2
			putChunkHeader(out[h:h+hl], n)
			copy(out[h+hl:], out[h+chunkRoom:])
			out = append(out[:h+hl+n], strCRLF...)
		}
	} else {
		out = out[:h]
	}
	if last && r.chunked {
		out = append(out, strLastChunk...)
	}
	r.out, r.outHead = out[:0], 0
	if len(out) == start {
		return nil
	}
	return r.writeClient(r.conn, out[start:])
}

// putChunkHeader writes n in hex and CRLF into dst, exactly hexLen(n)+2 bytes long.
func putChunkHeader(dst []byte, n int) {
	putHex(dst[:len(dst)-2], n)
	dst[len(dst)-2], dst[len(dst)-1] = '\r', '\n'
}

// sendTimeout bounds how long a stream's client may take nothing of it: once no byte
// of a write to it has gone out for that long, the client loses the stream and its
// connection, and the upstream request is aborted (nginx's send_timeout, with the same
// default and the same rule: it times the wait for the client, from each write's start
// and from each time bytes of it went, never a write's whole length). A non-streamed
// answer must be taken within it, or within one more for every sendQuantum bytes of a
// larger one (sendDeadline).
var sendTimeout atomic.Int64 // a time.Duration; tests shorten it

// sendQuantum is how much of a non-streamed answer a client is given each sendTimeout
// to take: 4 MiB a minute, about 70 KB/s.
var sendQuantum = 4 << 20 // tests shorten it

func init() { sendTimeout.Store(int64(60 * time.Second)) }

// sendDeadline gives a non-streamed answer of n bytes, written from now, one
// sendTimeout for every sendQuantum bytes begun (at least one). It is set by the
// handler, not as the server's WriteTimeout: fasthttp clears a handler's deadline
// once the answer is written, while a server's stays on a kept-alive connection and
// would fail what fasthttp writes before the next answer's (a 100 Continue, the
// answer to a request it cannot read) once the connection has idled past it.
func sendDeadline(ctx *fasthttp.RequestCtx, now time.Time, n int) {
	q := max((n+sendQuantum-1)/sendQuantum, 1)
	_ = ctx.SetWriteDeadline(now.Add(time.Duration(sendTimeout.Load()) * time.Duration(q)))
}

// writeStaller is a connection that bounds each write by how long nothing of it goes
// out (deadline.Conn's SetWriteStall): the gateway's own, under its TLS connection or
// firstByteConn if any.
type writeStaller interface {
	SetWriteStall(d time.Duration) error
}

// writeClient writes p to the stream's client. The client's connection times its
// writes itself (streamTo set its write stall to sendTimeout), at no cost to a write
// that goes through; only one that is not the gateway's own (timedWrites, tests that
// drive the handler) gets a deadline of sendTimeout from each write's start.
func (r *request) writeClient(c net.Conn, p []byte) error {
	if r.timedWrites {
		if err := c.SetWriteDeadline(time.Now().Add(time.Duration(sendTimeout.Load()))); err != nil {
			return err
		}
	}
	_, err := c.Write(p)
	return err
}

// hexLen is the number of hex digits of n > 0.
func hexLen(n int) int {
	d := 1
	for n >= 16 {
		n >>= 4
		d++
	}
	return d
}

// putHex writes n in hex into dst, which is exactly hexLen(n) bytes long, or its last
// len(dst) hex digits (a negative n's as of its two's complement).
func putHex(dst []byte, n int) {
	const digits = "0123456789abcdef"
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = digits[n&15]
		n >>= 4
	}
}
