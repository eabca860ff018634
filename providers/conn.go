package providers

import (
	"bytes"
	"context"
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
//
// A connection taken again from the pool, idle for idleLook or more, is looked at
// before its request is written (stale): an upstream may write on a connection it
// has answered on, unasked (a late second answer, the 408 some servers send before
// they close an idle connection, a TLS alert), and the next request on it would read
// those bytes as its answer: another client's, or an error it never caused. Go's
// net/http closes such a connection ("Unsolicited response received on idle HTTP
// channel"), nginx's upstream keepalive one that turns readable while cached; here
// it is closed and the request goes on another, nothing of it sent. Each answer's
// header is also followed (headScan) for framing fasthttp lets through, and through
// TLS each answer's end looks at what the TLS client holds behind it (heldBack).
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
	// instead, while its answer (a stream's header) is read (connRoundTrip); tick
	// is when its first tick comes, counted from the request's send, so that the
	// read of an answer that comes sooner reads no clock. After that first tick
	// (zero), each read counts the next from its own start.
	watched *Call
	tick    time.Time
	// writing, while set, is the call whose request is being written, whose client
	// a write that stalls asks after every clientCheckEvery (watchWrite); wend is
	// the write's own deadline, which the ticks never pass.
	writing *Call
	wend    time.Time
	// firstByte and idle are the backend's first_byte_timeout and
	// stream_idle_timeout; 0 is none.
	firstByte, idle time.Duration
	// end is the read deadline fasthttp last asked for: the attempt's own deadline.
	// armed is set once it has asked, while an answer is read; waiting until that
	// answer's first byte.
	end            time.Time
	armed, waiting bool
	// heading is set, with a first-byte bound, until the answer's header is complete
	// (head): bound is the first-byte deadline, which stays in force meanwhile.
	heading bool
	bound   time.Time
	// sending is set while a request is written: from its write deadline to its
	// read deadline.
	sending bool
	// served is set once an answer has begun to arrive on the connection: from
	// then on, it is looked at before each request (stale).
	served bool
	// peek looks at the socket of a connection taken again from the pool (stale),
	// made at its first reuse.
	peek *idlePeek
	// head follows the header of the answer being read, and keeps what it found
	// until the next answer begins.
	head headScan
	// readErr is the last error Read returned during the answer being read.
	readErr error
	// records follows the TLS records the TLS client reads from the socket, and
	// drained is set when its last read handed out all the plaintext it had
	// decrypted: together they tell heldBack whether the client may hold anything.
	records tlsRecords
	drained bool
	// probing is set while heldBack looks into the TLS client: its socket side
	// reads nothing then (errNothingHeld).
	probing bool
	probe   [1]byte
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
// no bound), which is the dial's own, or when ctx ends: the handshake is part of
// connecting, as nginx's proxy_connect_timeout counts it. fasthttp would otherwise
// make the handshake inside the first request's write, where no read deadline is set
// yet: a target that accepts the connection and never answers the ClientHello would
// hold the request for good. On failure c is closed.
func (c *upstreamConn) handshake(ctx context.Context, cfg *tls.Config, end time.Time) error {
	c.tls = tls.Client(socketSide{c}, cfg)
	err := c.Conn.SetDeadline(end)
	if err == nil {
		// crypto/tls closes the socket when ctx ends; one that cannot end (a
		// request's dial) makes this Handshake.
		err = c.tls.HandshakeContext(ctx)
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

func (s socketSide) Read(p []byte) (int, error) {
	if s.c.probing {
		return 0, errNothingHeld
	}
	n, err := s.c.readSocket(p)
	s.c.records.feed(p[:n])
	return n, err
}

func (s socketSide) Write(p []byte) (int, error)        { return s.c.writeSocket(p) }
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

// SetWriteDeadline is called by fasthttp's own transport (the health checks') once
// per request, before the request is written, when the request has a deadline, as
// every request the providers make has. A connection that has served before and is
// stale, or whose TLS client holds bytes its last answer left (heldBack), fails it
// with errStaleConn, on which the transport closes the connection, having written
// nothing. connRoundTrip, which looks at the connection itself and at the end of each
// answer, calls setWriteDeadline.
func (c *upstreamConn) SetWriteDeadline(t time.Time) error {
	if c.served && (c.stale(true) || c.heldBack()) {
		return errStaleConn
	}
	return c.setWriteDeadline(t)
}

// setWriteDeadline sets the deadline of the request's write. The answer has not
// begun, so the first-byte bound applies to the write too: an upstream that never
// reads a large request would otherwise hold the write until the attempt's deadline.
// fasthttp reports a write timeout as ErrTimeout, which the caller tells from the
// attempt's deadline by the time it came.
func (c *upstreamConn) setWriteDeadline(t time.Time) error {
	c.sending = true
	if c.firstByte > 0 {
		t = nearer(t, time.Now().Add(c.firstByte))
	}
	if c.writing != nil {
		c.wend = t
		t = nearer(t, time.Now().Add(clientCheckEvery))
	}
	return c.Conn.SetWriteDeadline(t)
}

// watchWrite makes the request's write, from the next setWriteDeadline until
// unwatchWrite, ask after call's client each time it has stalled for
// clientCheckEvery: a large body (an audio file) written to an upstream that reads
// it slowly is abandoned when its client hangs up, as the wait for the answer is
// (watch). A write that goes through sooner reads no clock.
func (c *upstreamConn) watchWrite(call *Call) { c.writing = call }

// unwatchWrite ends the write's ticks, putting its own deadline back in force (a
// later deadline costs nothing to set: deadline.Conn).
func (c *upstreamConn) unwatchWrite() {
	c.writing = nil
	_ = c.Conn.SetWriteDeadline(c.wend)
}

// writeSocket writes p to the socket; while a watched call's request is written
// (watchWrite), a write the tick's deadline interrupts asks after the client and goes
// on under the next tick, until the write's own deadline.
func (c *upstreamConn) writeSocket(p []byte) (int, error) {
	done := 0
	for {
		n, err := c.Conn.Write(p[done:])
		done += n
		if err == nil || c.writing == nil || !deadline.IsTimeout(err) || !c.wend.IsZero() && !time.Now().Before(c.wend) {
			return done, err
		}
		if err := c.writing.clientGone(); err != nil {
			return done, &waitError{err}
		}
		if err := c.Conn.SetWriteDeadline(nearer(c.wend, time.Now().Add(clientCheckEvery))); err != nil {
			return done, err
		}
	}
}

// SetReadDeadline is called by fasthttp once per request, after the request is sent.
func (c *upstreamConn) SetReadDeadline(t time.Time) error {
	c.end, c.armed, c.waiting, c.sending, c.readErr = t, true, true, false, nil
	c.heading = false
	c.head.begin()
	if c.firstByte > 0 {
		t = nearer(t, time.Now().Add(c.firstByte))
		c.heading, c.bound = true, t
	}
	c.inForce = t
	return c.Conn.SetReadDeadline(t)
}

func (c *upstreamConn) Read(p []byte) (n int, err error) {
	if c.head.bare {
		return 0, errBareHeaderEnd
	}
	if c.tls != nil {
		n, err = c.tls.Read(p)
		// tls.Conn hands out what is left of one record's plaintext, up to len(p).
		c.drained = n < len(p)
		if err != nil {
			// The TLS client's own errors (an alert the upstream sent) are not
			// the socket's, which readSocket keeps: fasthttp turns any error on an
			// answer's first byte into an end of file (refusal).
			c.readErr = err
		}
	} else {
		n, err = c.readSocket(p)
	}
	if n > 0 && c.head.state != headOff {
		c.head.feed(p[:n])
		if c.head.bare {
			// fasthttp would wait for the header's end past the first-byte bound.
			err, c.readErr = errBareHeaderEnd, errBareHeaderEnd
		} else if c.head.state == headOff && c.heading {
			// The header is complete: from here the answer has fasthttp's deadline
			// (with stream_idle_timeout, the next read sets the idle bound).
			c.heading = false
			if e := c.lift(err); e != err {
				err, c.readErr = e, e
			}
		}
	}
	return n, err
}

func (c *upstreamConn) Write(p []byte) (int, error) {
	if c.tls != nil {
		return c.tls.Write(p)
	}
	return c.writeSocket(p)
}

// heldBack reports whether c's TLS client holds anything of the upstream's that no
// read has taken, once an answer has been read whole: it may not carry another
// request. Go's tls.Conn reads what the socket has but decrypts and hands out one
// record at a time, so a second answer the upstream wrote right behind the first, in
// its own record, arrives in the same read of the socket and stays inside the TLS
// client, where neither the answer's reader (br.Buffered) nor the look at the socket
// (idleReadable) sees it, and the next request on c would read it as its answer:
// another client's. The rest of the answer's own last record (response splitting
// within one record) stays there as well.
//
// The TLS client reads the socket only for the record it is at, so what it holds is
// what its last read brought past that record (records.beyond), and what is left of
// the last record's plaintext (!drained). With neither, as after an answer that came
// in records of its own, it holds nothing. A record whose start came and not its end
// (records.inRecord) was not taken, whatever it is: the answer's own records were
// whole when they were read. Otherwise heldBack reads through the TLS client with its
// socket side shut (probing), so that only what the client holds is read, and
// neither the socket nor its deadlines are touched: a record is decrypted and its
// first byte of application data taken, a close_notify or another alert ends the
// connection, and post-handshake messages (a TLS 1.3 session ticket, a key update)
// are handled as the next read would handle them, the records behind them read on.
// Nothing left reads as errNothingHeld, a temporary timeout that tls.Conn passes on
// without failing the connection, as it passes on a read deadline's. That read costs
// one allocation inside crypto/tls (the reader it reads the socket through, as each
// of its reads of the socket costs) and about 0.1 µs (BenchmarkTLSHeldBack); settled
// by the records, the look costs nothing. A plaintext connection holds nothing.
func (c *upstreamConn) heldBack() bool {
	if c.tls == nil {
		return false
	}
	switch r := &c.records; {
	case r.inRecord():
		return true
	case !r.beyond && c.drained:
		return false
	}
	c.probing = true
	n, err := c.tls.Read(c.probe[:])
	c.probing = false
	if n > 0 || err != errNothingHeld {
		return true
	}
	c.drained, c.records.beyond = true, false
	return false
}

// tlsRecords follows the TLS records (RFC 8446 section 5.1: a 5-byte header whose last
// two bytes are the length of what follows) in what the TLS client reads from the
// socket, each read at a time. It tells whether the last read brought bytes past the
// end of the record it began in (beyond): the TLS client reads the socket only while
// the record it is at has not all come, so those are records it has not reached then.
type tlsRecords struct {
	// head is how many bytes of a record's header came, size the length they say so
	// far, left how many bytes of the record's body are still to come.
	head   int
	size   int
	left   int
	beyond bool
}

const recordHeaderLen = 5

func (r *tlsRecords) feed(p []byte) {
	if len(p) == 0 {
		return
	}
	r.beyond = false
	for i := 0; i < len(p); {
		if i > 0 && !r.inRecord() {
			r.beyond = true
		}
		if r.left > 0 {
			k := min(r.left, len(p)-i)
			r.left -= k
			i += k
			continue
		}
		if r.head >= recordHeaderLen-2 {
			r.size = r.size<<8 | int(p[i])
		}
		r.head++
		i++
		if r.head == recordHeaderLen {
			r.head, r.left, r.size = 0, r.size, 0
		}
	}
}

// inRecord reports whether the bytes read so far end inside a record.
func (r *tlsRecords) inRecord() bool { return r.head > 0 || r.left > 0 }

// errNothingHeld is what the socket side of a TLS connection reads while heldBack
// looks into its TLS client.
var errNothingHeld error = nothingHeld{}

type nothingHeld struct{}

func (nothingHeld) Error() string   { return "nothing held in the TLS client" }
func (nothingHeld) Timeout() bool   { return true }
func (nothingHeld) Temporary() bool { return true }

// writeRefusal is err, the failure to write a request on a connection that has served
// nothing, as the TLS alert the target sent before it closed the connection, when it
// did. A TLS 1.3 target that refuses the gateway's certificate (refusal) while a long
// request is still being written closes the connection on the rest of it, and the
// write fails with a broken pipe or a reset; its alert came before, and is read from
// the socket, which holds what came before the reset.
func (c *upstreamConn) writeRefusal(err error) error {
	if c.tls == nil {
		return err
	}
	// The connection is closed on the target's side: the read ends at once, with
	// the alert or without. The bound is for a socket that the write failed for
	// another reason.
	if c.Conn.SetReadDeadline(time.Now().Add(refusalWait)) != nil {
		return err
	}
	if _, rerr := c.tls.Read(c.probe[:]); isAlert(rerr) && c.tls.ConnectionState().Version == tls.VersionTLS13 {
		return &handshakeError{rerr}
	}
	return err
}

// refusalWait bounds writeRefusal's read.
const refusalWait = 100 * time.Millisecond

// refusal is err, the failure to read an answer's header, as the upstream's TLS
// alert when one caused it; fresh is whether c had served no answer before this one.
// Under TLS 1.3 the server checks the client's certificate once the client's side of
// the handshake is over (RFC 8446 section 4.4.2.4), so a target that requires one and
// does not take the gateway's (none, one from another CA, one that expired after a
// failed renewal) sends its alert ("certificate required", "bad certificate") as the
// answer to the first request. fasthttp takes any error on an answer's first byte
// for an end of file (ErrConnectionClosed, whose hint is about a Connection: close
// header), which would point the operator at the upstream's HTTP framing. On a fresh
// TLS 1.3 connection the alert ends the handshake, as a TLS 1.2 target's refusal
// does within the dial (handshakeError): the target stays unreachable to classify,
// and it is no end of file that a retry would take for a kept-alive connection
// closed meanwhile. Otherwise it is the alert itself.
func (c *upstreamConn) refusal(err error, fresh bool) error {
	if c.tls == nil || !errors.Is(err, io.EOF) {
		return err
	}
	if !isAlert(c.readErr) {
		return err
	}
	if fresh && c.tls.ConnectionState().Version == tls.VersionTLS13 {
		return &handshakeError{c.readErr}
	}
	return c.readErr
}

// isAlert reports whether err is a TLS alert the upstream sent: crypto/tls reports
// one as a *net.OpError with Op "remote error", and keeps it for every later read.
func isAlert(err error) bool {
	op, ok := errors.AsType[*net.OpError](err)
	return ok && op.Op == "remote error"
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

// read reads the socket; with a silence hook, the read wakes every `every` the upstream
// stays silent (never past the deadline in force) and calls it, until bytes come, the
// deadline in force runs out, or the hook fails the read.
func (c *upstreamConn) read(p []byte) (int, error) {
	if !c.ticking() || !c.armed {
		return c.Conn.Read(p)
	}
	for {
		tick := c.tick
		if tick.IsZero() || c.watched == nil {
			tick = time.Now().Add(c.every)
		}
		if err := c.Conn.SetReadDeadline(nearer(c.inForce, tick)); err != nil {
			return 0, err
		}
		n, err := c.Conn.Read(p)
		if n > 0 || !deadline.IsTimeout(err) || !c.inForce.IsZero() && !time.Now().Before(c.inForce) {
			return n, err
		}
		hook := time.Now()
		c.tick = time.Time{}
		if c.watched != nil {
			err = c.watched.clientGone()
		} else {
			err = c.silent()
		}
		if err != nil {
			return 0, &waitError{err}
		}
		// The hook's time (a keep-alive written to a client slow to read it) is not
		// the upstream's silence: the idle and first-byte bounds move on by it, the
		// attempt's own deadline does not. A deadline left in the past would also
		// fail the next read before it took what the upstream sent meanwhile.
		if !c.inForce.IsZero() && !c.inForce.Equal(c.end) {
			c.inForce = nearer(c.end, c.inForce.Add(time.Since(hook)))
		}
	}
}

// watch makes the silent ticks of c's reads ask after call's client, until unwatch.
// The first tick comes clientCheckEvery after sent; with sent zero, after the read's
// start.
func (c *upstreamConn) watch(call *Call, sent time.Time) {
	c.watched, c.every, c.tick = call, clientCheckEvery, time.Time{}
	if !sent.IsZero() {
		c.tick = sent.Add(clientCheckEvery)
	}
}

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

// upstreamTransport is fasthttp's transport (connRoundTrip), except that it lets
// fasthttp retry a failed attempt only when the connection was taken from the pool,
// having served an answer before, and the failure came while the request was written
// or before the first byte of its answer. A connection that never served may have
// failed because the upstream took the request and died on it; one whose answer had
// begun has done work that a retry would do again. A pooled connection found stale
// before a byte was written is no failed attempt: the request goes on another
// connection, counting against neither fasthttp's one retry nor the target.
type upstreamTransport struct{}

func (upstreamTransport) RoundTrip(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response) (bool, error) {
	call := watchedCall(req)
	retry, err := connRoundTrip(hc, req, resp, call)
	for errors.Is(err, errStaleConn) {
		// Each stale connection is closed as it is found, and one dialled anew has
		// served nothing: the pool's connections run out before this loop does.
		retry, err = connRoundTrip(hc, req, resp, call)
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

// errStaleConn is a connection taken from the pool that had bytes or its end pending
// from the upstream, or whose last answer's framing was faulty (stale): the transport
// closed it before writing anything to it.
var errStaleConn = errors.New("pooled upstream connection not reusable: the upstream sent something while it was idle")

// idleLook is how long a pooled connection must have sat idle for connRoundTrip to
// look at its socket (idleReadable) before reusing it. The look is a system call,
// about 0.6 µs, over 2 % of a whole proxied request's time in the gateway
// (BenchmarkIdleReadable against BenchmarkProxyChat, 25 µs), and under load a
// connection is taken again within microseconds of its answer's end. A connection
// taken again sooner than this is not looked at: bytes its upstream sent in that
// time, unless they came with the answer's own reads (which close the connection,
// connRoundTrip), are read by the next request as the start of its answer.
const idleLook = time.Millisecond

// stale reports whether c, which has served an answer, must not carry another
// request: its last answer named two framings (headScan), or, when look, the
// upstream sent bytes, closed or reset it since (idleReadable). Through TLS the
// socket's own bytes count: a record that came unasked (a late session ticket, a
// close_notify alert) is as much a sign the connection is not the gateway's to use
// as a stray answer.
func (c *upstreamConn) stale(look bool) bool {
	return c.head.bothFramings() || look && c.idleReadable()
}

// errBothFramings is an answer whose header names both Content-Length and
// Transfer-Encoding. RFC 9112 section 6.3 (3): the Transfer-Encoding wins, and "such
// a message might indicate an attempt to perform request smuggling or response
// splitting and ought to be handled as an error"; nginx answers 502 for it. fasthttp
// reads it as chunked without a word, so the connection's header scan finds it.
var errBothFramings = errors.Join(ErrBadResponse, errors.New("upstream answer names both Content-Length and Transfer-Encoding"))

// errBareHeaderEnd is an answer whose header block does not end in CRLF CRLF: its
// blank line, or the line before it, ends in a bare LF. fasthttp takes a header only
// once a CRLF CRLF has come (a peer that knows no other end would frame the bytes
// differently), so it waits for one that such an upstream never sends, until the
// attempt's deadline, the first-byte bound having ended at that blank line.
var errBareHeaderEnd = errors.Join(ErrBadResponse, errors.New("upstream answer header not ended by CRLF CRLF"))

// headScan follows an answer's header through the reads that bring it, for its end
// (where the first-byte bound ends, upstreamConn.heading) and the framing fields it
// names (errBothFramings). It starts with each answer
// (SetReadDeadline), skips interim 1xx headers as fasthttp does, and stops at the
// final header's blank line; a line may end in CRLF or a bare LF, but a blank line
// that does not make a CRLF CRLF with the line end before it stops the scan as one
// fasthttp does not take (bare, errBareHeaderEnd). A name is matched in any case and
// may have blanks before its colon, as fasthttp takes it. It jumps from one line to
// the next with bytes.IndexByte and allocates nothing.
type headScan struct {
	state uint8
	// at is how many bytes of the status line, or of the name being matched, came.
	at uint8
	// status is the status code's first digit ('1': an interim answer).
	status byte
	// fields are the framing fields the header named: hasLength, hasEncoding.
	fields uint8
	// crlf is set when the last line ended in CRLF, lastCR when the last read
	// ended in a CR; bare when the header ended at a blank line without a CRLF CRLF.
	crlf, lastCR, bare bool
}

const (
	headOff      = iota // no header being read
	headStatus          // in the status line, before the status code
	headLine            // in a line, skipped to its end
	headStart           // at the start of a line
	headCR              // after a CR that starts a line
	headLength          // in a name that reads "content-length" so far
	headEncoding        // in a name that reads "transfer-encoding" so far
)

const (
	hasLength = 1 << iota
	hasEncoding
)

const (
	lengthName   = "content-length"
	encodingName = "transfer-encoding"
)

func (s *headScan) begin() { *s = headScan{state: headStatus} }

// bothFramings reports whether the last header read named both framings.
func (s *headScan) bothFramings() bool { return s.fields == hasLength|hasEncoding }

func (s *headScan) feed(p []byte) {
	if len(p) == 0 {
		return
	}
	s.scan(p)
	s.lastCR = p[len(p)-1] == '\r'
}

// crBefore reports whether the byte before p[i] came as a CR: at i 0, the last read's.
func (s *headScan) crBefore(p []byte, i int) bool {
	if i > 0 {
		return p[i-1] == '\r'
	}
	return s.lastCR
}

func (s *headScan) scan(p []byte) {
	for i := 0; i < len(p); i++ {
		switch s.state {
		case headOff:
			return
		case headStatus:
			// "HTTP/1.1 200 OK": the code's first digit is byte 9. A status line
			// too short to have one, which fasthttp fails, ends a final header.
			k := 9 - int(s.at)
			if j := bytes.IndexByte(p[i:min(len(p), i+k+1)], '\n'); j >= 0 {
				i += j
				s.state, s.crlf = headStart, s.crBefore(p, i)
				continue
			}
			if k >= len(p)-i {
				s.at += uint8(len(p) - i)
				return
			}
			i += k
			s.status, s.state = p[i], headLine
		case headLine:
			j := bytes.IndexByte(p[i:], '\n')
			if j < 0 {
				return
			}
			i += j
			s.state, s.crlf = headStart, s.crBefore(p, i)
		case headStart:
			switch c := lower(p[i]); c {
			case '\n':
				s.end(false)
			case '\r':
				s.state = headCR
			case 'c', 't':
				if j := bytes.IndexByte(p[i:], '\n'); j >= 0 {
					// The whole line is here.
					s.line(p[i : i+j])
					i += j
					s.crlf = s.crBefore(p, i)
					continue
				}
				s.state, s.at = headLength, 1
				if c == 't' {
					s.state = headEncoding
				}
			default:
				s.state = headLine
			}
		case headCR:
			if p[i] == '\n' {
				s.end(s.crlf)
			} else {
				s.state = headLine
			}
		default:
			i = s.name(p, i)
		}
	}
}

// line notes the framing field that line, a whole header line but its LF, names.
func (s *headScan) line(line []byte) {
	j := bytes.IndexByte(line, ':')
	if j < 0 {
		return
	}
	name := line[:j]
	for len(name) > 0 && (name[len(name)-1] == ' ' || name[len(name)-1] == '\t') {
		name = name[:len(name)-1]
	}
	switch {
	case foldedIs(name, lengthName):
		s.fields |= hasLength
	case foldedIs(name, encodingName):
		s.fields |= hasEncoding
	}
}

// foldedIs reports whether b is name, a lower-case ASCII word, in any case.
func foldedIs(b []byte, name string) bool {
	if len(b) != len(name) {
		return false
	}
	for i := range len(b) {
		if lower(b[i]) != name[i] {
			return false
		}
	}
	return true
}

// name goes on with the field name being matched from p[i], and returns the index of
// the last byte it took.
func (s *headScan) name(p []byte, i int) int {
	name, field := lengthName, uint8(hasLength)
	if s.state == headEncoding {
		name, field = encodingName, hasEncoding
	}
	for ; i < len(p); i++ {
		b := p[i]
		switch whole := int(s.at) == len(name); {
		case !whole && lower(b) == name[s.at]:
			s.at++
			continue
		case whole && (b == ' ' || b == '\t'):
			continue
		case whole && b == ':':
			s.fields |= field
			s.state = headLine
		case b == '\n':
			s.state, s.crlf = headStart, s.crBefore(p, i)
		default:
			s.state = headLine
		}
		return i
	}
	return i
}

// end ends a header at its blank line, which makes a CRLF CRLF with the line end
// before it when crlf: an interim answer's is followed by another. A header without
// that end is the last the scan reads (bare).
func (s *headScan) end(crlf bool) {
	if !crlf {
		s.state, s.bare = headOff, true
		return
	}
	if s.status == '1' {
		s.begin()
		return
	}
	s.state = headOff
}

func lower(b byte) byte {
	if b >= 'A' && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
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
