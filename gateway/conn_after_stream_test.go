package gateway

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// After a stream the connection serves its next requests through the gateway's own
// wrapper (firstByteConn), which holds what fasthttp had read of the requests
// pipelined behind the stream. These tests check that the requests served so are
// served as on a fresh connection: the wrapper gives what the connection under it
// can do (its socket, its lingering close, its TLS state), however many streams the
// connection carried.

// TestHangUpWatchedAfterPipelinedStream: README, a non-streamed request's hang-up
// closes the upstream connection at the next 200 ms tick. It does so on a connection
// that once had a request pipelined behind a stream, for the connection's life: the
// hang-up watch finds the socket under fasthttp's hijacked connection.
func TestHangUpWatchedAfterPipelinedStream(t *testing.T) {
	t.Parallel()
	arrived, abandoned := make(chan string, 8), make(chan string, 8)
	sse := sseChunk("a") + sseChunk("b") + "data: [DONE]\n\n"
	addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, req *http.Request) {
		client := req.Header.Get("X-Test-Client")
		switch {
		case strings.HasPrefix(client, "gone"):
			arrived <- client
			// Generating: the only thing it hears is its connection closing. It
			// gives up after 1.6 s, so that a request never aborted ends too.
			_ = c.SetReadDeadline(time.Now().Add(1600 * time.Millisecond))
			if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
				abandoned <- client
			}
		case strings.HasPrefix(client, "stream"):
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: "+strconv.Itoa(len(sse))+"\r\n\r\n"+sse)
		default:
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(fiveTokenAnswer))+"\r\n\r\n"+fiveTokenAnswer)
		}
	})
	g := startGateway(t, hangupConfig(addr, "", ""))
	hangUpAborts := func(t *testing.T, c *rawClient, name string) bool {
		t.Helper()
		c.send(t, g, name, chatBody)
		select {
		case <-arrived:
		case <-time.After(5 * time.Second):
			t.Fatal("the request never reached the upstream")
		}
		time.Sleep(250 * time.Millisecond) // the upstream silent: the watch is on
		_ = c.conn.Close()
		select {
		case <-abandoned:
			return true
		case <-time.After(1200 * time.Millisecond):
			return false
		}
	}
	tests := []struct {
		name string
		// first sends what comes before the request hung up on, and reads its
		// answers.
		first func(t *testing.T, c *rawClient, name string)
	}{
		{"after a stream", func(t *testing.T, c *rawClient, name string) {
			c.send(t, g, "stream-"+name, streamBody)
			if code, _ := c.status(t); code != 200 {
				t.Fatalf("stream: %d", code)
			}
		}},
		{"after a stream with a request pipelined behind it", func(t *testing.T, c *rawClient, name string) {
			if _, err := io.WriteString(c.conn, rawRequest(t, g, streamBody, "X-Test-Client: stream-"+name)+
				rawRequest(t, g, chatBody, "X-Test-Client: plain-"+name)); err != nil {
				t.Fatal(err)
			}
			for i := range 2 {
				if code, _ := c.status(t); code != 200 {
					t.Fatalf("pipelined answer %d: %d", i, code)
				}
			}
		}},
		// The connection is wrapped once, not once per stream: the watch finds
		// the socket only so many wrappers deep.
		{"after 10 streams, each with a request pipelined behind it", func(t *testing.T, c *rawClient, name string) {
			for i := range 10 {
				n := name + "-" + strconv.Itoa(i)
				if _, err := io.WriteString(c.conn, rawRequest(t, g, streamBody, "X-Test-Client: stream-"+n)+
					rawRequest(t, g, chatBody, "X-Test-Client: plain-"+n)); err != nil {
					t.Fatal(err)
				}
				for j := range 2 {
					if code, _ := c.status(t); code != 200 {
						t.Fatalf("round %d, pipelined answer %d: %d", i, j, code)
					}
				}
			}
		}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := strconv.Itoa(i)
			c := dialRaw(t, g, nil)
			tc.first(t, c, name)
			if !hangUpAborts(t, c, "gone-"+name) {
				t.Errorf("the client hung up on its request, and the upstream request was not aborted within 1.2 s (README: a hang-up closes the upstream connection at the next 200 ms tick)")
			}
		})
	}
}

// TestOversizedBodyAfterStreamGets413: README (413 row), the rest of a body over
// max_body_bytes sent without Expect: 100-continue "is read and dropped, up to 64 MiB
// for up to 2 s, so that a client still sending reads the 413 rather than a reset",
// on the connection of an ended stream as on a fresh one. Clients that write the
// whole body before reading (Python's requests and urllib3, many others) would
// otherwise never see the 413, and retry the upload.
func TestOversizedBodyAfterStreamGets413(t *testing.T) {
	t.Parallel()
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	g := startGateway(t, expectConfig(up))
	// Over the read limit (2*4 KiB + 1 MiB): fasthttp refuses it from its
	// Content-Length.
	const size = 16 << 20
	head := "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(size) + "\r\n\r\n"
	tests := []struct {
		name  string
		first func(t *testing.T, c net.Conn, br *bufio.Reader)
	}{
		{"fresh connection", func(*testing.T, net.Conn, *bufio.Reader) {}},
		{"after a stream", func(t *testing.T, c net.Conn, br *bufio.Reader) {
			if _, err := io.WriteString(c, rawRequest(t, g, streamBody)); err != nil {
				t.Fatal(err)
			}
			readStream(t, br).Body.Close()
		}},
		{"after a stream with a request pipelined behind it", func(t *testing.T, c net.Conn, br *bufio.Reader) {
			if _, err := io.WriteString(c, rawRequest(t, g, streamBody)+rawRequest(t, g, chatBody)); err != nil {
				t.Fatal(err)
			}
			readStream(t, br).Body.Close()
			readChat(t, br)
		}},
		{"after 10 streams, each with a request pipelined behind it", func(t *testing.T, c net.Conn, br *bufio.Reader) {
			for range 10 {
				if _, err := io.WriteString(c, rawRequest(t, g, streamBody)+rawRequest(t, g, chatBody)); err != nil {
					t.Fatal(err)
				}
				readStream(t, br).Body.Close()
				readChat(t, br)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, br := dialGateway(t, g)
			tc.first(t, c, br)
			if _, err := io.WriteString(c, head); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write(make([]byte, size)); err != nil {
				t.Fatalf("writing the body: %v; want it read and dropped", err)
			}
			if line, err := br.ReadString('\n'); err != nil || !strings.Contains(line, " 413 ") {
				t.Errorf("a body over the read limit: %q, %v; want the 413 read", strings.TrimSpace(line), err)
			}
		})
	}
}

// TestTLSSchemeAfterStream: README, every server span carries url.scheme, https for
// a request that came over TLS: the requests a TLS connection serves after a stream,
// pipelined behind it or sent after it, are HTTPS ones too (fasthttp's IsTLS asks
// the connection it serves).
func TestTLSSchemeAfterStream(t *testing.T) {
	pki := newTestPKI(t)
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	g, exp := startTracedGateway(t, serverConfig(up, tlsSettings(pki))+traced+"\n")
	c := dialRaw(t, g, pki.pool)
	c.send(t, g, "tls-first", streamBody)
	if code, _ := c.status(t); code != 200 {
		t.Fatalf("stream: %d", code)
	}
	c.send(t, g, "tls-next", chatBody)
	if code, _ := c.status(t); code != 200 {
		t.Fatalf("next request: %d", code)
	}
	if _, err := io.WriteString(c.conn, rawRequest(t, g, streamBody, "X-Request-Id: tls-stream")+
		rawRequest(t, g, chatBody, "X-Request-Id: tls-pipelined")); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if code, _ := c.status(t); code != 200 {
			t.Fatalf("pipelined answer %d: %d", i, code)
		}
	}
	for _, id := range []string{"tls-first", "tls-next", "tls-stream", "tls-pipelined"} {
		spans := requestSpans(t, g, exp, id)["POST /v1/chat/completions"]
		if len(spans) != 1 {
			t.Fatalf("%s: %d server spans", id, len(spans))
		}
		if v, _ := attr(spans[0].Snapshot(), "url.scheme"); v.AsString() != "https" {
			t.Errorf("%s, on the TLS listener: server span url.scheme = %q, want https", id, v.AsString())
		}
	}
}

// hijackedConn reads through r, as fasthttp's hijacked connection reads through its
// connection's buffered reader.
type hijackedConn struct {
	net.Conn
	r io.Reader
}

func (c hijackedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// TestPipelinedKeepsOneWrapper: what fasthttp's reader holds of the requests
// pipelined behind a stream is copied into the connection's one wrapper, behind
// what that wrapper still held, rather than read through fasthttp's reader by one
// more wrapper per stream; the socket's own bytes come after both.
func TestPipelinedKeepsOneWrapper(t *testing.T) {
	a, b := net.Pipe()
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	go func() { _, _ = io.WriteString(b, "one two three four") }()
	// The first stream's reader has taken its request, "one ", and holds more.
	br := bufio.NewReaderSize(a, 16)
	if _, err := io.ReadFull(br, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	scratch := make([]byte, 1)
	first, held := pipelined(a, hijackedConn{a, br}, scratch)
	fb := asFirstByteConn(first)
	if !held || fb == nil || fb.Conn != a {
		t.Fatalf("after the first stream: %T (held %v), want a wrapper of the connection holding what was buffered", first, held)
	}
	// The next stream's reader, over the wrapper, takes "two " and holds more.
	br = bufio.NewReaderSize(first, 16)
	if _, err := io.ReadFull(br, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	second, held := pipelined(first, hijackedConn{first, br}, scratch)
	if !held || second != first {
		t.Fatalf("after the second stream: %T (held %v), want the first wrapper again", second, held)
	}
	got := make([]byte, len("three four"))
	if _, err := io.ReadFull(second, got); err != nil || string(got) != "three four" {
		t.Errorf("read %q, %v; want the rest in order, %q", got, err, "three four")
	}
}
