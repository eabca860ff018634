package mockllm

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
	"go.uber.org/goleak"
)

// TestShutdownFinishesStreams: a stream waiting out an hour-long TPOT finishes at
// once when the server shuts down, and nothing is left running afterwards.
func TestShutdownFinishesStreams(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(),
		// fasthttp's idle-worker sweeper notices a stopped pool only after its next
		// sleep, and its date ticker lives for the process.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"))
	s, err := New(Options{TPOT: time.Hour, Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	ln := fasthttputil.NewInmemoryListener()
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	tr := &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return ln.Dial() }}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Post("http://mock.test/v1/chat/completions", "application/json",
		strings.NewReader(chatBody("slow", `"stream":true,"max_tokens":5`)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for range 2 { // the role chunk and the first token, which need no TPOT
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	stopped := make(chan error, 1)
	go func() { stopped <- s.Shutdown() }()
	rest, err := io.ReadAll(br)
	if err != nil || !strings.HasSuffix(string(rest), "data: [DONE]\n\n") || strings.Count(string(rest), `"content":`) != 4 {
		t.Fatalf("err %v, rest of stream %s", err, rest)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return")
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}

// TestHandlerOnAnotherServer mounts Handler on a fasthttp server of the caller's own,
// as the gateway's tests may.
func TestHandlerOnAnotherServer(t *testing.T) {
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: s.Handler()}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	c := &fasthttp.HostClient{Addr: "mock", Dial: func(string) (net.Conn, error) { return ln.Dial() }}
	for _, stream := range []string{"false", "true"} {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		req.Header.SetMethod("POST")
		req.SetRequestURI("http://mock/v1/chat/completions")
		req.Header.SetContentType("application/json")
		req.SetBodyString(chatBody("x", `"max_tokens":2,"stream":`+stream))
		if err := c.Do(req, resp); err != nil || resp.StatusCode() != 200 {
			t.Fatalf("stream %s: %v %d", stream, err, resp.StatusCode())
		}
		if stream == "true" && !strings.HasSuffix(string(resp.Body()), "data: [DONE]\n\n") {
			t.Errorf("stream body %s", resp.Body())
		}
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	}
	c.CloseIdleConnections()
	if err := srv.Shutdown(); err != nil {
		t.Fatal(err)
	}
	<-served
	if err := s.Shutdown(); err != nil {
		t.Fatal(err)
	}
}

// TestClosesIdleKeepAliveConnections: like vLLM's uvicorn, the server closes a
// keep-alive connection left idle for KeepAliveTimeout, so that clients meet
// upstream-closed connections as they do in production; the default is uvicorn's 5s.
func TestClosesIdleKeepAliveConnections(t *testing.T) {
	if s, err := New(Options{}); err != nil || s.opts.KeepAliveTimeout != 5*time.Second {
		t.Fatalf("default keep-alive timeout: %v, %v; want 5s", s.opts.KeepAliveTimeout, err)
	}
	if _, err := New(Options{KeepAliveTimeout: -time.Second}); err == nil {
		t.Error("a negative keep-alive timeout was accepted")
	}
	s, err := New(Options{KeepAliveTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Shutdown(); <-served })
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	// Two requests on the connection: it is kept alive between answers.
	for range 2 {
		if _, err := io.WriteString(c, "GET /health HTTP/1.1\r\nHost: mock\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != 200 || resp.Close {
			t.Fatalf("status %d, close %v: want a kept-alive 200", resp.StatusCode, resp.Close)
		}
	}
	// Then it stays idle: the server closes it. The read deadline only bounds the
	// test should it not.
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: read %q, %v; want the server to close it (EOF)", n, err)
	}
}

// TestDisconnectFreesSlot: vLLM aborts a request whose client left (Starlette listens
// for http.disconnect; @with_cancellation wraps the plain routes), so its slot frees
// at once rather than after the TTFT or TPOT wait under way.
func TestDisconnectFreesSlot(t *testing.T) {
	cases := []struct {
		name string
		o    Options
		body string
		path string
		read int // SSE data lines read before leaving
	}{
		{"mid-stream, in a TPOT wait", Options{TPOT: time.Hour, MaxTokens: 8}, chatBody("q", `"stream":true,"max_tokens":5`), "/v1/chat/completions", 2},
		{"stream, in the TTFT wait", Options{TTFT: time.Hour}, chatBody("q", `"stream":true,"max_tokens":5`), "/v1/chat/completions", 0},
		{"plain chat", Options{TTFT: time.Hour}, chatBody("q", `"max_tokens":1`), "/v1/chat/completions", -1},
		{"plain completions", Options{TTFT: time.Hour}, `{"prompt":"q","max_tokens":1}`, "/v1/completions", -1},
		{"embeddings", Options{TTFT: time.Hour}, `{"input":"q"}`, "/v1/embeddings", -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, tc.o)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "POST", "http://mock.test"+tc.path, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			done := make(chan error, 1)
			leave := make(chan struct{})
			go func() {
				resp, err := h.client.Do(req)
				if err == nil {
					<-leave
					br := bufio.NewReader(resp.Body)
					for n := 0; n < tc.read; {
						line, err := br.ReadString('\n')
						if err != nil {
							break
						}
						if strings.HasPrefix(line, "data: ") {
							n++
						}
					}
					resp.Body.Close()
				}
				done <- err
			}()
			waitStats(t, h, func(s Stats) bool { return s.Running == 1 })
			if tc.read >= 0 {
				close(leave) // the stream's body is closed unread, and its connection with it
			} else {
				cancel()
			}
			<-done
			waitStats(t, h, func(s Stats) bool { return s.Running == 0 })
		})
	}
}

// TestWaitingRequestLeavesQueueOnDisconnect: vLLM aborts a request whose client
// disconnects while it waits in the scheduler's queue (non-streamed:
// @with_cancellation; streamed: Starlette's disconnect listener): it leaves the queue,
// so vllm:num_requests_waiting drops at once, and never takes a slot. Otherwise a
// gateway that cancels queued upstream requests (first_byte_timeout, client gone)
// looks, through vllm_queue balancing, like it leaks load.
func TestWaitingRequestLeavesQueueOnDisconnect(t *testing.T) {
	cases := []struct{ name, body string }{
		{"plain", chatBody("second", `"max_tokens":1`)},
		{"stream", chatBody("second", `"max_tokens":1,"stream":true`)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, Options{MaxNumSeqs: 1, TTFT: time.Hour})
			send := func(ctx context.Context, body string, done chan<- struct{}) {
				defer close(done)
				req, _ := http.NewRequestWithContext(ctx, "POST", "http://mock.test/v1/chat/completions", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				if resp, err := h.client.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body) // until canceled
					resp.Body.Close()
				}
			}
			ctx1, cancel1 := context.WithCancel(context.Background())
			defer cancel1()
			first := make(chan struct{})
			go send(ctx1, chatBody("first", `"max_tokens":1`), first)
			waitStats(t, h, func(s Stats) bool { return s.Running == 1 })

			ctx2, cancel2 := context.WithCancel(context.Background())
			second := make(chan struct{})
			go send(ctx2, tc.body, second)
			waitStats(t, h, func(s Stats) bool { return s.Waiting == 1 })
			cancel2()
			<-second
			waitStats(t, h, func(s Stats) bool { return s.Waiting == 0 && s.Running == 1 })

			// Had the second request kept its place, it would take the freed slot and
			// hold it through its hour-long TTFT.
			cancel1()
			<-first
			waitStats(t, h, func(s Stats) bool { return s.Running == 0 && s.Waiting == 0 })
		})
	}
}
