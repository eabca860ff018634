package providers

import (
	"net"
	"time"

	"github.com/tollgate/tollgate/internal/deadline"
)

// upstreamConn is a connection the provider dialled to an upstream. A stream can hear
// of its reads of the socket before they happen (Waiter), and it enforces the
// backend's first-byte and idle timeouts.
//
// fasthttp sets one read deadline per request, which for a stream lasts the whole
// stream, and hands the caller no connection to change it on. With timeouts set, the
// connection turns that deadline into the nearer of it and the first-byte bound, and
// once bytes came, sets the nearer of it and the idle bound before every read of the
// socket: the idle bound times the upstream's silence from the moment the reader
// waits for it, so the time a reader spends between reads (writing to a slow client,
// say) is never counted against the upstream. Read deadlines are the runtime's own
// timers, and deadline.Conn makes moving one later free: no goroutine, and the
// timeout surfaces as os.ErrDeadlineExceeded, which classify maps to ErrTimeout.
type upstreamConn struct {
	*deadline.Conn
	addr connAddr
	wait func() error
	// firstByte and idle are the backend's first_byte_timeout and
	// stream_idle_timeout; 0 is none.
	firstByte, idle time.Duration
	// end is the read deadline fasthttp last asked for. armed is set once it has
	// asked, while an answer is read; waiting until that answer's first byte.
	end            time.Time
	armed, waiting bool
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

// SetDeadline passes through: fasthttp uses it around the TLS handshake only.
func (c *upstreamConn) SetDeadline(t time.Time) error {
	c.armed = false
	return c.Conn.SetDeadline(t)
}

// SetReadDeadline is called by fasthttp once per request, after the request is sent.
func (c *upstreamConn) SetReadDeadline(t time.Time) error {
	if c.firstByte == 0 && c.idle == 0 {
		return c.Conn.SetReadDeadline(t)
	}
	c.end, c.armed, c.waiting = t, true, true
	if c.firstByte > 0 {
		t = nearer(t, time.Now().Add(c.firstByte))
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *upstreamConn) Read(p []byte) (int, error) {
	if w := c.wait; w != nil {
		if err := w(); err != nil {
			return 0, &waitError{err}
		}
	}
	if c.idle > 0 && c.armed && !c.waiting {
		if err := c.Conn.SetReadDeadline(nearer(c.end, time.Now().Add(c.idle))); err != nil {
			return 0, err
		}
	}
	n, err := c.Conn.Read(p)
	if n > 0 && c.waiting {
		c.waiting = false
		if c.idle == 0 {
			// The first byte came: from here the answer has fasthttp's deadline.
			if e := c.Conn.SetReadDeadline(c.end); e != nil && err == nil {
				err = e
			}
		}
	}
	return n, err
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
