package deadline

import (
	"crypto/tls"
	"errors"
	"net"
	"sync/atomic"
	"time"
)

// NewTLSListener is tls.NewListener over l. A connection's wait for its first byte
// (l.FirstByte) is then twice that: for the handshake's first byte, which the read
// deadline asked for before it counts from, and once the handshake is over, for the
// first byte of the client's first request. A client that completes its handshake
// ahead of its first request (a preconnect, a warmed pool) is therefore not timed
// from the handshake, as it would be from the open without.
func NewTLSListener(l Listener, config *tls.Config) net.Listener {
	return tlsListener{Listener: l, config: config}
}

type tlsListener struct {
	Listener
	config *tls.Config
}

// Accept waits for the next connection and returns it as a TLS server connection.
func (l tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	raw := c.(*Conn)
	raw.underTLS = true
	tc := &tlsConn{Conn: tls.Server(raw, l.config), raw: raw, plain: l.PlainHTTP}
	tc.waiting.Store(raw.firstByte > 0)
	// The lines that count are those of what the client sent, not of its records.
	tc.lines.on, raw.lines.on = raw.lines.on, false
	tc.heads, raw.heads = raw.heads, heads{}
	return tc, nil
}

// tlsConn is a TLS server connection over a Conn that waits for the first byte of
// the first request after the handshake. It is a *tls.Conn to whoever asks for its
// methods (Handshake, ConnectionState, NetConn): fasthttp tells a TLS connection
// (RequestCtx.IsTLS) by them.
type tlsConn struct {
	*tls.Conn
	raw     *Conn
	waiting atomic.Bool
	// askedAt is when the read deadline was asked for during the wait (Conn's).
	askedAt atomic.Int64
	// lines follows the line feeds read (Listener's Lines), heads the requests'
	// header blocks (Listener's Heads).
	lines lineFeeds
	heads heads
	// plain is Listener's PlainHTTP.
	plain []byte
}

// SetDeadline sets both deadlines, the read one counting from the first byte of the
// first request if it has not come.
func (c *tlsConn) SetDeadline(t time.Time) error {
	c.asked()
	return c.Conn.SetDeadline(t)
}

// SetReadDeadline sets the read deadline, counting from the first byte of the first
// request if it has not come.
func (c *tlsConn) SetReadDeadline(t time.Time) error {
	c.asked()
	return c.Conn.SetReadDeadline(t)
}

func (c *tlsConn) asked() {
	if c.waiting.Load() {
		c.askedAt.Store(time.Now().UnixNano())
	}
}

// Read reads what the client sent, after the handshake, up to a request header or
// trailer line ended by a bare LF, then nothing (ErrBareLF), as Conn's.
func (c *tlsConn) Read(b []byte) (n int, err error) {
	if c.heads.bare > 0 {
		return 0, ErrBareLF
	}
	if c.waiting.Load() && len(b) > 0 {
		if err := c.Conn.Handshake(); err != nil {
			c.answerPlainHTTP(err)
			return 0, err
		}
		// The wait for the handshake's first byte made the read deadline asked
		// for before it count from that byte: this wait moves it from there, not
		// from when it was asked for, which would count the first wait twice.
		if at := c.raw.askedAt.Load(); at > c.askedAt.Load() {
			c.askedAt.Store(at)
		}
		n, err = c.raw.waitFirst(c.Conn, b, &c.askedAt)
		if n > 0 {
			c.waiting.Store(false)
			c.raw.requestBegun()
		}
	} else {
		n, err = c.Conn.Read(b)
		if err != nil && n == 0 {
			c.answerPlainHTTP(err)
		}
	}
	if c.heads.on {
		n = c.heads.add(b[:n])
	}
	if c.lines.on {
		c.lines.add(b[:n])
	}
	return n, err
}

// BareLF reports whether a line of the header or trailer of the client's request
// number r ended in a bare LF, as Conn's.
func (c *tlsConn) BareLF(r int) (bare, known bool) { return c.heads.bareIn(r) }

// answerPlainHTTP writes c.plain to a client whose handshake failed on a first record
// that is the start of an HTTP request (the method and a space or a slash, as Go's
// net/http tells it), on the raw connection, which the caller then closes.
func (c *tlsConn) answerPlainHTTP(err error) {
	var re tls.RecordHeaderError
	if len(c.plain) == 0 || !errors.As(err, &re) || re.Conn == nil {
		return
	}
	switch string(re.RecordHeader[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "DELET", "PATCH":
		_ = re.Conn.SetWriteDeadline(time.Now().Add(plainHTTPWrite))
		_, _ = re.Conn.Write(c.plain)
	}
}

// plainHTTPWrite bounds the write of the answer to a plain HTTP client.
const plainHTTPWrite = time.Second

// LineFeedIn reports whether a line feed came in the last n bytes the client sent
// (after decryption), past the first skip of them, as Conn's does.
func (c *tlsConn) LineFeedIn(n, skip int) (found, known bool) {
	if !c.lines.on {
		return false, false
	}
	return c.lines.in(n, skip)
}
