package providers

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// heldUpstream answers every request on a connection after delay, never one whose
// body says "hold", and records when the gateway closed a connection whose answer it was
// still working on.
type heldUpstream struct {
	addr     string
	delay    time.Duration
	got      atomic.Int64
	answered atomic.Int64
	// abandoned receives once for each connection closed under a request not yet
	// answered.
	abandoned chan struct{}
}

func startHeldUpstream(t *testing.T, delay time.Duration) *heldUpstream {
	t.Helper()
	u := &heldUpstream{delay: delay, abandoned: make(chan struct{}, 16)}
	u.addr = serveRaw(t, nil, u.serve)
	return u
}

func (u *heldUpstream) url() string { return "http://" + u.addr + "/v1" }

func (u *heldUpstream) serve(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, _ := io.ReadAll(req.Body)
		u.got.Add(1)
		// While it "generates", the only thing it can hear is the connection closing.
		closed := make(chan struct{})
		go func() {
			_, _ = br.Peek(1)
			close(closed)
		}()
		var due <-chan time.Time
		if !strings.Contains(string(body), "hold") {
			due = time.After(u.delay)
		}
		select {
		case <-closed:
			u.abandoned <- struct{}{}
			return
		case <-due:
		}
		answer := `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`
		u.answered.Add(1)
		_, err = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(answer))+"\r\n\r\n"+answer)
		if err != nil {
			return
		}
		<-closed // nothing else is pipelined: the next request comes after this answer
		if _, err := br.Peek(1); err != nil {
			return
		}
	}
}

// A non-streamed call whose client hangs up while the upstream works on its request
// ends soon after with ErrClientLeftUpstream (ErrClientGone too), closing the upstream
// connection, which is how an HTTP upstream such as vLLM learns to stop generating.
// The attempt says nothing of the upstream and its slot frees at once.
func TestHungUpCallAbortsItsUpstreamRequest(t *testing.T) {
	setForTest(t, &clientCheckEvery, 20*time.Millisecond)
	u := startHeldUpstream(t, 0)
	b := newPoolBackend(t, Config{BaseURL: u.url(), MaxConcurrency: 1,
		Queue: QueueConfig{Size: 4, Timeout: time.Minute}, Timeout: time.Minute}, nil)
	// A connection that has served: a failure before its next answer's first byte
	// is one fasthttp may send again, which a hang-up must not be.
	if _, err := sendOnce(b, promptCall("first", false)); err != nil {
		t.Fatal(err)
	}
	client := newTestClient()
	call := promptCall("hold", false)
	call.Client = client
	done := sendAsync(b, call)
	waitUntil(t, "the upstream has the request", func() bool { return u.got.Load() == 2 })
	waitUntil(t, "the client is watched", func() bool { return client.watching.Load() == 1 })
	began := time.Now()
	client.hangUp()
	var r sent
	select {
	case r = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the call still waits for its answer after its client hung up")
	}
	if !errors.Is(r.err, ErrClientLeftUpstream) || !errors.Is(r.err, ErrClientGone) {
		t.Fatalf("got %v, want ErrClientLeftUpstream", r.err)
	}
	t.Logf("ended %v after the hang-up", time.Since(began))
	select {
	case <-u.abandoned:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream connection stayed open under the abandoned request")
	}
	if judged, failed := Judge(r.err); judged || failed {
		t.Errorf("Judge = %v, %v; want nothing said of the upstream", judged, failed)
	}
	if n := client.watching.Load(); n != 0 {
		t.Errorf("%d watches still running", n)
	}
	// The slot (max_concurrency 1) is free: a call now is sent at once, and the
	// target is still in service.
	if _, err := sendOnce(b, promptCall("next", false)); err != nil {
		t.Fatalf("next call: %v", err)
	}
	if n := u.got.Load(); n != 3 {
		t.Errorf("the upstream got %d requests, want 3: the abandoned one was sent again", n)
	}
}

// A client that stays gets its answer: the watch starts once the upstream has been
// silent a while, and ends with the attempt; an answer that comes sooner never
// starts it. The connection goes back to the pool without the call's hook: a later
// call on it, not watched, is never asked about that client.
func TestWatchedCallWhoseClientStaysIsAnswered(t *testing.T) {
	setForTest(t, &clientCheckEvery, 20*time.Millisecond)
	t.Run("slow answer", func(t *testing.T) {
		u := startHeldUpstream(t, 200*time.Millisecond)
		b := newPoolBackend(t, Config{BaseURL: u.url(), Timeout: time.Minute}, nil)
		client := newTestClient()
		call := promptCall("slow", false)
		call.Client = client
		if _, err := sendOnce(b, call); err != nil {
			t.Fatal(err)
		}
		if n := client.watches.Load(); n != 1 {
			t.Errorf("watch started %d times, want once", n)
		}
		if n := client.watching.Load(); n != 0 {
			t.Errorf("%d watches still running after the answer", n)
		}
		// The same connection serves an unwatched call with a slow answer: the
		// first call's client is not asked again.
		if _, err := sendOnce(b, promptCall("after", false)); err != nil {
			t.Fatal(err)
		}
		if n := client.watches.Load(); n != 1 {
			t.Errorf("the first call's client was watched %d times, want once", n)
		}
	})
	t.Run("quick answer", func(t *testing.T) {
		setForTest(t, &clientCheckEvery, time.Minute)
		u := startHeldUpstream(t, time.Millisecond)
		b := newPoolBackend(t, Config{BaseURL: u.url(), Timeout: time.Minute}, nil)
		client := newTestClient()
		for i := range 3 {
			call := promptCall("quick", false)
			call.Client = client
			if _, err := sendOnce(b, call); err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
		}
		if n := client.watches.Load(); n != 0 {
			t.Errorf("watch started %d times for answers quicker than the check", n)
		}
		if u.answered.Load() != 3 {
			t.Errorf("%d answered, want 3", u.answered.Load())
		}
	})
}

// The in-process mock backend (in-memory pipes, whose timeouts are not the socket's)
// answers a watched call that takes many checks, and aborts one whose client leaves.
func TestWatchedCallOnMockBackend(t *testing.T) {
	setForTest(t, &clientCheckEvery, 20*time.Millisecond)
	b := newPoolBackend(t, Config{Provider: "mock", Timeout: time.Minute,
		Mock: MockConfig{TTFT: 300 * time.Millisecond, MaxTokens: 4}}, nil)
	stays := promptCall("stays", false)
	stays.Client = newTestClient()
	if _, err := sendOnce(b, stays); err != nil {
		t.Fatalf("a watched call on the mock: %v", err)
	}
	gone := newTestClient()
	call := promptCall("gone", false)
	call.Client = gone
	done := sendAsync(b, call)
	waitUntil(t, "the client is watched", func() bool { return gone.watching.Load() == 1 })
	gone.hangUp()
	if r := <-done; !errors.Is(r.err, ErrClientLeftUpstream) {
		t.Fatalf("got %v, want ErrClientLeftUpstream", r.err)
	}
}

// dyingConn is a TCP connection whose peer becomes unreachable once killed: the
// kernel gives up on it (TCP keepalive or retransmission timeout) and the read under
// way fails with ETIMEDOUT, every later one with an end of file, as Linux reports a
// connection it has timed out.
type dyingConn struct {
	net.Conn
	dead  atomic.Bool
	given atomic.Bool
}

func (c *dyingConn) kill() {
	c.dead.Store(true)
	_ = c.Conn.Close()
}

func (c *dyingConn) Read(p []byte) (int, error) {
	if !c.dead.Load() {
		n, err := c.Conn.Read(p)
		if !c.dead.Load() {
			return n, err
		}
	}
	if c.given.CompareAndSwap(false, true) {
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ETIMEDOUT)}
	}
	return 0, io.EOF
}

// A connection that dies under a request (ETIMEDOUT: the kernel gave up on an
// unreachable peer) is neither a deadline's timeout nor the upstream closing it: the
// attempt fails, and the request, which the upstream may still be generating behind
// the partition, is not sent again (README: a request is sent once more only when its
// kept-alive connection "turns out closed by the upstream before any byte of the
// answer"), watched or not: a watched call's silence ticks take only a deadline's
// timeout for a tick, not ETIMEDOUT, whose next read would give an end of file that
// fasthttp resends on.
func TestDeadConnectionUnderWatchedCallIsNotResent(t *testing.T) {
	for _, watched := range []bool{false, true} {
		t.Run(map[bool]string{false: "unwatched", true: "watched"}[watched], func(t *testing.T) {
			setForTest(t, &clientCheckEvery, 20*time.Millisecond)
			u := startHeldUpstream(t, 0)
			b := newPoolBackend(t, Config{BaseURL: u.url(), Timeout: time.Minute}, nil)
			var first atomic.Pointer[dyingConn]
			b.targets[0].client.Dial = func(addr string) (net.Conn, error) {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					return nil, err
				}
				d := &dyingConn{Conn: c}
				if first.CompareAndSwap(nil, d) {
					return wrapUpstream(d), nil
				}
				return wrapUpstream(c), nil
			}
			if _, err := sendOnce(b, promptCall("first", false)); err != nil {
				t.Fatal(err)
			}
			client := newTestClient()
			call := promptCall("hold", false)
			if watched {
				call.Client = client
			}
			call.Deadline = time.Now().Add(1500 * time.Millisecond)
			done := sendAsync(b, call)
			waitUntil(t, "the upstream has the request", func() bool { return u.got.Load() == 2 })
			if watched {
				waitUntil(t, "the client is watched", func() bool { return client.watching.Load() == 1 })
			} else {
				time.Sleep(100 * time.Millisecond)
			}
			first.Load().kill()
			r := <-done
			t.Logf("attempt ended with %v", r.err)
			if n := u.got.Load(); n != 2 {
				t.Errorf("the upstream got the request %d times, want once: a connection that timed out (ETIMEDOUT) was taken for one the upstream closed, and the request was sent again", n-1)
			}
		})
	}
}
