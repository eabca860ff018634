package hangup

import (
	"net"
	"sync"
	"syscall"
)

// poller is the process's one epoll instance and what its watches are for. A
// watch's epoll data is its registration ID, not its file descriptor: a descriptor
// closed and reused by another connection must not fire the new one's watch.
type poller struct {
	epfd    int
	mu      sync.Mutex
	next    uint64
	watches map[uint64]chan struct{}
}

// The poller is the process's, as the runtime's own netpoller is: one epoll set and
// one blocked thread serve every connection whatever config or server it belongs to.
var (
	pollOnce sync.Once
	// thePoller is nil when no epoll instance could be made: watches then never fire.
	thePoller *poller
)

func getPoller() *poller {
	pollOnce.Do(func() {
		fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			return
		}
		thePoller = &poller{epfd: fd, watches: map[uint64]chan struct{}{}}
		go thePoller.run()
	})
	return thePoller
}

// events are those a watch asks for. EPOLLHUP and EPOLLERR come without asking.
// ONESHOT: once the peer has gone the socket stays ready, and level-triggered it
// would wake the poller on every wait until the watch is stopped.
const events = syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// run waits on the epoll instance for good, signalling the watch of each socket
// whose peer hung up. It blocks one thread in epoll_wait, which is the cost of
// keeping the sockets out of the runtime's own poller, where nothing but a read
// could ask after them.
func (p *poller) run() {
	var evs [64]syscall.EpollEvent
	for {
		n, err := syscall.EpollWait(p.epfd, evs[:], -1)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			return
		}
		p.mu.Lock()
		for _, ev := range evs[:n] {
			// Sent under the lock, so that once Stop has removed the watch nothing
			// is sent to its channel any more.
			if ch := p.watches[idOf(&ev)]; ch != nil {
				select {
				case ch <- struct{}{}:
				default:
				}
			}
		}
		p.mu.Unlock()
	}
}

func idOf(ev *syscall.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

// Start watches c for its peer hanging up (closing the connection, shutting down its
// sending side, resetting it) and returns a channel that receives once when it does;
// a peer already gone makes it receive at once. It returns nil, a channel that never
// receives, when c is no socket or cannot be watched. Stop must follow a Start that
// returned a channel.
func (w *Watch) Start(c net.Conn) <-chan struct{} {
	rc := rawConn(c)
	if rc == nil {
		return nil
	}
	p := getPoller()
	if p == nil {
		return nil
	}
	if w.ch == nil {
		w.ch = make(chan struct{}, 1)
	}
	p.mu.Lock()
	p.next++
	id := p.next
	p.watches[id] = w.ch
	p.mu.Unlock()
	ev := syscall.EpollEvent{Events: events, Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
	var cerr error
	// Inside Control the descriptor cannot be closed, and so not reused, meanwhile.
	err := rc.Control(func(fd uintptr) {
		cerr = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		p.forget(id, w.ch)
		return nil
	}
	w.rc, w.id = rc, id
	return w.ch
}

// Stop ends the watch; a signal it gave and nobody took is dropped. Stopping a watch
// not started, or stopped already, does nothing.
func (w *Watch) Stop() {
	if w.rc == nil {
		return
	}
	p := thePoller
	// A connection closed meanwhile fails Control and has left the epoll set with
	// its last descriptor; ENOENT and EBADF say it is gone from the set already.
	_ = w.rc.Control(func(fd uintptr) {
		_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
	})
	p.forget(w.id, w.ch)
	w.rc, w.id = nil, 0
}

// forget removes watch id and drops its channel's signal, if any: the channel serves
// the Watch's next Start.
func (p *poller) forget(id uint64, ch chan struct{}) {
	p.mu.Lock()
	delete(p.watches, id)
	p.mu.Unlock()
	select {
	case <-ch:
	default:
	}
}
