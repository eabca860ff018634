package providers

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tollgate/tollgate/internal/deadline"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

// upstreamConn is a connection the provider dialled to an upstream. A stream can hear
// of its reads of the socket before they happen (Waiter), and it enforces the
// backend's first-byte and idle timeouts. It also keeps where its request stands
// (being written, awaiting its answer, answered before), which upstreamTransport
// reads to tell whether a failed attempt may be sent again.
//
// fasthttp sets one read deadline per request, which for a stream lasts the whole
// stream, and hands the caller no connection to change it on. With timeouts set, the
// connection turns that deadline into the nearer of it and the first-byte bound, and
// keeps that bound until the answer's header is complete (on a plaintext connection;
// through TLS it sees ciphertext and lifts the bound at the first byte). It bounds
// the write of the request the same way: an upstream that never reads the request
// gives no header either. Once the header came, it sets the nearer of it and the idle bound before every read of the
// socket: the idle bound times the upstream's silence from the moment the reader
// waits for it, so the time a reader spends between reads (writing to a slow client,
// say) is never counted against the upstream. Read deadlines are the runtime's own
// timers, and deadline.Conn makes moving one later free: no goroutine, and the
// timeout surfaces as os.ErrDeadlineExceeded, which classify maps to ErrTimeout.
//
// To an https target it carries its own TLS client (handshake), which fasthttp
// reads and writes through; the bounds above time the socket under it, ciphertext.
type upstreamConn struct {
	*deadline.Conn
	addr connAddr
	// tls is the TLS client over the socket (socketSide), nil on a plaintext
	// connection.
	tls  *tls.Conn
	wait func() error
	// silent, while set, is called every `every` the upstream stays silent during a
	// read (NotifySilence); inForce is the read deadline the timeouts put in force
	// (zero: none), which the ticks never pass.
	silent  func() error
	every   time.Duration
	inForce time.Time
	// watched, while set, is the call whose client the silence ticks ask after
	// instead, while its answer (a stream's header) is read (watchedRoundTrip).
	watched *Call
	// firstByte and idle are the backend's first_byte_timeout and
	// stream_idle_timeout; 0 is none.
	firstByte, idle time.Duration
	// end is the read deadline fasthttp last asked for: the attempt's own deadline.
	// armed is set once it has asked, while an answer is read; waiting until that
	// answer's first byte.
	end            time.Time
	armed, waiting bool
	// heading is set, with a first-byte bound, until the answer's header is complete:
	// bound is the first-byte deadline, which stays in force meanwhile. nl, status
	// and hseen follow the header across reads (headerDone).
	heading bool
	bound   time.Time
	nl      uint8
	status  byte
	hseen   int
	// sending is set while a request is written: from its write deadline to its
	// read deadline.
	sending bool
	// served is set once an answer has begun to arrive on the connection.
	served bool
	// readErr is the last error Read returned during the answer being read.
	readErr error
	// gate, set on a connection of a backend's requests, holds its place under
	// max_connections until it is closed.
	gate atomic.Pointer[connGate]
}

// connAddr is an upstreamConn's local address, carrying the connection: fasthttp
// hands a response its connection's addresses (Response.LocalAddr) and nothing
// else of it.
type connAddr struct {
	net.Addr
	c *upstreamConn
}

func (a *connAddr) Network() string {
	if a.Addr == nil {
		return "tcp"
	}
	return a.Addr.Network()
}

func (a *connAddr) String() string {
	if a.Addr == nil {
		return ""
	}
	return a.Addr.String()
}

func wrapUpstream(c net.Conn) *upstreamConn {
	u := &upstreamConn{Conn: deadline.Wrap(c)}
	u.addr = connAddr{Addr: c.LocalAddr(), c: u}
	return u
}

func (c *upstreamConn) LocalAddr() net.Addr { return &c.addr }

// Close closes the connection and gives its place under max_connections back, once.
// A TLS connection closes as tls.Conn does: with a close_notify alert, unless a write
// is under way (a close that interrupts it).
func (c *upstreamConn) Close() error {
	var err error
	if c.tls != nil {
		err = c.tls.Close()
	} else {
		err = c.Conn.Close()
	}
	if g := c.gate.Swap(nil); g != nil {
		g.release()
	}
	return err
}

// handshake makes c a TLS client connection with cfg, its handshake over by end (zero:
// no bound), which is the dial's own: the handshake is part of connecting, as nginx's
// proxy_connect_timeout counts it. fasthttp would otherwise make the handshake inside
// the first request's write, where no read deadline is set yet: a target that accepts
// the connection and never answers the ClientHello would hold the request for good.
// On failure c is closed.
func (c *upstreamConn) handshake(cfg *tls.Config, end time.Time) error {
	c.tls = tls.Client(socketSide{c}, cfg)
	err := c.Conn.SetDeadline(end)
	if err == nil {
		err = c.tls.Handshake()
	}
	if err == nil {
		// Moving the deadlines later is free (deadline.Conn): fasthttp sets its own
		// before each request.
		err = c.Conn.SetDeadline(time.Time{})
	}
	if err != nil {
		_ = c.Conn.Close()
		return &handshakeError{err}
	}
	return nil
}

// Handshake completes the TLS handshake, which the dial has made already; nil on a
// plaintext connection. fasthttp takes a connection with this method for a TLS one and
// does not wrap it in a TLS client of its own.
func (c *upstreamConn) Handshake() error {
	if c.tls == nil {
		return nil
	}
	return c.tls.Handshake()
}

// handshakeError is a TLS handshake that failed or did not end within the dial's
// bound. It keeps the cause for classify: a timeout is ErrTimeout, as a TCP connect's
// is; anything else (a certificate that does not verify) leaves the target
// unreachable.
type handshakeError struct{ err error }

func (e *handshakeError) Error() string { return "tls handshake: " + e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

// socketSide is the side of an upstreamConn that its TLS client reads and writes: the
// socket, through the connection's timeouts (readSocket).
type socketSide struct{ c *upstreamConn }

func (s socketSide) Read(p []byte) (int, error)         { return s.c.readSocket(p) }
func (s socketSide) Write(p []byte) (int, error)        { return s.c.Conn.Write(p) }
func (s socketSide) Close() error                       { return s.c.Conn.Close() }
func (s socketSide) LocalAddr() net.Addr                { return s.c.Conn.LocalAddr() }
func (s socketSide) RemoteAddr() net.Addr               { return s.c.Conn.RemoteAddr() }
func (s socketSide) SetDeadline(t time.Time) error      { return s.c.Conn.SetDeadline(t) }
func (s socketSide) SetReadDeadline(t time.Time) error  { return s.c.Conn.SetReadDeadline(t) }
func (s socketSide) SetWriteDeadline(t time.Time) error { return s.c.Conn.SetWriteDeadline(t) }

// SetDeadline passes through, and ends the bounds of the answer under way. fasthttp's
// client sets the read and write deadlines apart.
func (c *upstreamConn) SetDeadline(t time.Time) error {
	c.armed = false
	return c.Conn.SetDeadline(t)
}

// SetWriteDeadline is called by fasthttp once per request, before the request is
// written. The answer has not begun, so the first-byte bound applies to the write
// too: an upstream that never reads a large request would otherwise hold the write
// until the attempt's deadline. fasthttp reports a write timeout as ErrTimeout, which
// the caller tells from the attempt's deadline by the time it came.
func (c *upstreamConn) SetWriteDeadline(t time.Time) error {
	c.sending = true
	if c.firstByte > 0 {
		t = nearer(t, time.Now().Add(c.firstByte))
	}
	return c.Conn.SetWriteDeadline(t)
}

// SetReadDeadline is called by fasthttp once per request, after the request is sent.
func (c *upstreamConn) SetReadDeadline(t time.Time) error {
	c.end, c.armed, c.waiting, c.sending, c.readErr = t, true, true, false, nil
	c.heading = false
	if c.firstByte > 0 {
		t = nearer(t, time.Now().Add(c.firstByte))
		c.heading, c.bound, c.nl, c.status, c.hseen = true, t, 0, 0, 0
	}
	c.inForce = t
	return c.Conn.SetReadDeadline(t)
}

func (c *upstreamConn) Read(p []byte) (int, error) {
	if c.tls != nil {
		return c.tls.Read(p)
	}
	return c.readSocket(p)
}

func (c *upstreamConn) Write(p []byte) (int, error) {
	if c.tls != nil {
		return c.tls.Write(p)
	}
	return c.Conn.Write(p)
}

// readSocket reads the socket under the connection's timeouts; through TLS, the
// records of the answer.
func (c *upstreamConn) readSocket(p []byte) (int, error) {
	if w := c.wait; w != nil {
		if err := w(); err != nil {
			c.readErr = &waitError{err}
			return 0, c.readErr
		}
	}
	if c.idle > 0 && c.armed && !c.waiting {
		c.inForce = nearer(c.end, time.Now().Add(c.idle))
		if c.heading {
			c.inForce = nearer(c.inForce, c.bound)
		}
		if !c.ticking() {
			if err := c.Conn.SetReadDeadline(c.inForce); err != nil {
				return 0, err
			}
		}
	}
	n, err := c.read(p)
	if n > 0 && c.waiting {
		c.waiting, c.served = false, true
		if p[0] != 'H' {
			// Not an HTTP status line: TLS records, whose header the connection
			// cannot see, or no HTTP at all, which fasthttp rejects. The bound
			// ends at the first byte.
			c.heading = false
			err = c.lift(err)
		}
	}
	if n > 0 && c.heading && c.headerDone(p[:n]) {
		// The header is complete: from here the answer has fasthttp's deadline
		// (with stream_idle_timeout, the next read sets the idle bound).
		c.heading = false
		err = c.lift(err)
	}
	if err != nil && !c.waiting && c.pastEnd(err) {
		err = errAttemptDeadline
	}
	if err != nil {
		c.readErr = err
	}
	return n, err
}

// lift puts the attempt's own deadline back in force once the first-byte bound is
// over, unless stream_idle_timeout sets a deadline before each read; it returns err,
// or the error of setting the deadline when err is nil.
func (c *upstreamConn) lift(err error) error {
	if c.idle > 0 {
		return err
	}
	c.inForce = c.end
	if e := c.Conn.SetReadDeadline(c.end); e != nil && err == nil {
		return e
	}
	return err
}

// headerDone scans p, the next bytes of the answer's header, and reports whether
// they complete it: a blank line ends it, its lines ending in CRLF or a bare LF (as
// fasthttp accepts). The header of an interim 1xx answer, which fasthttp skips, does
// not: the bound waits for the final answer's. nl is how much of a line end was last
// seen (1: LF, 2: LF CR), status the digit that begins the status code (byte 9 of
// "HTTP/1.1 200"), hseen how many bytes of the current header came before p. It
// jumps from one LF to the next with bytes.IndexByte and allocates nothing.
func (c *upstreamConn) headerDone(p []byte) bool {
	hs := -c.hseen
	if k := hs + 9; k >= 0 && k < len(p) {
		c.status = p[k]
	}
	for i := 0; i < len(p); i++ {
		if c.nl == 0 {
			j := bytes.IndexByte(p[i:], '\n')
			if j < 0 {
				break
			}
			i += j
			c.nl = 1
			continue
		}
		switch p[i] {
		case '\r':
			if c.nl == 1 {
				c.nl = 2
				continue
			}
			c.nl = 0
		case '\n':
			c.nl = 0
			if c.status != '1' {
				return true
			}
			// An interim answer: the next header begins after it.
			hs, c.status = i+1, 0
			if k := hs + 9; k < len(p) {
				c.status = p[k]
			}
		default:
			c.nl = 0
		}
	}
	c.hseen = len(p) - hs
	return false
}

// read reads the socket; with a silence hook, the read wakes every `every` the upstream
// stays silent (never past the deadline in force) and calls it, until bytes come, the
// deadline in force runs out, or the hook fails the read.
func (c *upstreamConn) read(p []byte) (int, error) {
	if !c.ticking() || !c.armed {
		return c.Conn.Read(p)
	}
	for {
		tick := time.Now().Add(c.every)
		if err := c.Conn.SetReadDeadline(nearer(c.inForce, tick)); err != nil {
			return 0, err
		}
		n, err := c.Conn.Read(p)
		if n > 0 || !deadline.IsTimeout(err) || !c.inForce.IsZero() && !time.Now().Before(c.inForce) {
			return n, err
		}
		if c.watched != nil {
			err = c.watched.clientGone()
		} else {
			err = c.silent()
		}
		if err != nil {
			return 0, &waitError{err}
		}
	}
}

// watch makes the silent ticks of c's reads ask after call's client, until unwatch.
func (c *upstreamConn) watch(call *Call) { c.watched, c.every = call, clientCheckEvery }

// unwatch ends a watched call's ticks. The ticks left their own deadline on the
// connection: the one in force is put back, else a read after them (a stream's body,
// an error answer's) would time out at the last tick.
func (c *upstreamConn) unwatch() {
	c.watched = nil
	if c.armed && !c.ticking() {
		_ = c.Conn.SetReadDeadline(c.inForce)
	}
}

// ticking reports whether reads wake every c.every while the upstream is silent.
func (c *upstreamConn) ticking() bool { return c.silent != nil || c.watched != nil }

// pastEnd reports whether err is the attempt's own deadline running out rather
// than the first-byte or idle bound: the deadline in force fired at or after end.
func (c *upstreamConn) pastEnd(err error) bool {
	return !c.end.IsZero() && deadline.IsTimeout(err) && !time.Now().Before(c.end)
}

// errAttemptDeadline is a read of an answer already under way that the attempt's own
// deadline cut: the call's deadline (the endpoint's timeout) or the backend's
// timeout. That is the gateway's limit on the whole answer, not a sign the target
// went silent, so a stream it cuts does not count against the target's health
// (verdictOf); it is still a timeout for the client.
var errAttemptDeadline error = attemptDeadline{}

type attemptDeadline struct{}

func (attemptDeadline) Error() string   { return "upstream answer cut by the attempt's deadline" }
func (attemptDeadline) Timeout() bool   { return true }
func (attemptDeadline) Temporary() bool { return true }

// Is makes it match os.ErrDeadlineExceeded, as the read error it replaces did.
func (attemptDeadline) Is(target error) bool { return target == os.ErrDeadlineExceeded }

// upstreamTransport is fasthttp's transport, except that it lets fasthttp retry a
// failed attempt only when the connection was taken from the pool, having served an
// answer before, and the failure came while the request was written or before the
// first byte of its answer. A connection that never served may have failed because
// the upstream took the request and died on it; one whose answer had begun has done
// work that a retry would do again.
type upstreamTransport struct{}

func (upstreamTransport) RoundTrip(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response) (bool, error) {
	var retry bool
	var err error
	if call := watchedCall(req); call != nil {
		retry, err = watchedRoundTrip(hc, req, resp, call)
	} else {
		retry, err = fasthttp.DefaultTransport.RoundTrip(hc, req, resp)
	}
	if err == nil {
		return false, nil
	}
	if _, ok := errors.AsType[*waitError](err); ok {
		return false, err
	}
	addr := resp.LocalAddr()
	if addr == nil && err == fasthttp.ErrTimeout {
		// No connection was had: the attempt's deadline came before connect_timeout
		// while it waited for one of the max_connections to free up, which is the
		// gateway's own limit, as ErrNoFreeConns is.
		return false, fasthttp.ErrNoFreeConns
	}
	c := upstreamOf(addr)
	return retry && c != nil && c.served && (c.sending || c.waiting), err
}

// retryClosed is the client's RetryIfErr, for attempts upstreamTransport let through:
// it retries when err says the upstream closed the connection (an end of file, a
// reset, a broken pipe), never a timeout or a request whose body is a stream that
// was consumed. The connections left idle with the one that failed may have been
// closed the same way: they are dropped, so that the retry dials a new one.
func retryClosed(hc *fasthttp.HostClient, req *fasthttp.Request, err error) bool {
	if req.IsBodyStream() || !closedByUpstream(err) {
		return false
	}
	hc.CloseIdleConnections()
	return true
}

func closedByUpstream(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, fasthttp.ErrConnectionClosed) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, fasthttputil.ErrConnectionClosed)
}

// nearer is the earlier of two deadlines, the zero time being none.
func nearer(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

// waitError is an error of a stream's wait hook: the reader gave up, not the
// upstream, so the stream ends with the hook's own error and the target's health
// does not hear of it.
type waitError struct{ err error }

func (e *waitError) Error() string { return e.err.Error() }
func (e *waitError) Unwrap() error { return e.err }

// upstreamOf is the connection a response was read from, nil when it is not an
// upstreamConn.
func upstreamOf(addr net.Addr) *upstreamConn {
	if a, ok := addr.(*connAddr); ok {
		return a.c
	}
	return nil
}
