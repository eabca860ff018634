package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// acceptErr is an accept error as the net package returns it.
func acceptErr(errno syscall.Errno) error {
	return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}
}

// scriptedListener's Accept returns its errors in turn, then waits for a connection
// (nil: net.ErrClosed once closed).
type scriptedListener struct {
	mu     sync.Mutex
	errs   []error
	calls  int
	conn   net.Conn
	closed chan struct{}
}

func (l *scriptedListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	l.calls++
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		l.mu.Unlock()
		return nil, err
	}
	l.mu.Unlock()
	if l.conn != nil {
		return l.conn, nil
	}
	<-l.closed
	return nil, &net.OpError{Op: "accept", Net: "tcp", Err: net.ErrClosed}
}

func (l *scriptedListener) Close() error   { close(l.closed); return nil }
func (l *scriptedListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// Accept errors that say a resource is short for a moment (the open-file limit above
// all) are waited out and retried, with one warning for the whole episode: the
// listener goes on, as nginx's and net/http's do, instead of ending the server.
func TestAcceptRetriesPassingErrors(t *testing.T) {
	t.Parallel()
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		t.Run(errno.Error(), func(t *testing.T) {
			c1, c2 := net.Pipe()
			t.Cleanup(func() { c1.Close(); c2.Close() })
			inner := &scriptedListener{errs: []error{acceptErr(errno), acceptErr(errno), acceptErr(errno)}, conn: c1, closed: make(chan struct{})}
			logs := &syncBuffer{}
			l := newAcceptRetry(inner, "api", slogTo(logs))
			c, err := l.Accept()
			if err != nil || c != c1 {
				t.Fatalf("Accept after three %v: %v, %v; want the connection", errno, c, err)
			}
			if n := strings.Count(logs.String(), `"level":"WARN"`); n != 1 {
				t.Errorf("%d warnings for one episode of three retries, want 1:\n%s", n, logs)
			}
			if !strings.Contains(logs.String(), "accepting connections again") {
				t.Errorf("the end of the episode not logged:\n%s", logs)
			}
		})
	}
}

// Any other accept error ends the listener at once, as before.
func TestAcceptReturnsPermanentError(t *testing.T) {
	inner := &scriptedListener{errs: []error{acceptErr(syscall.EINVAL)}, closed: make(chan struct{})}
	l := newAcceptRetry(inner, "api", slogTo(io.Discard))
	if _, err := l.Accept(); !errors.Is(err, syscall.EINVAL) || inner.calls != 1 {
		t.Errorf("Accept on EINVAL: %v after %d calls, want EINVAL at once", err, inner.calls)
	}
}

// Closing the listener ends a wait between retries: a shutdown does not wait for the
// backoff (fasthttp's drain waits for its accept loop).
func TestAcceptRetryEndsOnClose(t *testing.T) {
	t.Parallel()
	errs := make([]error, 100)
	for i := range errs {
		errs[i] = acceptErr(syscall.EMFILE)
	}
	inner := &scriptedListener{errs: errs, closed: make(chan struct{})}
	l := newAcceptRetry(inner, "api", slogTo(io.Discard))
	done := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		done <- err
	}()
	// The backoff is at 640 ms by now.
	time.Sleep(700 * time.Millisecond)
	closed := time.Now()
	_ = l.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
		}
		if d := time.Since(closed); d > 300*time.Millisecond {
			t.Errorf("Accept returned %v after Close, want at once", d)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Accept still retrying 3s after Close")
	}
}

// Under a steady inflow at the open-file limit, every connection that closes lets one
// more in and the next accept fails again: an episode each. One warning per
// acceptWarnEvery, counting the episodes it did not log.
func TestAcceptRetryWarningRateLimited(t *testing.T) {
	logs := &syncBuffer{}
	l := newAcceptRetry(nil, "api", slogTo(logs))
	t0 := time.Unix(1_000_000, 0)
	err := acceptErr(syscall.EMFILE)
	for i, c := range []struct {
		at   time.Duration
		want bool
	}{{0, true}, {time.Second, false}, {5 * time.Second, false}, {acceptWarnEvery + time.Second, true}} {
		at := t0.Add(c.at)
		if got := l.warn(err, at, at); got != c.want {
			t.Errorf("episode %d at +%v: warned %v, want %v", i, c.at, got, c.want)
		}
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], `"episodes_not_logged":2`) {
		t.Errorf("warnings:\n%s\nwant two, the second counting the 2 episodes not logged", logs)
	}
}

// An episode begun within acceptWarnEvery of the last warning is warned once that
// has passed, on a later retry, however long it lasts: not counted among the
// episodes not logged, since it is.
func TestAcceptRetryWarnsEpisodeBegunWithinWindowLater(t *testing.T) {
	logs := &syncBuffer{}
	l := newAcceptRetry(nil, "api", slogTo(logs))
	t0 := time.Unix(1_000_000, 0)
	err := acceptErr(syscall.EMFILE)
	began := t0.Add(9 * time.Second)
	for i, c := range []struct {
		began, at time.Time
		want      bool
	}{
		{t0, t0, true},
		{began, began, false},
		{began, t0.Add(acceptWarnEvery - time.Millisecond), false},
		{began, t0.Add(acceptWarnEvery + time.Second), true},
	} {
		if got := l.warn(err, c.began, c.at); got != c.want {
			t.Errorf("call %d at +%v: warned %v, want %v", i, c.at.Sub(t0), got, c.want)
		}
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], `"episodes_not_logged":0`) || !strings.Contains(lines[1], `"failing_for":"2s"`) {
		t.Errorf("warnings:\n%s\nwant two, the second of the episode failing for 2s, none not logged", logs)
	}
}

// failingUntil's Accept fails with EMFILE until until, then returns conn.
type failingUntil struct {
	net.Listener
	until time.Time
	conn  net.Conn
}

func (l *failingUntil) Accept() (net.Conn, error) {
	if time.Now().Before(l.until) {
		return nil, acceptErr(syscall.EMFILE)
	}
	return l.conn, nil
}

// Accept warns of an episode begun 9.8 s after the last warning once the 10 s have
// passed, while it retries: the log does not end on "accepting connections again"
// with the listener accepting nothing since.
func TestAcceptRetryWarnsDuringEpisodeBegunWithinWindow(t *testing.T) {
	t.Parallel()
	c1, c2 := net.Pipe()
	t.Cleanup(func() { c1.Close(); c2.Close() })
	logs := &syncBuffer{}
	l := newAcceptRetry(&failingUntil{conn: c1, until: time.Now().Add(1200 * time.Millisecond)}, "api", slogTo(logs))
	l.warned.Store(time.Now().Add(-acceptWarnEvery + 200*time.Millisecond).UnixNano())
	if c, err := l.Accept(); err != nil || c != c1 {
		t.Fatalf("Accept: %v, %v", c, err)
	}
	if !strings.Contains(logs.String(), `"level":"WARN"`) {
		t.Errorf("an episode of accept failures still going 1 s past the 10 s warning window logged nothing:\n%s", logs)
	}
}

// failOnTrigger is a listener whose next accept, once fail is closed, fails for good.
type failOnTrigger struct {
	net.Listener
	fail chan struct{}
}

func (l *failOnTrigger) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	select {
	case <-l.fail:
		if c != nil {
			_ = c.Close()
		}
		return nil, acceptErr(syscall.EINVAL)
	default:
	}
	return c, err
}

// A listener that fails for good stops the server, but after the drain a stop asked
// for makes: the request in flight gets its answer, and Serve returns the error.
func TestServeDrainsWhenListenerFails(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tollgate.yaml")
	putFile(t, path, []byte(`server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 10s}
backends:
  slow: {provider: mock, model: m, mock: {ttft: 1s, max_tokens: 2}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: slow}]}
logging: {level: info, access_log: false}
`))
	logs := &syncBuffer{}
	s, err := New(path, Options{Logger: slogTo(logs)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	fail := &failOnTrigger{Listener: s.apiLn, fail: make(chan struct{})}
	s.apiLn = fail
	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background()) }()
	answered := make(chan string, 1)
	go func() {
		resp, err := http.Post("http://"+s.Addr()+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"chat","messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			answered <- err.Error()
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		answered <- resp.Status
	}()
	time.Sleep(300 * time.Millisecond)
	close(fail.fail)
	// Wakes the accept, which then fails.
	if c, err := net.Dial("tcp", s.Addr()); err == nil {
		c.Close()
	}
	select {
	case st := <-answered:
		if st != "200 OK" {
			t.Errorf("request in flight when the listener failed: %s, want 200 OK", st)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("request in flight when the listener failed: no answer in 5s")
	}
	select {
	case err := <-served:
		if !errors.Is(err, syscall.EINVAL) {
			t.Errorf("Serve returned %v, want the listener's error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve still running 5s after its listener failed")
	}
	if !strings.Contains(logs.String(), "listener failed; draining") || !strings.Contains(logs.String(), "shutting down") {
		t.Errorf("the failure and the drain not logged:\n%s", logs)
	}
}

// An API listener that ends under Serve without an error (fasthttp's Serve returns
// nil) stops the server after the drain a stop asked for makes: shutdown's second
// Close of the listener is no expiry of the grace, and a stream in flight, 1 s long
// with a 10 s grace, runs to its end.
func TestServeDrainsStreamsWhenListenerEnds(t *testing.T) {
	t.Parallel()
	g := startGateway(t, `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 10s}
backends:
  slow: {provider: mock, model: m, mock: {ttft: 10ms, tpot: 100ms, max_tokens: 10}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: slow}]}
logging: {level: info, access_log: false}
`)
	resp, err := http.Post(g.url+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatalf("first line of the stream: %v", err)
	}
	_ = g.apiLn.Close()
	rest, _ := io.ReadAll(br)
	if !strings.Contains(string(rest), "data: [DONE]") {
		t.Errorf("stream in flight when the API listener ended: cut before [DONE] (grace 10s)\nstream tail: %q\nlogs:\n%s",
			rest[max(len(rest)-200, 0):], logLinesWith(g.logs.String(), "WARN"))
	}
	if strings.Contains(g.logs.String(), "grace expired") {
		t.Errorf("the drain after the listener ended logged the grace expired:\n%s", logLinesWith(g.logs.String(), "grace"))
	}
}
