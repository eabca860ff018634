package freeport

import (
	"context"
	"net"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// Held is a loopback port kept bound for as long as a test needs it, whether or not a
// server listens on it. Connections to it are refused while nothing listens, and
// neither another Listen on port 0 nor an outgoing connection's local port can take it
// in between, as they can take a port that was merely closed. A replica that is
// stopped and started again, or an address that must stay unreachable, uses one.
type Held struct {
	fd   int
	addr string
}

// Hold binds a loopback port without listening on it.
func Hold() (*Held, error) {
	fd, err := tcpSocket()
	if err != nil {
		return nil, err
	}
	h := &Held{fd: fd}
	// SO_REUSEPORT alone: a listener of this package (same user, SO_REUSEPORT) can bind
	// beside it, anyone else's bind fails.
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		h.Close()
		return nil, err
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		h.Close()
		return nil, err
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		h.Close()
		return nil, err
	}
	port := sa.(*syscall.SockaddrInet4).Port
	given.Store(port, struct{}{})
	h.addr = "127.0.0.1:" + strconv.Itoa(port)
	return h, nil
}

// Addr is the held address, host:port.
func (h *Held) Addr() string { return h.addr }

// Listen starts listening on the held port; closing the listener leaves the port held
// and refusing connections again.
func (h *Held) Listen() (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) { err = reusePort(int(fd)) }); cerr != nil {
			return cerr
		}
		return err
	}}
	return lc.Listen(context.Background(), "tcp4", h.addr)
}

// Close gives the port back.
func (h *Held) Close() error {
	if h.fd < 0 {
		return nil
	}
	err := syscall.Close(h.fd)
	h.fd = -1
	return err
}

func reusePort(fd int) error {
	return syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, unix.SO_REUSEPORT, 1)
}

// tcpSocket is a new IPv4 TCP socket, close-on-exec: set after the socket call, under
// the fork lock as the standard library does where SOCK_CLOEXEC (Linux's) is missing.
func tcpSocket() (int, error) {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	return fd, err
}
