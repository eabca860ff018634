package providers

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

func TestCoarseDeadline(t *testing.T) {
	for _, left := range []time.Duration{-time.Second, 0, 500 * time.Microsecond, 30 * time.Millisecond,
		time.Second, 60 * time.Second, 10 * time.Minute} {
		now := time.Now()
		d := now.Add(left)
		n := coarse(d)
		late := time.Duration(n - d.UnixNano())
		switch {
		case late < 0:
			t.Errorf("%v left: deadline moved %v earlier", left, -late)
		case left <= 0 && late != 0:
			t.Errorf("%v left: a due deadline moved by %v", left, late)
		case left > 64*time.Millisecond && late > max(left/64, 0):
			t.Errorf("%v left: moved by %v, more than 1/64 of it", left, late)
		case late > time.Second:
			t.Errorf("%v left: moved by %v", left, late)
		case left > 0 && left <= 64*time.Millisecond && late > time.Millisecond:
			t.Errorf("%v left: moved by %v, more than a millisecond", left, late)
		}
	}
	if coarse(time.Time{}) != 0 {
		t.Error("no deadline must stay none")
	}
}

// countConn counts the deadline calls that reach the socket.
type countConn struct {
	net.Conn
	rd, wd int
}

func (c *countConn) SetReadDeadline(time.Time) error  { c.rd++; return nil }
func (c *countConn) SetWriteDeadline(time.Time) error { c.wd++; return nil }
func (c *countConn) SetDeadline(time.Time) error      { c.rd++; c.wd++; return nil }

func TestCoarseConnSkipsRepeats(t *testing.T) {
	cc := &countConn{}
	c := &coarseConn{Conn: cc}
	// 1,000 requests' worth of deadlines, as fasthttp sets them, within a few
	// milliseconds: the grid for a 60 s timeout is over half a second, so at most
	// one boundary is crossed.
	for range 1000 {
		_ = c.SetWriteDeadline(time.Now().Add(time.Minute))
		_ = c.SetReadDeadline(time.Now().Add(time.Minute))
	}
	if cc.rd > 2 || cc.wd > 2 {
		t.Errorf("%d read and %d write deadline calls reached the socket, want at most 2 each", cc.rd, cc.wd)
	}
	rd, wd := cc.rd, cc.wd
	_ = c.SetReadDeadline(time.Time{})
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	if cc.rd != rd+1 || cc.wd != wd+1 {
		t.Errorf("a changed deadline was not set: %d/%d calls, want %d/%d", cc.rd, cc.wd, rd+1, wd+1)
	}
	_ = c.SetDeadline(time.Time{})
	_ = c.SetReadDeadline(time.Time{})
	_ = c.SetWriteDeadline(time.Time{})
	if cc.rd != rd+2 || cc.wd != wd+2 {
		t.Errorf("clearing: %d/%d calls, want %d/%d", cc.rd, cc.wd, rd+2, wd+2)
	}
}

// A deadline on a real socket still ends a read that waits, within its grid.
func TestCoarseConnTimesOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if s, err := ln.Accept(); err == nil {
			defer s.Close()
			time.Sleep(5 * time.Second)
		}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := &coarseConn{Conn: raw}
	defer c.Close()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(100 * time.Millisecond))
	_, err = c.Read(make([]byte, 1))
	took := time.Since(start)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: %v, want a deadline error", err)
	}
	if took < 100*time.Millisecond || took > 2*time.Second {
		t.Errorf("read ended after %v, want 100 ms and a little", took)
	}
}
