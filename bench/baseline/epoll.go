//go:build linux

package main

import (
	"bytes"
	"errors"
	"net"
	"runtime"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// maxMessage bounds a request held while it arrives; a larger one closes the
// connection.
const maxMessage = 8 << 20

// epollProxy is the event-loop stack: loops share nothing but the port.
type epollProxy struct {
	addr  *net.TCPAddr
	loops []*loop
	wg    sync.WaitGroup
}

type loop struct {
	s      settings
	ep     int
	lfd    int
	stop   int // eventfd: Close writes to it
	up     unix.Sockaddr
	conns  []*conn // by fd
	rbuf   []byte  // an upstream's answer, read and passed on at once
	out    []byte  // a rewritten request
	events []unix.EpollEvent
}

type conn struct {
	fd     int
	client bool // the client's side; the other is its upstream
	peer   *conn
	in     []byte // client: a request not yet whole
	out    []byte // what the socket would not take yet
}

func sockaddr(addr string) (*unix.SockaddrInet4, error) {
	ta, err := net.ResolveTCPAddr("tcp4", addr)
	if err != nil {
		return nil, err
	}
	sa := &unix.SockaddrInet4{Port: ta.Port}
	if ta.IP != nil {
		copy(sa.Addr[:], ta.IP.To4())
	}
	return sa, nil
}

func listenReusePort(sa *unix.SockaddrInet4) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err == nil {
		err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}
	if err == nil {
		err = unix.Bind(fd, sa)
	}
	if err == nil {
		err = unix.Listen(fd, 4096)
	}
	if err != nil {
		_ = unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// startEpoll binds n listeners to s.listen (port 0 picks one port for all) and runs
// one loop on each, each on a thread of its own.
func startEpoll(s settings, n int) (*epollProxy, error) {
	sa, err := sockaddr(s.listen)
	if err != nil {
		return nil, err
	}
	up, err := sockaddr(s.upstream)
	if err != nil {
		return nil, err
	}
	p := &epollProxy{}
	for i := range max(n, 1) {
		// Each loop has its own upstream address: Connect writes into it.
		upCopy := *up
		l := &loop{s: s, up: &upCopy, ep: -1, lfd: -1, stop: -1,
			rbuf: make([]byte, 16<<10), events: make([]unix.EpollEvent, 256)}
		p.loops = append(p.loops, l)
		if l.ep, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
			break
		}
		if l.lfd, err = listenReusePort(sa); err != nil {
			break
		}
		if i == 0 {
			got, gerr := unix.Getsockname(l.lfd)
			if gerr != nil {
				err = gerr
				break
			}
			sa.Port = got.(*unix.SockaddrInet4).Port
			p.addr = &net.TCPAddr{IP: net.IP(sa.Addr[:]).To16(), Port: sa.Port}
		}
		if l.stop, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
			break
		}
		if err = l.watch(l.lfd, unix.EPOLLIN); err != nil {
			break
		}
		if err = l.watch(l.stop, unix.EPOLLIN); err != nil {
			break
		}
	}
	if err != nil {
		for _, l := range p.loops {
			l.closeAll()
		}
		return nil, err
	}
	for _, l := range p.loops {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			l.run()
		}()
	}
	return p, nil
}

// Close stops every loop and closes every connection.
func (p *epollProxy) Close() {
	one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	for _, l := range p.loops {
		_, _ = unix.Write(l.stop, one)
	}
	p.wg.Wait()
}

// serveEpoll runs the event-loop stack until a loop fails.
func serveEpoll(s settings, n int) error {
	p, err := startEpoll(s, n)
	if err != nil {
		return err
	}
	p.wg.Wait()
	return errors.New("event loops stopped")
}

func (l *loop) watch(fd int, events uint32) error {
	return unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: events, Fd: int32(fd)})
}

func (l *loop) closeAll() {
	for _, c := range l.conns {
		if c != nil {
			_ = unix.Close(c.fd)
		}
	}
	l.conns = nil
	for _, fd := range []int{l.lfd, l.stop, l.ep} {
		if fd >= 0 {
			_ = unix.Close(fd)
		}
	}
}

func (l *loop) run() {
	runtime.LockOSThread()
	defer l.closeAll()
	for {
		n, err := unix.EpollWait(l.ep, l.events, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return
		}
		for _, ev := range l.events[:n] {
			fd := int(ev.Fd)
			switch {
			case fd == l.stop:
				return
			case fd == l.lfd:
				l.accept()
				continue
			}
			if fd >= len(l.conns) || l.conns[fd] == nil {
				continue
			}
			c := l.conns[fd]
			if ev.Events&unix.EPOLLOUT != 0 && !l.flush(c) {
				l.drop(c)
				continue
			}
			if ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				l.readable(c)
			}
		}
	}
}

func (l *loop) accept() {
	for {
		fd, _, err := unix.Accept4(l.lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err == unix.EINTR || err == unix.ECONNABORTED {
			continue
		}
		if err != nil {
			return // EAGAIN: all taken; anything else: try again on the next event
		}
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		ufd, err := l.dial()
		if err != nil {
			_ = unix.Close(fd)
			continue
		}
		c := &conn{fd: fd, client: true, in: make([]byte, 0, 4096)}
		u := &conn{fd: ufd}
		c.peer, u.peer = u, c
		if l.add(c) != nil || l.add(u) != nil {
			l.drop(c)
		}
	}
}

// dial connects to the upstream from the loop's thread; on loopback that returns at
// once, which is all a measuring stick needs.
func (l *loop) dial() (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err = unix.Connect(fd, l.up); err == nil {
		err = unix.SetNonblock(fd, true)
	}
	if err == nil {
		err = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	}
	if err != nil {
		_ = unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func (l *loop) add(c *conn) error {
	for c.fd >= len(l.conns) {
		l.conns = append(l.conns, nil)
	}
	l.conns[c.fd] = c
	return l.watch(c.fd, unix.EPOLLIN|unix.EPOLLRDHUP)
}

// drop closes a connection and its peer.
func (l *loop) drop(c *conn) {
	for _, x := range [2]*conn{c, c.peer} {
		if x != nil && x.fd < len(l.conns) && l.conns[x.fd] == x {
			l.conns[x.fd] = nil
			_ = unix.Close(x.fd)
		}
	}
}

// readable reads once (a level-triggered event comes back if more is there): a
// client's bytes are framed into requests, an upstream's go straight to its client.
func (l *loop) readable(c *conn) {
	buf := l.rbuf
	if c.client {
		if len(c.in) == cap(c.in) {
			if len(c.in) >= maxMessage {
				l.drop(c)
				return
			}
			c.in = append(c.in, make([]byte, len(c.in))...)[:len(c.in)]
		}
		buf = c.in[len(c.in):cap(c.in)]
	}
	n, err := unix.Read(c.fd, buf)
	if err == unix.EAGAIN || err == unix.EINTR {
		return
	}
	if err != nil || n == 0 {
		l.drop(c)
		return
	}
	if !c.client {
		if !l.send(c.peer, buf[:n]) {
			l.drop(c)
		}
		return
	}
	c.in = c.in[:len(c.in)+n]
	start := 0
	for start < len(c.in) {
		m := messageLen(c.in[start:])
		if m < 0 {
			l.drop(c)
			return
		}
		if m == 0 {
			break
		}
		if !l.send(c.peer, l.rewrite(c.in[start:start+m])) {
			l.drop(c)
			return
		}
		start += m
	}
	c.in = c.in[:copy(c.in, c.in[start:])]
}

// send writes p to c, keeping what the socket does not take for its EPOLLOUT.
func (l *loop) send(c *conn, p []byte) bool {
	if len(c.out) > 0 {
		c.out = append(c.out, p...)
		return true
	}
	for len(p) > 0 {
		n, err := unix.Write(c.fd, p)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			c.out = append(c.out, p...)
			return unix.EpollCtl(l.ep, unix.EPOLL_CTL_MOD, c.fd,
				&unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP, Fd: int32(c.fd)}) == nil
		}
		if err != nil {
			return false
		}
		p = p[n:]
	}
	return true
}

// flush writes what send kept back; false when the connection failed.
func (l *loop) flush(c *conn) bool {
	for len(c.out) > 0 {
		n, err := unix.Write(c.fd, c.out)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			return true
		}
		if err != nil {
			return false
		}
		c.out = c.out[:copy(c.out, c.out[n:])]
	}
	return unix.EpollCtl(l.ep, unix.EPOLL_CTL_MOD, c.fd,
		&unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(c.fd)}) == nil
}

var (
	crlf          = []byte("\r\n")
	headEnd       = []byte("\r\n\r\n")
	contentLength = []byte("content-length:")
	transferEnc   = []byte("transfer-encoding:")
)

// messageLen is the length of the whole request at the start of b: 0 while it is
// incomplete, -1 when it cannot be framed (a chunked body, a bad length).
func messageLen(b []byte) int {
	end := bytes.Index(b, headEnd)
	if end < 0 {
		if len(b) > 64<<10 {
			return -1
		}
		return 0
	}
	length := 0
	for h := b[:end]; len(h) > 0; {
		line := h
		if i := bytes.Index(h, crlf); i >= 0 {
			line, h = h[:i], h[i+2:]
		} else {
			h = nil
		}
		switch {
		case hasPrefixFold(line, contentLength):
			v, err := strconv.Atoi(string(bytes.TrimSpace(line[len(contentLength):])))
			if err != nil || v < 0 || v > maxMessage {
				return -1
			}
			length = v
		case hasPrefixFold(line, transferEnc):
			return -1
		}
	}
	if len(b) < end+4+length {
		return 0
	}
	return end + 4 + length
}

func hasPrefixFold(b, prefix []byte) bool {
	return len(b) >= len(prefix) && bytes.EqualFold(b[:len(prefix)], prefix)
}

// rewrite returns msg with its model rewritten and Content-Length set to match, in
// the loop's out buffer, or msg itself when the model is not an endpoint's name.
func (l *loop) rewrite(msg []byte) []byte {
	end := bytes.Index(msg, headEnd)
	body := msg[end+4:]
	i, j, to, ok := modelSpan(body, l.s.rewrites)
	if !ok {
		return msg
	}
	out := l.out[:0]
	for h := msg[:end+2]; len(h) > 0; {
		i := bytes.Index(h, crlf)
		line := h[:i+2]
		h = h[i+2:]
		if !hasPrefixFold(line, contentLength) {
			out = append(out, line...)
		}
	}
	out = append(out, "Content-Length: "...)
	out = strconv.AppendInt(out, int64(len(body)-(j-i)+len(to)), 10)
	out = append(out, headEnd...)
	out = append(out, body[:i]...)
	out = append(out, to...)
	out = append(out, body[j:]...)
	l.out = out
	return out
}
