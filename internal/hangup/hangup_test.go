//go:build linux

package hangup

import (
	"crypto/tls"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tollgate/tollgate/internal/testcert"
)

// pair is a connected socket pair: srv is watched, peer hangs up or not.
type pair struct {
	srv, peer net.Conn
}

// dialPair connects over network ("tcp" on loopback, or "unix").
func dialPair(t *testing.T, network string) pair {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "s")
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close(); _ = peer.Close() })
	return pair{srv, peer}
}

// fired waits up to a few seconds for ch to receive.
func fired(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-time.After(5 * time.Second):
		return false
	}
}

// quiet reports whether ch holds no signal.
func quiet(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return false
	default:
		return true
	}
}

// fence makes sure the poller has handled every event that came before it: a watch
// of a fresh pair whose peer closes at once fires after those.
func fence(t *testing.T) {
	t.Helper()
	p := dialPair(t, "tcp")
	var w Watch
	ch := w.Start(p.srv)
	_ = p.peer.Close()
	if !fired(ch) {
		t.Fatal("the fence watch did not fire")
	}
	w.Stop()
}

func halfClose(t *testing.T, c net.Conn) {
	t.Helper()
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
}

func TestWatchFiresWhenThePeerHangsUp(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		cases := []struct {
			name   string
			hangUp func(t *testing.T, p pair)
		}{
			{"close", func(t *testing.T, p pair) { _ = p.peer.Close() }},
			{"half-close", func(t *testing.T, p pair) { halfClose(t, p.peer) }},
			{"close with unread data", func(t *testing.T, p pair) {
				_, _ = p.peer.Write([]byte("POST /v1/chat/completions HTTP/1.1\r\n"))
				_ = p.peer.Close()
			}},
		}
		if network == "tcp" {
			cases = append(cases, struct {
				name   string
				hangUp func(t *testing.T, p pair)
			}{"reset", func(t *testing.T, p pair) {
				_ = p.peer.(*net.TCPConn).SetLinger(0)
				_ = p.peer.Close()
			}})
		}
		for _, tc := range cases {
			t.Run(network+" "+tc.name, func(t *testing.T) {
				p := dialPair(t, network)
				var w Watch
				ch := w.Start(p.srv)
				if ch == nil {
					t.Fatal("a socket was not watched")
				}
				defer w.Stop()
				tc.hangUp(t, p)
				if !fired(ch) {
					t.Fatal("no signal after the peer hung up")
				}
			})
		}
	}
}

// A connection whose peer left before the watch began is reported at once: epoll
// reports the readiness a socket already has when it is added.
func TestWatchFiresAtOnceForAPeerAlreadyGone(t *testing.T) {
	for _, tc := range []struct {
		name   string
		hangUp func(t *testing.T, p pair)
	}{
		{"closed", func(t *testing.T, p pair) { _ = p.peer.Close() }},
		{"half-closed", func(t *testing.T, p pair) { halfClose(t, p.peer) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := dialPair(t, "tcp")
			tc.hangUp(t, p)
			// The server side sees the end of the stream: the FIN has arrived.
			if n, err := p.srv.Read(make([]byte, 1)); n != 0 || err != io.EOF {
				t.Fatalf("read %d, %v; want EOF", n, err)
			}
			var w Watch
			ch := w.Start(p.srv)
			defer w.Stop()
			if !fired(ch) {
				t.Fatal("no signal for a peer gone before the watch")
			}
		})
	}
}

// Data from the peer (a pipelined next request) is no hang-up, read or not.
func TestWatchIgnoresData(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			p := dialPair(t, network)
			var w Watch
			ch := w.Start(p.srv)
			defer w.Stop()
			if _, err := p.peer.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
				t.Fatal(err)
			}
			// Once one byte is read the data has arrived; the rest stays unread.
			if _, err := io.ReadFull(p.srv, make([]byte, 1)); err != nil {
				t.Fatal(err)
			}
			fence(t)
			if !quiet(ch) {
				t.Fatal("data from the peer fired the watch")
			}
			_ = p.peer.Close()
			if !fired(ch) {
				t.Fatal("the watch stopped watching after data came")
			}
		})
	}
}

func TestWatchStop(t *testing.T) {
	t.Run("before the peer hangs up", func(t *testing.T) {
		p := dialPair(t, "tcp")
		var w Watch
		ch := w.Start(p.srv)
		w.Stop()
		_ = p.peer.Close()
		fence(t)
		if !quiet(ch) {
			t.Fatal("a stopped watch fired")
		}
		w.Stop() // twice does nothing
	})
	t.Run("after it fired, the next start sees no stale signal", func(t *testing.T) {
		gone, live := dialPair(t, "tcp"), dialPair(t, "tcp")
		var w Watch
		ch := w.Start(gone.srv)
		_ = gone.peer.Close()
		if !fired(ch) {
			t.Fatal("no signal")
		}
		w.Stop()
		// A second signal may have been pending (EPOLLHUP after RDHUP): Stop drops it.
		ch = w.Start(live.srv)
		defer w.Stop()
		fence(t)
		if !quiet(ch) {
			t.Fatal("the watch of a live connection fired")
		}
		_ = live.peer.Close()
		if !fired(ch) {
			t.Fatal("a restarted watch did not fire")
		}
	})
	t.Run("after the connection was closed", func(t *testing.T) {
		p := dialPair(t, "tcp")
		var w Watch
		if w.Start(p.srv) == nil {
			t.Fatal("not watched")
		}
		_ = p.srv.Close()
		w.Stop()
	})
	t.Run("never started", func(t *testing.T) {
		var w Watch
		w.Stop()
	})
}

func TestWatchUnderTLS(t *testing.T) {
	p := dialPair(t, "tcp")
	cert := testcert.SelfSigned(t)
	srv := tls.Server(p.srv, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	cli := tls.Client(p.peer, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
	errc := make(chan error, 1)
	go func() { errc <- cli.Handshake() }()
	if err := srv.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	var w Watch
	ch := w.Start(srv)
	if ch == nil {
		t.Fatal("a TLS connection was not watched")
	}
	defer w.Stop()
	// Application data is no hang-up under TLS either.
	if _, err := cli.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(srv, make([]byte, 5)); err != nil {
		t.Fatal(err)
	}
	fence(t)
	if !quiet(ch) {
		t.Fatal("TLS data fired the watch")
	}
	_ = cli.Close()
	if !fired(ch) {
		t.Fatal("no signal after the TLS client closed")
	}
}

// A connection that is no socket, or one wrapped by something that does not say what
// it wraps, is not watched: the nil channel never fires.
func TestWatchWithoutASocket(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	var w Watch
	if ch := w.Start(a); ch != nil {
		t.Fatal("a pipe got a channel")
	}
	w.Stop()
	p := dialPair(t, "tcp")
	if ch := w.Start(opaque{p.srv}); ch != nil {
		t.Fatal("an opaque wrapper got a channel")
	}
}

type opaque struct{ net.Conn }

// wrapped says what it wraps, as the gateway's connection wrappers do.
type wrapped struct{ net.Conn }

func (c wrapped) NetConn() net.Conn { return c.Conn }

func TestWatchUnwrapsConnections(t *testing.T) {
	p := dialPair(t, "tcp")
	var w Watch
	ch := w.Start(wrapped{wrapped{p.srv}})
	if ch == nil {
		t.Fatal("a wrapped socket was not watched")
	}
	defer w.Stop()
	_ = p.peer.Close()
	if !fired(ch) {
		t.Fatal("no signal")
	}
}

// Many watches started, fired and stopped at once each fire for their own connection
// only, and watching starts no goroutine past the poller's one.
func TestWatchManyAtOnce(t *testing.T) {
	fence(t) // the poller runs before the goroutines are counted
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const n = 64
	pairs := make([]pair, n)
	for i := range pairs {
		pairs[i] = dialPair(t, "tcp")
	}
	ws := make([]Watch, n)
	chs := make([]<-chan struct{}, n)
	each := func(f func(i int)) {
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { f(i) })
		}
		wg.Wait()
	}
	each(func(i int) {
		for range 3 { // a Watch is reused
			ws[i].Start(pairs[i].srv)
			ws[i].Stop()
		}
		chs[i] = ws[i].Start(pairs[i].srv)
	})
	for i, ch := range chs {
		if ch == nil {
			t.Fatalf("connection %d not watched", i)
		}
	}
	// The even ones hang up while the odd ones stay.
	lost := make([]bool, n)
	each(func(i int) {
		if i%2 == 0 {
			_ = pairs[i].peer.Close()
			lost[i] = !fired(chs[i])
		}
	})
	fence(t)
	for i := range n {
		if i%2 == 0 && lost[i] {
			t.Errorf("connection %d: no signal after its peer closed", i)
		}
		if i%2 == 1 && !quiet(chs[i]) {
			t.Errorf("connection %d: fired while its peer stayed", i)
		}
	}
	each(func(i int) { ws[i].Stop() })
	if p := thePoller; p != nil {
		p.mu.Lock()
		left := len(p.watches)
		p.mu.Unlock()
		if left != 0 {
			t.Errorf("%d watches left registered", left)
		}
	}
}
