//go:build !race

package gateway

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// wireConn is a client connection that sends one raw request and takes the answer:
// fasthttp's server reads the request from it as from a socket (its header block as
// sent, its body as a stream), and the next read finds the client gone.
type wireConn struct {
	net.Conn
	r bytes.Reader
	n int
}

func (c *wireConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *wireConn) Write(p []byte) (int, error)      { c.n += len(p); return len(p), nil }
func (c *wireConn) Close() error                     { return nil }
func (c *wireConn) LocalAddr() net.Addr              { return sinkLocal }
func (c *wireConn) RemoteAddr() net.Addr             { return sinkRemote }
func (c *wireConn) SetDeadline(time.Time) error      { return nil }
func (c *wireConn) SetReadDeadline(time.Time) error  { return nil }
func (c *wireConn) SetWriteDeadline(time.Time) error { return nil }
func (c *wireConn) serve(s *Server, raw []byte) error {
	c.r.Reset(raw)
	c.n = 0
	return s.api.ServeConn(c)
}

// wireChat is a chat request as the official Python SDK sends it, with a body of n
// bytes.
func wireChat(n int) []byte {
	body := `{"model":"chat","messages":[{"role":"user","content":"` + strings.Repeat("a", max(n-56, 1)) + `"}]}`
	return []byte("POST /v1/chat/completions HTTP/1.1\r\nHost: gateway.internal:8080\r\nAccept-Encoding: gzip, deflate\r\n" +
		"Connection: keep-alive\r\nAccept: application/json\r\nContent-Type: application/json\r\n" +
		"User-Agent: OpenAI/Python 1.54.4\r\nX-Stainless-Lang: python\r\nX-Stainless-Package-Version: 1.54.4\r\n" +
		"X-Stainless-OS: Linux\r\nX-Stainless-Arch: x64\r\nX-Stainless-Runtime: CPython\r\n" +
		"X-Stainless-Runtime-Version: 3.12.7\r\nX-Stainless-Async: false\r\nX-Stainless-Retry-Count: 0\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}

// TestWireRequestAllocs pins the request path as fasthttp's server runs it: the header
// block checked name by name, the body read from the connection as a stream into the
// request's pooled buffer, which a body within a pooled buffer (64 KiB) does without
// allocating once the pools are warm, as a body set whole does (TestProxyAllocs). The
// one allocation is fasthttp's own, after the handler: with StreamRequestBody its
// server loop drops what a handler left of a body through io.CopyN, whose LimitReader
// escapes (requestStream.discard, fasthttp v1.79 streaming.go), for every body, read or
// not.
func TestWireRequestAllocs(t *testing.T) {
	s := newServerWith(t, benchConfig(startStaticUpstream(t)), Options{})
	for _, size := range []int{100, 6 << 10, 40 << 10} {
		t.Run(strconv.Itoa(size)+" bytes", func(t *testing.T) {
			raw := wireChat(size)
			c := &wireConn{}
			for range 3 {
				if err := c.serve(s, raw); err != nil && err != io.EOF {
					t.Fatal(err)
				}
			}
			if !bytes.Contains(wireAnswer(t, s, raw), []byte(`"chat.completion"`)) {
				t.Fatal("no chat completion")
			}
			// AllocsPerRun rounds down: a GC during the run that empties the
			// pools, whose refill costs an allocation or two once, does not
			// count.
			const budget = 1
			if n := allocsPerRun(200, func() { _ = c.serve(s, raw) }); n > budget {
				t.Fatalf("%.1f allocations per request, budget %d", n, budget)
			}
		})
	}
}

// wireAnswer serves raw and returns what the gateway wrote.
func wireAnswer(t *testing.T, s *Server, raw []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	c := &recordConn{}
	c.r.Reset(raw)
	c.w = &out
	if err := s.api.ServeConn(c); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	return out.Bytes()
}

type recordConn struct {
	wireConn
	w io.Writer
}

func (c *recordConn) Write(p []byte) (int, error) { return c.w.Write(p) }

// BenchmarkWireChat is BenchmarkProxyChat as fasthttp's server runs it, from the
// request's bytes: the header block parsed and checked, the body read as a stream.
func BenchmarkWireChat(b *testing.B) {
	s := newServerWith(b, benchConfig(startStaticUpstream(b)), Options{})
	raw := wireChat(300)
	c := &wireConn{}
	b.ReportAllocs()
	for b.Loop() {
		if err := c.serve(s, raw); err != nil && err != io.EOF {
			b.Fatal(err)
		}
	}
}
