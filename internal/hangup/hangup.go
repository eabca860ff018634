// Package hangup tells when the peer of a connection hangs up, without reading from
// the connection.
//
// A request that waits (for a slot in a backend's queue, out an upstream's
// Retry-After) has no read or write under way on its client's connection, so nothing
// sees the client leave until the answer is written, by which time the request has
// gone upstream for nobody. Reading the connection to find out would take the
// client's next request, when it pipelines one, and needs a goroutine per request.
// Instead one epoll instance, made on first use, holds the watched sockets with
// EPOLLRDHUP|EPOLLONESHOT (not EPOLLIN: a next request arriving is no hang-up), and
// one goroutine waits on it for the whole process. A watch costs two epoll_ctl calls;
// a connection never watched costs nothing.
//
// A peer that shuts down only its sending side (a half-close) counts as gone, as
// nginx counts it: an HTTP client that has sent its request and half-closes is not
// going to send anything else, and most such clients have given up. On systems other
// than Linux a watch never fires.
package hangup

import (
	"net"
	"syscall"

	"github.com/tollgate/tollgate/internal/connwrap"
)

// Watch is the watch of one connection. Its zero value is ready to use, and it can be
// started again once stopped; it is not for concurrent use. Its channel is made by
// its first Start and kept for the next ones, so that a Watch kept in a pooled
// struct does not allocate one per watch.
type Watch struct {
	ch chan struct{}
	rc syscall.RawConn
	id uint64
}

// rawConn finds the socket under c: through wrappers that give the connection they
// wrap (NetConn, as *tls.Conn and the gateway's own wrappers have it) down to a
// syscall.Conn. It returns nil when there is none (a pipe, a test's fake).
func rawConn(c net.Conn) syscall.RawConn {
	sc, ok := connwrap.Under[syscall.Conn](c)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}
