package freeport

import (
	"bufio"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Silent is a loopback address that answers no new connection, as a black-holed one
// does (the IP of a deleted pod, whose SYNs go unanswered): a connect to it waits
// until its own timeout or its cancellation, with no answer and no refusal. It is a
// listener whose accept queue is full and which never accepts: Linux drops a SYN that
// arrives at such a listener, and the client sends it again until it gives up.
type Silent struct {
	ln   net.Listener
	fill []net.Conn
	port int
}

// ListenSilent starts a Silent address.
func ListenSilent() (*Silent, error) {
	fd, err := tcpSocket()
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "silent")
	defer func() { _ = f.Close() }()
	// A backlog of 0: Linux queues one connection, and drops every SYN once it holds
	// it. net.Listen would ask for the system's maximum.
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return nil, err
	}
	if err := syscall.Listen(fd, 0); err != nil {
		return nil, err
	}
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, err
	}
	s := &Silent{ln: ln, port: ln.Addr().(*net.TCPAddr).Port}
	// Connections fill the queue until one is not answered.
	for range 16 {
		c, err := net.DialTimeout("tcp4", s.Addr(), 200*time.Millisecond)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return s, nil
		}
		if err != nil {
			_ = s.Close()
			return nil, err
		}
		s.fill = append(s.fill, c)
	}
	_ = s.Close()
	return nil, errors.New("freeport: the listener's queue does not fill: connections to it are answered")
}

// Addr is the address, host:port.
func (s *Silent) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Connecting is the number of this host's TCP connections to the address that are
// waiting for an answer to their SYN (SYN_SENT in /proc/net/tcp): connects under way.
func (s *Silent) Connecting() (int, error) {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return 0, err
	}
	defer func() { _ = f.Close() }()
	// The remote address is the third field, the state the fourth (02: SYN_SENT); the
	// IP is the kernel's 32-bit word in hex, 127.0.0.1 read as 0100007F on a
	// little-endian host and 7F000001 on a big-endian one.
	port := ":" + strings.ToUpper(strconv.FormatInt(int64(s.port), 16))
	for len(port) < 5 {
		port = ":0" + port[1:]
	}
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[3] != "02" {
			continue
		}
		if fields[2] == "0100007F"+port || fields[2] == "7F000001"+port {
			n++
		}
	}
	return n, sc.Err()
}

// Close closes the listener and the connections that filled it: connects still
// waiting are refused at their next SYN.
func (s *Silent) Close() error {
	for _, c := range s.fill {
		_ = c.Close()
	}
	s.fill = nil
	return s.ln.Close()
}
