package gateway

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// TestDrainServesRequestOnOpenConnectionOnce: a request that comes during the drain on
// a connection open when it began is served as usual, its answer with Connection:
// close, and the connection is closed after it: the client (a proxy's kept-alive
// connection to the gateway) opens its next connection elsewhere, where a 503 on a
// POST would reach the client, as no proxy resends a non-idempotent request that
// reached the upstream. A client that sends requests back to back gets no more than
// that one served, and the drain ends as soon as it is answered, however long
// shutdown_grace is.
func TestDrainServesRequestOnOpenConnectionOnce(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 20, TPOT: 30 * time.Millisecond})
	cfg := strings.Replace(mockConfig(addr, "", ""), `shutdown_grace: 5s}`, `shutdown_grace: 30s}`, 1)
	const longStream = `{"model":"chat","stream":true,"max_tokens":20,"messages":[{"role":"user","content":"hi"}]}`
	cases := []struct {
		name string
		// drainDuring sends what comes before the drain on conn, begins the drain
		// (drain) and sends the request the drain serves; it returns the reader
		// positioned at that request's answer.
		drainDuring func(t *testing.T, g *gw, conn net.Conn, br *bufio.Reader, drain func())
	}{
		{"body sent during the drain, its header before", func(t *testing.T, g *gw, conn net.Conn, br *bufio.Reader, drain func()) {
			raw := rawRequest(t, g, chatBody, "X-Request-Id: drain-served")
			writeTo(t, conn, raw[:len(raw)-len(chatBody)])
			drain()
			writeTo(t, conn, chatBody)
		}},
		{"request in flight when the drain began", func(t *testing.T, g *gw, conn net.Conn, br *bufio.Reader, drain func()) {
			writeTo(t, conn, rawRequest(t, g, chatBody, "X-Request-Id: drain-served", "x-mock-delay: 300ms"))
			drain()
		}},
		{"request sent behind a stream begun before the drain", func(t *testing.T, g *gw, conn net.Conn, br *bufio.Reader, drain func()) {
			writeTo(t, conn, rawRequest(t, g, longStream))
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("stream: %v", err)
			}
			drain()
			// Sent while the stream runs: the stream's client watch reads its
			// first byte.
			writeTo(t, conn, rawRequest(t, g, chatBody, "X-Request-Id: drain-served"))
			b, err := io.ReadAll(resp.Body)
			if err != nil || !strings.HasSuffix(string(b), "data: [DONE]\n\n") {
				t.Fatalf("the stream begun before the drain did not end whole: %v %q", err, b)
			}
		}},
		// The stream's header went before the drain, without Connection: close, so
		// its client takes the connection for kept alive and sends its next request
		// on it as soon as it has read [DONE] (an SDK in a loop, a proxy's pooled
		// connection): a POST met by a reset or an EOF after it was sent is not
		// resent by the clients.
		{"request sent right after a stream that ended during the drain", func(t *testing.T, g *gw, conn net.Conn, br *bufio.Reader, drain func()) {
			writeTo(t, conn, rawRequest(t, g, longStream))
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("stream: %v", err)
			}
			drain()
			b, err := io.ReadAll(resp.Body)
			if err != nil || !strings.HasSuffix(string(b), "data: [DONE]\n\n") {
				t.Fatalf("the stream begun before the drain did not end whole: %v %q", err, b)
			}
			writeTo(t, conn, rawRequest(t, g, chatBody, "X-Request-Id: drain-served"))
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := startGateway(t, cfg)
			// Serving: a shutdown before fasthttp's Serve has its listener finds
			// nothing to drain.
			if resp, err := http.Get(g.url + "/health"); err != nil {
				t.Fatal(err)
			} else {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			conn, br := dialGateway(t, g)
			c.drainDuring(t, g, conn, br, func() {
				g.cancel()
				waitFor(t, func() bool { return g.draining.Load() })
			})
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("request that came during the drain on a connection open before it: %v; want it served", err)
			}
			body, err := io.ReadAll(resp.Body)
			answered := time.Now()
			if err != nil || resp.StatusCode != 200 || !strings.Contains(string(body), `"chat.completion"`) {
				t.Fatalf("request that came during the drain on a connection open before it: %d %v %q; want it served (200)",
					resp.StatusCode, err, body)
			}
			if !resp.Close {
				t.Errorf("answer during the drain without Connection: close: the client would send its next request on a connection the drain closes")
			}
			// The next one, sent back to back, is not served: the connection closes.
			_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
			_, _ = io.WriteString(conn, rawRequest(t, g, chatBody, "X-Request-Id: drain-next"))
			if resp, err := http.ReadResponse(br, nil); err == nil {
				t.Errorf("a second request on the connection during the drain was answered %s; want the connection closed after the first", resp.Status)
			} else if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("the connection stayed open after the answer given during the drain, which said Connection: close")
			}
			select {
			case err := <-g.done:
				g.done <- err
			case <-time.After(2 * time.Second):
				t.Errorf("the drain went on 2s after its last request was answered (shutdown_grace 30s)")
			}
			if d := time.Since(answered); d > 2*time.Second {
				t.Errorf("the drain ended %v after its last request was answered", d)
			}
			// An ordinary request: one access log line, status 200.
			line := accessLine(t, g, "drain-served")
			if line["status"] != 200.0 || line["error"] != "" {
				t.Errorf("access log of the request served during the drain: %v; want status 200, no error", line)
			}
		})
	}
}

// writeTo writes s to conn.
func writeTo(t *testing.T, conn net.Conn, s string) {
	t.Helper()
	if _, err := io.WriteString(conn, s); err != nil {
		t.Fatal(err)
	}
}

// TestDrainClosesPipelinedConnectionCleanly: a client pipelines a second POST on its
// kept-alive connection while its first is still being answered, and the gateway
// starts draining in between. The first answer carries Connection: close, and the
// second request is not served, as HTTP/1.1 has it (the client resends what it
// pipelined behind a close, RFC 9112 9.3.2); the connection then ends with the
// answer and a clean close, not a reset, which could discard the answer before the
// client has read it.
func TestDrainClosesPipelinedConnectionCleanly(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 20})
	g := startGateway(t, strings.Replace(mockConfig(addr, "", ""), `shutdown_grace: 5s}`, `shutdown_grace: 30s}`, 1))
	// Serving: a shutdown before fasthttp's Serve has its listener finds nothing to drain.
	if resp, err := http.Get(g.url + "/health"); err != nil {
		t.Fatal(err)
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	conn, br := dialGateway(t, g)
	writeTo(t, conn, rawRequest(t, g, chatBody, "X-Request-Id: pipe-first", "x-mock-delay: 1s"))
	waitInFlight(t, g, 1, "the first request")
	g.cancel()
	waitFor(t, func() bool { return g.draining.Load() })
	// Sent while the first is still awaited (1 s), on the same connection.
	writeTo(t, conn, rawRequest(t, g, chatBody, "X-Request-Id: pipe-second"))
	first, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the request in flight when the drain began: %v", err)
	}
	_, _ = io.Copy(io.Discard, first.Body)
	if !first.Close || first.StatusCode != 200 {
		t.Fatalf("observed %s (Connection: close %v) for the request in flight when the drain began; expected 200 with Connection: close", first.Status, first.Close)
	}
	// Give the unread pipelined bytes time to be found at the close.
	time.Sleep(100 * time.Millisecond)
	if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after the answer with Connection: close, observed %d bytes, %v; expected the connection closed cleanly (io.EOF), not reset", n, err)
	}
	for _, id := range requestIDsLogged(g) {
		if id == "pipe-second" {
			t.Fatalf("the request pipelined behind a Connection: close answer was served (access log %v); expected it left for the client to resend", requestIDsLogged(g))
		}
	}
}

// requestIDsLogged are the request IDs of the access log lines so far.
func requestIDsLogged(g *gw) []any {
	var ids []any
	for _, l := range accessLines(g) {
		ids = append(ids, l["request_id"])
	}
	return ids
}
