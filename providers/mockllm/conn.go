package mockllm

import (
	"errors"
	"net"
	"os"
	"sync"
	"time"
)

// errGone ends a request whose client closed its connection while it waited;
// errShutdown a stream still queued for a slot when the server shuts down.
var (
	errGone     = errors.New("mockllm: client went away")
	errShutdown = errors.New("mockllm: shutting down")
)

// watchListener wraps accepted connections in watchConn, so that a request's simulated
// waits notice the client leave, and tracks them so that Shutdown can cut those waits
// short.
type watchListener struct {
	net.Listener
	s *Server
}

func (l watchListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	w := &watchConn{Conn: c, s: l.s}
	l.s.connMu.Lock()
	l.s.conns[w] = struct{}{}
	l.s.connMu.Unlock()
	return w, nil
}

// watchConn is an accepted connection whose wait sleeps by reading it under a
// deadline: vLLM (Starlette) listens for http.disconnect while it generates and aborts
// a request whose client left, freeing its slot at once; a mock that only notices on
// its next write holds the slot for a whole TTFT or TPOT. A byte that arrives meanwhile
// (a pipelined request) is kept and handed to the server's next Read.
type watchConn struct {
	net.Conn
	s       *Server
	peeked  [1]byte
	hasPeek bool
	closed  sync.Once
}

func (c *watchConn) Read(p []byte) (int, error) {
	if c.hasPeek && len(p) > 0 {
		p[0] = c.peeked[0]
		c.hasPeek = false
		return 1, nil
	}
	return c.Conn.Read(p)
}

func (c *watchConn) Close() error {
	c.closed.Do(func() {
		c.s.connMu.Lock()
		delete(c.s.conns, c)
		c.s.connMu.Unlock()
	})
	return c.Conn.Close()
}

// wait blocks until deadline, Shutdown, or the peer closing the connection; it
// reports false only for the last.
func (c *watchConn) wait(until time.Time) bool {
	if c.hasPeek {
		c.s.sleep(time.Until(until))
		return true
	}
	if c.Conn.SetReadDeadline(until) != nil {
		c.s.sleep(time.Until(until))
		return true
	}
	// Shutdown closes done before it moves every deadline to the past, so a wait
	// that set its deadline after that sees done here.
	if c.s.isDone() {
		_ = c.Conn.SetReadDeadline(time.Time{})
		return true
	}
	n, err := c.Conn.Read(c.peeked[:])
	_ = c.Conn.SetReadDeadline(time.Time{})
	if n == 1 {
		c.hasPeek = true
		c.s.sleep(time.Until(until))
		return true
	}
	return isTimeout(err)
}

// isTimeout reports whether a Read failed at its deadline. fasthttputil's in-memory
// pipe times out with an error that has Timeout but is no net.Error.
func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &te) && te.Timeout()
}

// wakeConns cuts every running wait short, at shutdown.
func (s *Server) wakeConns() {
	past := time.Unix(1, 0)
	s.connMu.Lock()
	for c := range s.conns {
		_ = c.Conn.SetReadDeadline(past)
	}
	s.connMu.Unlock()
}

func (s *Server) isDone() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// wait sleeps d like Server.sleep and reports false when the client closed its
// connection meanwhile. Without a watched connection (Handler mounted on another
// server) or with Options.Sleep, it cannot tell and reports true.
func (st *state) wait(d time.Duration) bool {
	s := st.s
	if d <= 0 || s.opts.Sleep != nil || st.conn == nil {
		s.sleep(d)
		return true
	}
	return st.conn.wait(time.Now().Add(d))
}
