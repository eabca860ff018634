package deadline

import (
	"net"
	"testing"
	"time"
)

// A connection keeps how its reads ended, for a parser that wraps the error it got:
// the peer closing its side, or the read deadline passing; nothing while reads go on.
func TestReadEnd(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pair := func() (*Conn, net.Conn) {
		t.Helper()
		peer, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { peer.Close(); c.Close() })
		return Wrap(c), peer
	}

	c, peer := pair()
	if _, err := peer.Write([]byte("ab")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	if _, err := c.Read(buf); err != nil || c.ReadEnd() != 0 {
		t.Fatalf("read: %v, end %d; want bytes and no end", err, c.ReadEnd())
	}
	peer.(*net.TCPConn).CloseWrite()
	if _, err := c.Read(buf); err == nil || c.ReadEnd() != ReadEOF {
		t.Fatalf("after the peer closed: %v, end %d; want EOF, ReadEOF", err, c.ReadEnd())
	}

	c, _ = pair()
	if err := c.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(buf); !IsTimeout(err) || c.ReadEnd() != ReadTimedOut {
		t.Fatalf("past the deadline: %v, end %d; want a timeout, ReadTimedOut", err, c.ReadEnd())
	}
}

// A read that timed out, then one that read, leaves no end: the connection went on.
func TestReadEndClearedByRead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c := Wrap(raw)
	defer c.Close()
	buf := make([]byte, 8)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if _, err := c.Read(buf); !IsTimeout(err) || c.ReadEnd() != ReadTimedOut {
		t.Fatalf("past the deadline: %v, end %d", err, c.ReadEnd())
	}
	_ = c.SetReadDeadline(time.Time{})
	if _, err := peer.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(buf); err != nil || c.ReadEnd() != 0 {
		t.Fatalf("read after the timeout: %v, end %d; want bytes and no end", err, c.ReadEnd())
	}
}
