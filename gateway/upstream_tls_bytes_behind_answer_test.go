package gateway

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/testcert"
)

// corkConn holds what is written to it while held, and sends it in one write when
// released: two TLS records the upstream writes back to back reach the gateway's
// socket together, as they do whenever the upstream's writes outrun the gateway's
// reads.
type corkConn struct {
	net.Conn
	mu   sync.Mutex
	held bool
	buf  bytes.Buffer
}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held {
		return c.buf.Write(p)
	}
	return c.Conn.Write(p)
}

func (c *corkConn) hold() { c.mu.Lock(); c.held = true; c.mu.Unlock() }

func (c *corkConn) release() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.held = false
	_, err := c.Conn.Write(c.buf.Bytes())
	c.buf.Reset()
	return err
}

// startCorkedTLSUpstream is a raw TLS upstream whose script gets each connection's
// TLS side and the corkable socket under it.
func startCorkedTLSUpstream(t *testing.T, script func(u *rawUpstream, n int, tc *tls.Conn, cork *corkConn, br *bufio.Reader)) *rawUpstream {
	t.Helper()
	cfg := &tls.Config{Certificates: []tls.Certificate{testcert.SelfSigned(t)}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{addr: ln.Addr().String(), perConn: map[int]int{}}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := int(u.accepted.Add(1))
			wg.Go(func() {
				cork := &corkConn{Conn: c}
				tc := tls.Server(cork, cfg)
				defer tc.Close()
				_ = tc.SetDeadline(time.Now().Add(8 * time.Second))
				script(u, n, tc, cork, bufio.NewReader(tc))
			})
		}
	})
	return u
}

// README: "bytes that come behind an answer close its connection too", over TLS as in
// plaintext (TestUpstreamBytesBehindAnswerCloseConnection). A second answer the
// upstream wrote right behind the first, in its own TLS record, arrives in the same
// socket read: the TLS client pulls both records off the socket and hands the first
// on, keeping the second, where neither the answer's reader nor the idle look at the
// socket sees it. It is never read as the next request's answer (another client's),
// whether that request comes at once or past the 1 ms under which a pooled
// connection is reused unlooked at: the connection closed at the first answer's end,
// plain or streamed.
func TestUpstreamTLSBytesBehindAnswerCloseConnection(t *testing.T) {
	t.Parallel()
	for _, first := range []string{chatBody, streamBody} {
		for _, wait := range []time.Duration{0, 20 * time.Millisecond} {
			name := "chat"
			if first == streamBody {
				name = "stream"
			}
			t.Run(name+"/next after "+wait.String(), func(t *testing.T) {
				u := startCorkedTLSUpstream(t, func(u *rawUpstream, n int, tc *tls.Conn, cork *corkConn, br *bufio.Reader) {
					for i := 0; u.read(n, br); i++ {
						if n == 1 && i == 0 {
							answer := jsonAnswer("HTTP/1.1 200 OK", labelledAnswer)
							if first == streamBody {
								answer = sseAnswer()
							}
							cork.hold()
							_, _ = io.WriteString(tc, answer)
							_, _ = io.WriteString(tc, jsonAnswer("HTTP/1.1 200 OK", injectedAnswer))
							_ = cork.release()
							continue
						}
						_, _ = io.WriteString(tc, jsonAnswer("HTTP/1.1 200 OK", labelledAnswer))
					}
				})
				g := startGateway(t, httpsUpstreamConfig(u.addr, "timeout: 4s"))
				if resp, b := postChat(t, g, first); resp.StatusCode != 200 || strings.Contains(b, "INJECTED") {
					t.Fatalf("first request: %d %q", resp.StatusCode, b)
				}
				time.Sleep(wait)
				resp, b := postChat(t, g, chatBody)
				if resp.StatusCode != 200 || !strings.Contains(b, `"content":"hi"`) {
					t.Fatalf("second request: %d %q; want its own answer, not the one the upstream sent behind the first", resp.StatusCode, b)
				}
				if n := u.accepted.Load(); n != 2 || u.requests(1) != 1 {
					t.Errorf("%d connections, the first carried %d requests; want 2 and 1", n, u.requests(1))
				}
			})
		}
	}
}
