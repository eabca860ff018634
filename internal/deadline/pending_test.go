package deadline

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/testcert"
)

// pendingCases runs check on connections of a Listener with a Pending set and a long
// wait for the first byte, plain and under TLS, as firstByteCases does.
func pendingCases(t *testing.T, check func(t *testing.T, p *Pending, c, peer net.Conn)) {
	cert := testcert.SelfSigned(t)
	t.Run("plain", func(t *testing.T) {
		p := &Pending{}
		c, peer := accept(t, Listener{Listener: listen(t), FirstByte: time.Minute, Pending: p}, nil)
		check(t, p, c, peer)
	})
	t.Run("TLS", func(t *testing.T) {
		p := &Pending{}
		l := NewTLSListener(Listener{Listener: listen(t), FirstByte: time.Minute, Pending: p}, &tls.Config{Certificates: []tls.Certificate{cert}})
		c, peer := accept(t, l, func(addr string) (net.Conn, error) {
			return tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // a test's own certificate
		})
		check(t, p, c, peer)
	})
}

// readResult reads once from c in the background.
func readResult(c net.Conn) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 8))
		done <- err
	}()
	return done
}

// End ends at once the wait of a connection that has sent nothing, which reads as
// ended (io.EOF): a server that drains does not wait for it.
func TestPendingEndEndsSilentConnection(t *testing.T) {
	pendingCases(t, func(t *testing.T, p *Pending, c, _ net.Conn) {
		done := readResult(c)
		time.Sleep(100 * time.Millisecond)
		p.End()
		select {
		case err := <-done:
			if err != io.EOF {
				t.Errorf("read on a silent connection ended by End: %v, want io.EOF", err)
			}
		case <-time.After(2 * time.Second):
			t.Error("read on a silent connection still waiting 2s after End")
		}
	})
}

// A connection whose request has begun is no longer pending: End leaves it reading
// under the deadlines asked for.
func TestPendingEndLeavesRequestBegun(t *testing.T) {
	pendingCases(t, func(t *testing.T, p *Pending, c, peer net.Conn) {
		if _, err := peer.Write([]byte("G")); err != nil {
			t.Fatal(err)
		}
		if n, err := c.Read(make([]byte, 8)); n != 1 || err != nil {
			t.Fatalf("first read: %d, %v", n, err)
		}
		done := readResult(c)
		p.End()
		time.Sleep(100 * time.Millisecond)
		if _, err := peer.Write([]byte("ET /")); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Errorf("read of a request begun before End: %v, want its bytes", err)
		}
	})
}

// A connection accepted after End (the accept racing the listener's close) waits for
// its first byte only briefly: a byte already sent is read, nothing else waited for.
func TestPendingEndBoundsLaterConnections(t *testing.T) {
	p := &Pending{}
	p.End()
	l := Listener{Listener: listen(t), FirstByte: time.Minute, Pending: p}
	c, peer := accept(t, l, nil)
	start := time.Now()
	if _, err := c.Read(make([]byte, 8)); err != io.EOF || time.Since(start) > time.Second {
		t.Errorf("silent connection accepted after End: %v after %v, want io.EOF at once", err, time.Since(start))
	}
	c, peer = accept(t, l, nil)
	if _, err := peer.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if n, err := c.Read(make([]byte, 8)); n != 1 || err != nil {
		t.Errorf("connection accepted after End with a byte sent: %d, %v, want the byte", n, err)
	}
}

// Connections leave the set when their request begins or they close: it holds only
// those waiting.
func TestPendingHoldsOnlyWaitingConnections(t *testing.T) {
	p := &Pending{}
	l := Listener{Listener: listen(t), FirstByte: time.Minute, Pending: p}
	count := func() int {
		p.mu.Lock()
		defer p.mu.Unlock()
		n := 0
		for c := p.head; c != nil; c = c.next {
			n++
		}
		return n
	}
	a, _ := accept(t, l, nil)
	b, peerB := accept(t, l, nil)
	c, _ := accept(t, l, nil)
	if n := count(); n != 3 {
		t.Fatalf("%d pending after three accepts, want 3", n)
	}
	if _, err := peerB.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if n, err := b.Read(make([]byte, 8)); n != 1 || err != nil {
		t.Fatal(n, err)
	}
	_ = a.Close()
	if n := count(); n != 1 {
		t.Errorf("%d pending after a request began and a close, want 1", n)
	}
	_ = c.Close()
	if n := count(); n != 0 {
		t.Errorf("%d pending after every connection left, want 0", n)
	}
}

// latencyConn is a client's side of a connection whose writes reach the server oneWay
// after they are made (a client some milliseconds away), hook called before each
// with the write's number (1-based).
type latencyConn struct {
	net.Conn
	oneWay time.Duration
	n      int
	hook   func(n int)
}

func (c *latencyConn) Write(b []byte) (int, error) {
	c.n++
	if c.hook != nil {
		c.hook(c.n)
	}
	time.Sleep(c.oneWay)
	return c.Conn.Write(b)
}

// A TLS 1.2 client whose handshake is under way when End comes (its ClientHello read
// and answered, its key exchange on the way) has sent bytes, and sends its request
// one round trip after the server's Finished: its wait for that request is not cut
// to endGrace, and the request is read as without End.
func TestPendingEndLeavesTLS12HandshakeUnderWay(t *testing.T) {
	cert := testcert.SelfSigned(t)
	for _, tc := range []struct {
		name string
		end  bool
	}{
		{"no End", false},
		{"End mid-handshake", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Pending{}
			l := NewTLSListener(Listener{Listener: listen(t), FirstByte: time.Minute, Pending: p},
				&tls.Config{Certificates: []tls.Certificate{cert}})
			sent := make(chan error, 1)
			go func() {
				raw, err := net.Dial("tcp", l.Addr().String())
				if err != nil {
					sent <- err
					return
				}
				defer raw.Close()
				lc := &latencyConn{Conn: raw, oneWay: 30 * time.Millisecond, hook: func(n int) {
					// Write 2 is the client's key exchange and Finished: the server
					// has read the ClientHello and answered it.
					if n == 2 && tc.end {
						p.End()
					}
				}}
				client := tls.Client(lc, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12}) //nolint:gosec // a test's own certificate
				if err := client.Handshake(); err != nil {
					sent <- err
					return
				}
				_, err = client.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
				sent <- err
				time.Sleep(500 * time.Millisecond)
			}()
			c, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			n, err := c.Read(make([]byte, 64))
			if err := <-sent; err != nil {
				t.Fatalf("client: %v", err)
			}
			if n == 0 || err != nil {
				t.Errorf("first read of a TLS 1.2 client whose handshake was under way: %d bytes, %v; want its request", n, err)
			}
		})
	}
}

// A connection enters and leaves its Listener's Pending without an allocation: the set
// is a list through the connections themselves.
func TestPendingAddRemoveAllocateNothing(t *testing.T) {
	var p Pending
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := Wrap(a)
	if n := testing.AllocsPerRun(100, func() {
		p.add(c)
		p.remove(c)
	}); n != 0 {
		t.Fatalf("%v allocations per add and remove, want 0", n)
	}
}
