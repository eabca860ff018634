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
