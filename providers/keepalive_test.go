package providers

import (
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// countingListener counts the connections a server accepts.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
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
