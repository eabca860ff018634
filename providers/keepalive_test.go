package providers

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// countingListener counts the connections a server accepts, and those closed.
type countingListener struct {
	net.Listener
	accepted, closed atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.accepted.Add(1)
	return &closeCountingConn{Conn: c, l: l}, nil
}

type closeCountingConn struct {
	net.Conn
	l    *countingListener
	once sync.Once
}

func (c *closeCountingConn) Close() error {
	c.once.Do(func() { c.l.closed.Add(1) })
	return c.Conn.Close()
}

// staticUpstream serves staticAnswer to every request on a counting loopback
// listener until the test ends.
func staticUpstream(t *testing.T) *countingListener {
	t.Helper()
	return countingUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.Response.SetBodyRaw(staticAnswer)
	})
}

// countingUpstream serves h on a counting loopback listener until the test ends.
func countingUpstream(t *testing.T, h fasthttp.RequestHandler) *countingListener {
	t.Helper()
	inner, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &countingListener{Listener: inner}
	srv := &fasthttp.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln
}

// A stream read to its end leaves the upstream connection in the pool: the next
// request, streamed or not, goes over the same connection instead of paying a new
// one (a TCP handshake and the upstream's accept, on the path to the first token).
func TestStreamsReuseUpstreamConnections(t *testing.T) {
	for _, api := range []string{mockllm.APIOpenAI, mockllm.APIAnthropic} {
		t.Run(api, func(t *testing.T) {
			srv, err := mockllm.New(mockllm.Options{API: api, Model: "m", APIKey: "k", MaxTokens: 8, Sleep: func(time.Duration) {}})
			if err != nil {
				t.Fatal(err)
			}
			inner, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ln := &countingListener{Listener: inner}
			done := make(chan struct{})
			go func() { _ = srv.Serve(ln); close(done) }()
			t.Cleanup(func() { _ = srv.Shutdown(); _ = ln.Close(); <-done })
			b := newTestBackend(t, Config{Provider: map[string]string{mockllm.APIOpenAI: "openai", mockllm.APIAnthropic: "anthropic"}[api],
				BaseURL: "http://" + ln.Addr().String() + "/v1", Model: "m", APIKey: "k"})
			body := `{"model":"chat","messages":[{"role":"user","content":"hi"}],"max_tokens":8%s}`
			for range 5 {
				if _, _, n := streamChat(t, b, withStream(body, true)); n == 0 {
					t.Fatal("stream without content")
				}
				sendChat(t, b, withStream(body, false))
			}
			if n := ln.accepted.Load(); n != 1 {
				t.Fatalf("10 sequential requests (5 streamed) opened %d upstream connections, want 1", n)
			}
		})
	}
}

// An upstream that sends [DONE] and then holds its body open must not hold the stream's
// close: the wait for the body's end is bounded, and the connection is dropped instead.
func TestStreamCloseAfterDoneIsBounded(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				_, _ = c.Read(buf)
				ev := "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n"
				_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" +
					strconv.FormatInt(int64(len(ev)), 16) + "\r\n" + ev + "\r\n"))
				time.Sleep(5 * time.Second) // no terminating chunk
			}()
		}
	}()
	b := newTestBackend(t, Config{Provider: "openai", BaseURL: "http://" + ln.Addr().String() + "/v1", Model: "m"})
	var out fasthttp.Response
	var res Result
	if err := b.Send(chatCall(`{"model":"chat","messages":[],"stream":true}`, true), &out, &res); err != nil {
		t.Fatal(err)
	}
	for {
		var ev Event
		if err := res.Stream.Next(&ev); err != nil {
			if err != io.EOF {
				t.Fatal(err)
			}
			break
		}
	}
	start := time.Now()
	_ = res.Stream.Close()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close waited %v for a body that never ends", d)
	}
	// With no drain left the watcher's timer stops: an idle gateway has no wake-ups
	// for it.
	deadline := time.Now().Add(time.Second)
	for {
		drains.mu.Lock()
		armed, left := drains.armed, len(drains.active)
		drains.mu.Unlock()
		if !armed && left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("drain watcher still armed (%d drains) a second after the last one ended", left)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// upstreamStep is what scriptedUpstream does with one request.
type upstreamStep int

const (
	// answerKeep answers in full and keeps the connection for the next request.
	answerKeep upstreamStep = iota
	// answerThenClose answers in full, without "Connection: close", and then closes
	// the connection, as an upstream does when its keep-alive timeout runs out
	// between two requests.
	answerThenClose
	// answerPartly sends the start of the status line and closes the connection.
	answerPartly
	// closeUnanswered closes the connection without a byte of answer.
	closeUnanswered
)

// scriptedUpstream is an OpenAI-compatible upstream on raw TCP whose every request
// takes the next step of its script (the last step repeating), so that a test decides
// what becomes of the connection. A request asking for a stream gets an SSE answer.
type scriptedUpstream struct {
	addr     string
	steps    []upstreamStep
	requests atomic.Int64
	accepted atomic.Int64
}

func startScripted(t *testing.T, steps ...upstreamStep) *scriptedUpstream {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &scriptedUpstream{addr: ln.Addr().String(), steps: steps}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.accepted.Add(1)
			go u.serve(c)
		}
	}()
	return u
}

func (u *scriptedUpstream) url() string { return "http://" + u.addr + "/v1" }

func (u *scriptedUpstream) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, _ := io.ReadAll(req.Body)
		n := int(u.requests.Add(1)) - 1
		switch u.steps[min(n, len(u.steps)-1)] {
		case answerPartly:
			_, _ = io.WriteString(c, "HTTP/1.1 200")
			return
		case closeUnanswered:
			return
		}
		ct, answer := "application/json", `{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}`
		if bytes.Contains(body, strStreamTrue) {
			ct, answer = "text/event-stream", "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n"
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: "+ct+"\r\nContent-Length: "+strconv.Itoa(len(answer))+"\r\n\r\n"+answer)
		if u.steps[min(n, len(u.steps)-1)] == answerThenClose {
			return
		}
	}
}

// vLLM's uvicorn closes a keep-alive connection after 5s idle, and fasthttp neither
// checks a pooled connection before using it nor retries a POST by itself. A request
// that finds its connection closed by the upstream before any byte of the answer is
// sent again once, over a new connection, and the target's health hears nothing of
// it; a request whose answer had begun, or that went over a new connection, is not
// sent again, since the upstream may have worked on it.
func TestRequestOnUpstreamClosedConnection(t *testing.T) {
	cases := []struct {
		name  string
		steps []upstreamStep
		// ok is whether the second request succeeds; requests and conns are the
		// requests the upstream reads and the connections it accepts in all.
		ok              bool
		requests, conns int64
	}{
		// The second request goes out on a new connection: the closed one is found
		// closed before it is written to (stale), or, reused within idleLook, the
		// request goes out on it unread and again on a new one.
		{"closed while idle: sent again", []upstreamStep{answerThenClose, answerKeep}, true, 2, 2},
		// Sent again once only: the retry's new connection is closed the same way.
		{"closed unanswered: sent again once", []upstreamStep{answerKeep, closeUnanswered}, false, 3, 2},
		{"closed after part of the answer: not sent again", []upstreamStep{answerKeep, answerPartly}, false, 2, 1},
		{"new connection closed unanswered: not sent again", []upstreamStep{closeUnanswered}, false, 1, 1},
	}
	for _, tc := range cases {
		for _, stream := range []bool{false, true} {
			t.Run(tc.name+"/stream="+strconv.FormatBool(stream), func(t *testing.T) {
				u := startScripted(t, tc.steps...)
				b := newPoolBackend(t, Config{BaseURL: u.url(), Health: HealthConfig{EjectAfter: 1}}, nil)
				_, err := sendOnce(b, promptCall("first", stream))
				if tc.steps[0] == closeUnanswered {
					if err == nil || !errors.Is(err, ErrConnect) {
						t.Fatalf("got %v, want ErrConnect", err)
					}
				} else {
					if err != nil {
						t.Fatalf("first request: %v", err)
					}
					_, err = sendOnce(b, promptCall("second", stream))
					if tc.ok != (err == nil) {
						t.Fatalf("second request on the kept-alive connection: %v, want success %v", err, tc.ok)
					}
				}
				if n := u.requests.Load(); n != tc.requests {
					t.Errorf("the upstream read %d requests, want %d", n, tc.requests)
				}
				if n := u.accepted.Load(); n != tc.conns {
					t.Errorf("the upstream accepted %d connections, want %d", n, tc.conns)
				}
				if tc.ok && !b.Healthy() {
					t.Error("an upstream closing idle connections was ejected")
				}
			})
		}
	}
}

// A connection idle for idle_conn_timeout is closed by the gateway itself, before an
// upstream whose keep-alive timeout is longer does so.
func TestIdleConnTimeout(t *testing.T) {
	ln := staticUpstream(t)
	b := newPoolBackend(t, Config{BaseURL: "http://" + ln.Addr().String() + "/v1", IdleConnTimeout: 50 * time.Millisecond}, nil)
	if d := b.targets[0].client.MaxIdleConnDuration; d != 50*time.Millisecond {
		t.Fatalf("idle connections kept %v, want idle_conn_timeout", d)
	}
	if _, err := sendOnce(b, promptCall("x", false)); err != nil {
		t.Fatal(err)
	}
	// The upstream sees the connection closed (its read ends) once the gateway
	// dropped it.
	waitUntil(t, "the gateway closes its idle connection", func() bool { return ln.closed.Load() == 1 })

	def := newPoolBackend(t, Config{BaseURL: "http://" + ln.Addr().String() + "/v1"}, nil)
	if d := def.targets[0].client.MaxIdleConnDuration; d != DefaultIdleConnTimeout || d >= 5*time.Second {
		t.Errorf("idle connections kept %v by default, want %v: under uvicorn's 5s", d, DefaultIdleConnTimeout)
	}
}

// setForTest sets the package variable *p to v until the test ends.
func setForTest[T any](t *testing.T, p *T, v T) {
	old := *p
	*p = v
	t.Cleanup(func() { *p = old })
}

// A connection in constant use is replaced once it is maxConnAge old, after the answer
// in flight: the next request dials again, and so picks up a changed DNS name.
func TestBusyConnectionReplacedWhenOld(t *testing.T) {
	setForTest(t, &maxConnAge, 300*time.Millisecond)
	ln := staticUpstream(t)
	b := newPoolBackend(t, Config{BaseURL: "http://" + ln.Addr().String() + "/v1"}, nil)
	// Requests every 50 ms: never idle, past the age by the end.
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if _, err := sendOnce(b, promptCall("x", false)); err != nil {
			t.Fatal(err)
		}
	}
	if n := ln.accepted.Load(); n < 2 {
		t.Fatalf("one connection served a second of steady requests; want it replaced after %v", maxConnAge)
	}
}
