package providers

import (
	"net"

	"github.com/tollgate/tollgate/internal/deadline"
)

// Waiter is implemented by a stream that can say when it is about to wait for its
// upstream: every byte received so far has been read, and the next read goes to the
// socket. A relay holds the events it has and passes them on in one write at that
// moment, as nginx writes once per upstream read, instead of once per event.
type Waiter interface {
	// NotifyWait has fn called at each such moment until the stream is closed, on
	// the goroutine calling Next and from inside Next; an error from fn fails that
	// Next with it (and the stream's connection is not reused). It reports false,
	// and never calls fn, when the stream cannot tell.
	NotifyWait(fn func() error) bool
}

// upstreamConn is an upstream connection whose reads of the socket a stream can
// hear of before they happen (Waiter).
type upstreamConn struct {
	*deadline.Conn
	addr connAddr
	wait func() error
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

func (c *upstreamConn) Read(p []byte) (int, error) {
	if w := c.wait; w != nil {
		if err := w(); err != nil {
			return 0, &waitError{err}
		}
	}
	return c.Conn.Read(p)
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
