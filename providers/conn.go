package providers

import (
	"net"
	"time"
)

// coarseConn is an upstream connection whose deadlines are kept to within 1/64 of
// the time left (at most a second), never earlier than asked. fasthttp sets a read
// and a write deadline for every request, each from a fresh clock reading, and each
// call moves a runtime timer; rounded up to that grid, the deadline of the next
// request on the same connection is almost always the one already in force, and
// the call is skipped. A connection is used by one request at a time, so the
// fields need no lock.
type coarseConn struct {
	net.Conn
	// rd and wd are the read and write deadlines in force, in Unix nanoseconds on
	// the grid; 0 is none.
	rd, wd int64
}

const (
	// coarseMinStep and coarseMaxStep bound the grid: a deadline moves by less than
	// a millisecond only when less than 64 ms are left, and never by a second.
	coarseMinStep = int64(time.Millisecond)
	coarseMaxStep = int64(time.Second)
)

// coarse rounds t up to its grid; the zero time (no deadline) stays 0.
func coarse(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	n := t.UnixNano()
	step := (n - time.Now().UnixNano()) / 64
	switch {
	case step >= coarseMaxStep:
		step = coarseMaxStep
	case step <= coarseMinStep:
		// A deadline that has passed or is about to is set as asked.
		if step <= 0 {
			return n
		}
		step = coarseMinStep
	default:
		// A power of two: requests with the same timeout land on the same grid.
		for step&(step-1) != 0 {
			step &= step - 1
		}
	}
	if r := n % step; r != 0 {
		n += step - r
	}
	return n
}

func deadlineTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

func (c *coarseConn) SetDeadline(t time.Time) error {
	n := coarse(t)
	if n == c.rd && n == c.wd {
		return nil
	}
	if err := c.Conn.SetDeadline(deadlineTime(n)); err != nil {
		c.rd, c.wd = -1, -1
		return err
	}
	c.rd, c.wd = n, n
	return nil
}

func (c *coarseConn) SetReadDeadline(t time.Time) error {
	n := coarse(t)
	if n == c.rd {
		return nil
	}
	if err := c.Conn.SetReadDeadline(deadlineTime(n)); err != nil {
		c.rd = -1
		return err
	}
	c.rd = n
	return nil
}

func (c *coarseConn) SetWriteDeadline(t time.Time) error {
	n := coarse(t)
	if n == c.wd {
		return nil
	}
	if err := c.Conn.SetWriteDeadline(deadlineTime(n)); err != nil {
		c.wd = -1
		return err
	}
	c.wd = n
	return nil
}

// coarseDial wraps what dial returns in a coarseConn.
func coarseDial(dial func(string) (net.Conn, error)) func(string) (net.Conn, error) {
	return func(addr string) (net.Conn, error) {
		c, err := dial(addr)
		if err != nil {
			return nil, err
		}
		return &coarseConn{Conn: c}, nil
	}
}
