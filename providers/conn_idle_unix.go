//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package providers

import (
	"errors"
	"syscall"

	"github.com/tollgate/tollgate/internal/connwrap"
)

// idlePeek looks at the socket of a connection taken again from the pool without
// reading from it or waiting: recv(2) with MSG_PEEK|MSG_DONTWAIT, through the
// socket's RawConn. The RawConn and the function Control calls are made once per
// connection, at its first look, so that a look allocates nothing; it costs one
// system call.
type idlePeek struct {
	rc   syscall.RawConn
	look func(fd uintptr)
	buf  [1]byte
	// pending is what the last look found.
	pending bool
}

// idleReadable reports whether the upstream has sent anything on c since its last
// answer: bytes, its close (an end of file) or a reset. A connection with no socket
// to be found under it (the mock's in-memory pipes; a SOCKS5 proxy's tunnel, whose
// connection type hides it) is never found so.
func (c *upstreamConn) idleReadable() bool {
	p := c.peek
	if p == nil {
		p = &idlePeek{}
		if sc, ok := connwrap.Under[syscall.Conn](c.Conn); ok {
			p.rc, _ = sc.SyscallConn()
		}
		p.look = p.recv
		c.peek = p
	}
	if p.rc == nil {
		return false
	}
	p.pending = false
	if err := p.rc.Control(p.look); err != nil {
		// The socket is closed already.
		return true
	}
	return p.pending
}

// recv peeks at one byte. Success is a byte, or with none the upstream's FIN;
// EAGAIN is nothing to read; any other error (a reset) leaves the connection
// unusable too.
func (p *idlePeek) recv(fd uintptr) {
	_, _, err := syscall.Recvfrom(int(fd), p.buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	p.pending = !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EINTR)
}
