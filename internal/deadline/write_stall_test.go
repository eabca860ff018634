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

// writeStallCases runs check on a connection of a Listener, plain and under TLS,
// with stall the bound on its writes, and on the Conn that bounds them (under the
// TLS connection, for TLS).
func writeStallCases(t *testing.T, stall time.Duration, check func(t *testing.T, c net.Conn, raw *Conn, peer net.Conn)) {
	cert := testcert.SelfSigned(t)
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"plain", false}, {"TLS", true}} {
		t.Run(tc.name, func(t *testing.T) {
			var l net.Listener = Listener{Listener: listen(t)}
			var dial func(string) (net.Conn, error)
			if tc.tls {
				l = NewTLSListener(Listener{Listener: listen(t)}, &tls.Config{Certificates: []tls.Certificate{cert}})
				dial = func(addr string) (net.Conn, error) {
					return tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // a test's own certificate
				}
			}
			c, peer := accept(t, l, dial)
			var raw *Conn
			if tc.tls {
				raw = c.(*tlsConn).raw
			} else {
				raw = c.(*Conn)
			}
			// Small socket buffers make a large write wait for its peer at once, and
			// stop going out soon after the peer stops reading.
			if tcp, ok := raw.Conn.(*net.TCPConn); ok {
				_ = tcp.SetWriteBuffer(16 << 10)
			}
			var under net.Conn = peer
			if tc, ok := peer.(*tls.Conn); ok {
				under = tc.NetConn()
			}
			if tcp, ok := under.(*net.TCPConn); ok {
				_ = tcp.SetReadBuffer(64 << 10)
			}
			if err := raw.SetWriteStall(stall); err != nil {
				t.Fatal(err)
			}
			check(t, c, raw, peer)
		})
	}
}

// A write its peer takes slowly, but without pausing for the stall's bound, goes
// through however long it takes in all: the bound is on the time nothing goes out,
// not on the write.
func TestWriteStallSlowPeerKeepsWriting(t *testing.T) {
	const stall = 400 * time.Millisecond
	writeStallCases(t, stall, func(t *testing.T, c net.Conn, _ *Conn, peer net.Conn) {
		const size = 4 << 20
		done := make(chan error, 1)
		go func() {
			_, err := c.Write(make([]byte, size))
			done <- err
		}()
		// 4 MiB in 64 KiB reads every 25 ms: about 1.6 s, four times the bound.
		start := time.Now()
		buf := make([]byte, 64<<10)
		got := 0
		for got < size {
			n, err := io.ReadFull(peer, buf[:min(len(buf), size-got)])
			got += n
			if err != nil {
				t.Fatalf("after %d bytes: %v", got, err)
			}
			time.Sleep(25 * time.Millisecond)
		}
		if err := <-done; err != nil {
			t.Fatalf("write taken steadily over %v failed: %v", time.Since(start), err)
		}
		if took := time.Since(start); took < 2*stall {
			t.Logf("the peer took the write in %v, within twice the bound: the case proves little", took)
		}
	})
}

// A write whose peer stops taking it fails once nothing went out for the bound, and
// not much later; a pause shorter than the bound costs nothing.
func TestWriteStallPeerThatStops(t *testing.T) {
	const stall = 400 * time.Millisecond
	writeStallCases(t, stall, func(t *testing.T, c net.Conn, _ *Conn, peer net.Conn) {
		type result struct {
			err error
			at  time.Time
		}
		done := make(chan result, 1)
		go func() {
			_, err := c.Write(make([]byte, 64<<20))
			done <- result{err, time.Now()}
		}()
		buf := make([]byte, 64<<10)
		var last time.Time
		// Take some, pause for less than the bound, take more, then stop.
		for i := range 20 {
			if i == 10 {
				time.Sleep(stall * 3 / 4)
			}
			if _, err := io.ReadFull(peer, buf); err != nil {
				t.Fatal(err)
			}
			last = time.Now()
		}
		r := <-done
		if !errors.Is(r.err, os.ErrDeadlineExceeded) {
			t.Fatalf("write to a peer that stopped: %v, want a deadline error", r.err)
		}
		// What the socket buffers took after the peer's last read went out at once.
		if since := r.at.Sub(last); since < stall-50*time.Millisecond || since > stall+stall/stallSteps+time.Second {
			t.Errorf("write failed %v after the peer's last read, want about %v", since, stall)
		}
	})
}

// The bound counts from each write's start: a write that begins after the
// connection idled longer than the bound has all of it.
func TestWriteStallCountsFromEachWrite(t *testing.T) {
	const stall = 400 * time.Millisecond
	writeStallCases(t, stall, func(t *testing.T, c net.Conn, _ *Conn, peer net.Conn) {
		if _, err := c.Write([]byte("first")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * stall)
		go func() {
			time.Sleep(stall / 2)
			_, _ = io.Copy(io.Discard, peer)
		}()
		if _, err := c.Write(make([]byte, 1<<20)); err != nil {
			t.Fatalf("write after an idle spell, taken within the bound: %v", err)
		}
	})
}

// Ending the stall leaves no write deadline, even once the last look's deadline has
// passed; a write deadline asked for during it is not kept.
func TestWriteStallEnded(t *testing.T) {
	const stall = 200 * time.Millisecond
	writeStallCases(t, stall, func(t *testing.T, c net.Conn, raw *Conn, peer net.Conn) {
		_ = c.SetWriteDeadline(time.Now().Add(time.Millisecond))
		if err := raw.SetWriteStall(0); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * stall)
		go func() {
			time.Sleep(2 * stall)
			_, _ = io.Copy(io.Discard, peer)
		}()
		if _, err := c.Write(make([]byte, 1<<20)); err != nil {
			t.Fatalf("write with the stall ended: %v", err)
		}
	})
}

// A write that goes through under the stall moves no deadline on the socket.
func TestWriteStallCostsWritesNoDeadlineCalls(t *testing.T) {
	cc := &countConn{}
	c := Wrap(nopWriter{cc})
	if err := c.SetWriteStall(time.Minute); err != nil {
		t.Fatal(err)
	}
	for range 1000 {
		if _, err := c.Write([]byte("data: {}\n\n")); err != nil {
			t.Fatal(err)
		}
	}
	if cc.wd != 1 {
		t.Errorf("%d write deadline calls reached the socket, want 1 (the stall's start)", cc.wd)
	}
}

// nopWriter takes every write.
type nopWriter struct{ *countConn }

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkWriteStall is a stream's write of an event under the stall, against the
// same write with a write deadline of its own set from a clock reading before it.
func BenchmarkWriteStall(b *testing.B) {
	event := []byte("data: {}\n\n")
	b.Run("stall", func(b *testing.B) {
		c := Wrap(nopWriter{&countConn{}})
		_ = c.SetWriteStall(time.Minute)
		b.ReportAllocs()
		for b.Loop() {
			_, _ = c.Write(event)
		}
	})
	b.Run("deadline per write", func(b *testing.B) {
		c := Wrap(nopWriter{&countConn{}})
		b.ReportAllocs()
		for b.Loop() {
			_ = c.SetWriteDeadline(time.Now().Add(time.Minute))
			_, _ = c.Write(event)
		}
	})
}
