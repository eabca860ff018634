package deadline

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/testcert"
)

// accept returns a connection of l and the peer that dialed it, dialed with dial
// when set.
func accept(t *testing.T, l net.Listener, dial func(addr string) (net.Conn, error)) (net.Conn, net.Conn) {
	t.Helper()
	if dial == nil {
		dial = func(addr string) (net.Conn, error) { return net.Dial("tcp", addr) }
	}
	type result struct {
		c   net.Conn
		err error
	}
	peer := make(chan result, 1)
	go func() {
		c, err := dial(l.Addr().String())
		peer <- result{c, err}
	}()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if hs, ok := c.(interface{ Handshake() error }); ok {
		// The dial returns once the handshake is over, which the server makes
		// on its first read or here.
		go func() { _ = hs.Handshake() }()
	}
	p := <-peer
	if p.err != nil {
		t.Fatal(p.err)
	}
	t.Cleanup(func() { _ = c.Close(); _ = p.c.Close() })
	return c, p.c
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

// firstByteCases runs check on connections of a Listener with FirstByte wait, plain
// and under TLS (the handshake made at once, then the wait for the first byte of
// what the client sends over it).
func firstByteCases(t *testing.T, wait time.Duration, check func(t *testing.T, c, peer net.Conn)) {
	cert := testcert.SelfSigned(t)
	t.Run("plain", func(t *testing.T) {
		c, peer := accept(t, Listener{Listener: listen(t), FirstByte: wait}, nil)
		check(t, c, peer)
	})
	t.Run("TLS", func(t *testing.T) {
		l := NewTLSListener(Listener{Listener: listen(t), FirstByte: wait}, &tls.Config{Certificates: []tls.Certificate{cert}})
		c, peer := accept(t, l, func(addr string) (net.Conn, error) {
			return tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // a test's own certificate
		})
		check(t, c, peer)
	})
}

// A read deadline asked for on a new connection counts from its first byte, however
// long the connection waited for it: an HTTP server's read timeout set at the accept
// times the request from its first byte.
func TestReadDeadlineCountsFromFirstByte(t *testing.T) {
	firstByteCases(t, 5*time.Second, func(t *testing.T, c, peer net.Conn) {
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		time.Sleep(500 * time.Millisecond)
		if _, err := peer.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if n, err := c.Read(make([]byte, 8)); n != 1 || err != nil {
			t.Fatalf("first read: %d, %v; want the byte sent past the deadline asked for", n, err)
		}
		took, err := readTimes(t, c)
		if !errors.Is(err, os.ErrDeadlineExceeded) || took < 200*time.Millisecond || took > 2*time.Second {
			t.Errorf("read after the first byte: %v after %v; want the deadline's 300 ms from that byte", err, took)
		}
	})
}

// A new connection that sends nothing within its wait reads as ended: no timeout
// error for a server to answer (an HTTP server's 408), whatever read deadline was
// asked for.
func TestFirstByteWaitEndsAsEOF(t *testing.T) {
	firstByteCases(t, 300*time.Millisecond, func(t *testing.T, c, _ net.Conn) {
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		start := time.Now()
		n, err := c.Read(make([]byte, 8))
		if took := time.Since(start); n != 0 || err != io.EOF || took < 250*time.Millisecond || took > 3*time.Second {
			t.Errorf("read on a connection sending nothing: %d, %v after %v; want io.EOF at the wait's 300 ms", n, err, took)
		}
	})
}

// A new connection reset before its first byte (a load balancer's TCP check, a port
// scanner) reads as ended too, not as an error for a server to answer (a 400).
func TestFirstByteWaitResetEndsAsEOF(t *testing.T) {
	firstByteCases(t, 5*time.Second, func(t *testing.T, c, peer net.Conn) {
		if tc, ok := peer.(*tls.Conn); ok {
			// The server's side of the handshake over first: a reset drops
			// what it has not read.
			server := c.(interface{ ConnectionState() tls.ConnectionState })
			for end := time.Now().Add(2 * time.Second); !server.ConnectionState().HandshakeComplete; {
				if time.Now().After(end) {
					t.Fatal("handshake not over")
				}
				time.Sleep(10 * time.Millisecond)
			}
			peer = tc.NetConn()
		}
		_ = peer.(*net.TCPConn).SetLinger(0)
		_ = peer.Close()
		if n, err := c.Read(make([]byte, 8)); n != 0 || err != io.EOF {
			t.Errorf("read on a connection reset before its first byte: %d, %v; want io.EOF", n, err)
		}
	})
}

// A TLS client that opens its connection, sends its ClientHello late, then a
// request's first byte and stalls, is timed out at the read deadline asked for at
// the accept counted from that byte: the wait for the handshake's first byte is not
// counted again in the wait for the request's.
func TestTLSReadDeadlineAfterLateHandshake(t *testing.T) {
	ln := listen(t)
	l := NewTLSListener(Listener{Listener: ln, FirstByte: 5 * time.Second}, &tls.Config{Certificates: []tls.Certificate{testcert.SelfSigned(t)}})
	// Not accept's: its handshake would begin before the deadline is asked for.
	peerCh := make(chan net.Conn, 1)
	go func() {
		c, _ := net.Dial("tcp", ln.Addr().String())
		peerCh <- c
	}()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	peer := <-peerCh
	if peer == nil {
		t.Fatal("dial failed")
	}
	t.Cleanup(func() { _ = c.Close(); _ = peer.Close() })
	// As fasthttp does at the accept: its read timeout from now.
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	type result struct {
		n   int
		err error
	}
	first := make(chan result, 1)
	go func() {
		n, err := c.Read(make([]byte, 8))
		first <- result{n, err}
	}()
	// Connected, the handshake not begun.
	time.Sleep(time.Second)
	tc := tls.Client(peer, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // a test's own certificate
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	if _, err := tc.Write([]byte("P")); err != nil {
		t.Fatal(err)
	}
	if r := <-first; r.n != 1 || r.err != nil {
		t.Fatalf("first read: %d, %v", r.n, r.err)
	}
	_, err = c.Read(make([]byte, 8))
	if took := time.Since(sent); !errors.Is(err, os.ErrDeadlineExceeded) || took > 900*time.Millisecond {
		t.Errorf("read after the request's first byte: %v after %v; want the deadline's 300 ms from that byte", err, took.Round(10*time.Millisecond))
	}
}

// The wait costs a connection one deadline call for itself and one for the deadline
// asked for before the byte, when that comes sooner; the deadlines asked for before
// the byte make none, and the connection's later ones are lazy as ever.
func TestFirstByteWaitDeadlineCalls(t *testing.T) {
	a, b := net.Pipe()
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	cc := &countConn{Conn: a}
	c := Wrap(cc)
	c.firstByte = 90 * time.Second
	c.waiting.Store(true)
	go func() { _, _ = b.Write([]byte("xy")) }()
	_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
	_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
	if cc.rd != 0 {
		t.Fatalf("%d read deadline calls before the first byte, want 0", cc.rd)
	}
	if n, err := c.Read(make([]byte, 1)); n != 1 || err != nil {
		t.Fatal(n, err)
	}
	if cc.rd != 2 {
		t.Errorf("%d read deadline calls for the first byte, want 2", cc.rd)
	}
	for range 100 {
		_ = c.SetReadDeadline(time.Now().Add(90 * time.Second))
		_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
	}
	if cc.rd != 2 {
		t.Errorf("%d read deadline calls after 100 requests, want still 2", cc.rd)
	}
}

// A TLS connection of NewTLSListener passes for a *tls.Conn (fasthttp's IsTLS asks
// for Handshake and ConnectionState) and gives the Conn under it (NetConn), whose
// Linger and socket the gateway looks for.
func TestTLSListenerConnections(t *testing.T) {
	l := NewTLSListener(Listener{Listener: listen(t), FirstByte: time.Second}, &tls.Config{Certificates: []tls.Certificate{testcert.SelfSigned(t)}})
	c, _ := accept(t, l, func(addr string) (net.Conn, error) {
		return tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // a test's own certificate
	})
	tc, ok := c.(interface {
		Handshake() error
		ConnectionState() tls.ConnectionState
		NetConn() net.Conn
	})
	if !ok {
		t.Fatalf("%T does not pass for a TLS connection", c)
	}
	if err := tc.Handshake(); err != nil || !tc.ConnectionState().HandshakeComplete {
		t.Fatalf("handshake: %v", err)
	}
	if _, ok := tc.NetConn().(*Conn); !ok {
		t.Errorf("NetConn is a %T, want the *Conn", tc.NetConn())
	}
}
