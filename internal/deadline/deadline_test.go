package deadline

import (
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp/fasthttputil"
)

// countConn counts the deadline calls that reach the socket.
type countConn struct {
	net.Conn
	mu     sync.Mutex
	rd, wd int
}

func (c *countConn) SetReadDeadline(time.Time) error {
	c.mu.Lock()
	c.rd++
	c.mu.Unlock()
	return nil
}

func (c *countConn) SetWriteDeadline(time.Time) error {
	c.mu.Lock()
	c.wd++
	c.mu.Unlock()
	return nil
}

func TestLaterDeadlinesAreRecordedOnly(t *testing.T) {
	cc := &countConn{}
	c := Wrap(cc)
	// What fasthttp does per request on a keep-alive connection: the idle wait,
	// the read, and upstream a write and a read deadline, each from a fresh clock.
	for range 1000 {
		now := time.Now()
		_ = c.SetReadDeadline(now.Add(90 * time.Second))
		_ = c.SetReadDeadline(now.Add(60 * time.Second))
		_ = c.SetWriteDeadline(now.Add(10 * time.Minute))
	}
	// The first of each, and the first 60 s read deadline (sooner than 90 s).
	if cc.rd != 2 || cc.wd != 1 {
		t.Errorf("%d read and %d write deadline calls reached the socket, want 2 and 1", cc.rd, cc.wd)
	}
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	_ = c.SetWriteDeadline(time.Time{})
	if cc.rd != 3 || cc.wd != 1 {
		t.Errorf("after a sooner read deadline and none for writes: %d and %d calls, want 3 and 1", cc.rd, cc.wd)
	}
}

// pair returns the two ends of a loopback TCP connection, the first wrapped.
func pair(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-acc
	if peer == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { raw.Close(); peer.Close() })
	return Wrap(raw), peer
}

func readTimes(t *testing.T, c net.Conn) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	_, err := c.Read(make([]byte, 1))
	return time.Since(start), err
}

// A read ends at the last deadline asked for, whether it moved later or sooner.
func TestReadDeadlineLastAsked(t *testing.T) {
	for _, tc := range []struct {
		name          string
		first, second time.Duration
	}{
		{"a later one holds", 50 * time.Millisecond, 300 * time.Millisecond},
		{"a sooner one applies", 10 * time.Second, 100 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := pair(t)
			_ = c.SetReadDeadline(time.Now().Add(tc.first))
			// Timed from the deadline's own clock reading: the read begins later.
			set := time.Now()
			_ = c.SetReadDeadline(set.Add(tc.second))
			_, err := readTimes(t, c)
			took := time.Since(set)
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read: %v, want a deadline error", err)
			}
			if took < tc.second || took > 3*time.Second {
				t.Errorf("read ended after %v, want the last deadline's %v", took, tc.second)
			}
		})
	}
}

// A deadline in the past makes a read fail at once; clearing it afterwards leaves
// the connection readable (the gateway checks for pipelined bytes this way).
func TestPastThenNone(t *testing.T) {
	c, peer := pair(t)
	_ = c.SetReadDeadline(time.Unix(1, 0))
	if took, err := readTimes(t, c); !errors.Is(err, os.ErrDeadlineExceeded) || took > time.Second {
		t.Fatalf("read with a past deadline: %v after %v", err, took)
	}
	_ = c.SetReadDeadline(time.Time{})
	go func() {
		time.Sleep(100 * time.Millisecond)
		_, _ = peer.Write([]byte("x"))
	}()
	if _, err := readTimes(t, c); err != nil {
		t.Fatalf("read after clearing the deadline: %v", err)
	}
	// And a deadline asked for after that still fires.
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := readTimes(t, c); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: %v, want a deadline error", err)
	}
}

// A write blocked on a peer that does not read ends at the last deadline asked for,
// and reports the bytes that did go out.
func TestLaterWriteDeadlineHolds(t *testing.T) {
	c, peer := pair(t)
	_ = c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	_ = c.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	start := time.Now()
	n, err := c.Write(make([]byte, 64<<20))
	took := time.Since(start)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write: %v, want a deadline error", err)
	}
	if took < 300*time.Millisecond || took > 3*time.Second {
		t.Errorf("write ended after %v, want 300 ms", took)
	}
	if n <= 0 || n >= 64<<20 {
		t.Errorf("write reported %d bytes", n)
	}
	_ = peer.Close()
}

// Deadlines moved from another goroutine while a read waits: the read ends at the
// last one asked for, whichever way they moved.
func TestDeadlinesMovedWhileReading(t *testing.T) {
	c, _ := pair(t)
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 20 {
			_ = c.SetReadDeadline(time.Now().Add(time.Hour))
			time.Sleep(5 * time.Millisecond)
		}
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	}()
	took, err := readTimes(t, c)
	wg.Wait()
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: %v, want a deadline error", err)
	}
	if took < 150*time.Millisecond || took > 5*time.Second {
		t.Errorf("read ended after %v, want about 200 ms (100 ms after the last move)", took)
	}
}

func TestListenerWraps(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := Listener{Listener: ln}
	defer l.Close()
	go func() {
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			time.Sleep(100 * time.Millisecond)
			c.Close()
		}
	}()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*Conn); !ok {
		t.Fatalf("accepted a %T", c)
	}
}

func BenchmarkSetReadDeadline(b *testing.B) {
	for _, bc := range []struct {
		name string
		wrap bool
	}{{"socket", false}, {"lazy", true}} {
		b.Run(bc.name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err == nil {
					defer c.Close()
					time.Sleep(time.Minute)
				}
			}()
			raw, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer raw.Close()
			var c net.Conn = raw
			if bc.wrap {
				c = Wrap(raw)
			}
			b.ReportAllocs()
			for b.Loop() {
				now := time.Now()
				_ = c.SetReadDeadline(now.Add(90 * time.Second))
				_ = c.SetReadDeadline(now.Add(60 * time.Second))
			}
		})
	}
}

// failOnce fails its first read deadline call.
type failOnce struct {
	countConn
	failed bool
}

func (c *failOnce) SetReadDeadline(t time.Time) error {
	if !c.failed {
		c.failed = true
		return errors.New("no deadline")
	}
	return c.countConn.SetReadDeadline(t)
}

// After a deadline call fails, the deadline in force is unknown: the next one asked
// for is applied, sooner or later.
func TestFailedSetIsRetried(t *testing.T) {
	fc := &failOnce{}
	c := Wrap(fc)
	if err := c.SetReadDeadline(time.Now().Add(time.Second)); err == nil {
		t.Fatal("the failure was not reported")
	}
	if err := c.SetReadDeadline(time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if fc.rd != 1 {
		t.Errorf("%d read deadline calls reached the socket after the failure, want 1", fc.rd)
	}
}

// A connection whose timeouts are not os.ErrDeadlineExceeded (fasthttputil's
// in-memory pipes, which the in-process mock backend dials) keeps the deadline last
// asked for too: the sooner one in force firing does not end the read.
func TestLaterDeadlineHoldsOnPipes(t *testing.T) {
	p := fasthttputil.NewPipeConns()
	c := Wrap(p.Conn1())
	t.Cleanup(func() { _ = p.Close() })
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	go func() {
		time.Sleep(200 * time.Millisecond)
		_, _ = p.Conn2().Write([]byte("x"))
	}()
	buf := make([]byte, 1)
	if n, err := c.Read(buf); n != 1 || err != nil {
		t.Fatalf("read %d, %v; want the byte written before the last deadline", n, err)
	}
	if !IsTimeout(fasthttputil.ErrTimeout) || !IsTimeout(os.ErrDeadlineExceeded) || IsTimeout(errors.New("x")) ||
		IsTimeout(&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ETIMEDOUT)}) {
		t.Error("IsTimeout does not tell a deadline's timeout")
	}
}
