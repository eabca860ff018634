package gateway

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/internal/testcert"
)

// rawUpstream is an upstream on raw TCP, or TLS, that hands each connection it
// accepts, numbered from 1, to a script, and counts the requests each one read.
type rawUpstream struct {
	addr     string
	accepted atomic.Int64
	mu       sync.Mutex
	perConn  map[int]int
}

// startRawUpstream serves script on a loopback listener, through TLS when tlsCfg is
// set, until the test ends.
func startRawUpstream(t *testing.T, tlsCfg *tls.Config, script func(u *rawUpstream, conn int, c net.Conn, br *bufio.Reader)) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{addr: ln.Addr().String(), perConn: map[int]int{}}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
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
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(8 * time.Second))
				script(u, n, c, bufio.NewReader(c))
			})
		}
	})
	return u
}

// read reads one whole request from connection conn, counting it; false when the
// connection ended instead.
func (u *rawUpstream) read(conn int, br *bufio.Reader) bool {
	req, err := http.ReadRequest(br)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, req.Body)
	u.mu.Lock()
	u.perConn[conn]++
	u.mu.Unlock()
	return true
}

// requests is how many requests connection conn read.
func (u *rawUpstream) requests(conn int) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.perConn[conn]
}

// rawConfig is a gateway whose chat endpoint goes to the plaintext upstream at addr.
func rawConfig(addr string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 5s}
backends:
  up: {provider: openai, base_url: "http://` + addr + `/v1", model: up-model, timeout: 4s, first_byte_timeout: 3s}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
logging: {level: error, access_log: false}
`
}

// jsonAnswer is a whole HTTP/1.1 answer with a JSON body.
func jsonAnswer(status, body string) string {
	return status + "\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// sseAnswer is a whole 200 answer carrying a two-chunk chat stream.
func sseAnswer() string {
	s := sseChunk("hel") + sseChunk("lo") + "data: [DONE]\n\n"
	return "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: " + strconv.Itoa(len(s)) + "\r\n\r\n" + s
}

// attemptOutcomes sums tollgate_upstream_attempts_total by outcome, leaving out
// those at 0.
func attemptOutcomes(t *testing.T, g *gw) map[string]float64 {
	t.Helper()
	fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, o := range []string{"ok", "error", "timeout", "refused", "client_gone"} {
		v, _ := promtest.Sum(fams, "tollgate_upstream_attempts_total", func(l map[string]string) bool { return l["outcome"] == o })
		if v != 0 {
			out[o] = v
		}
	}
	return out
}

// injectedAnswer is what a misbehaving upstream sends unasked: were it taken for the
// next request's answer, that client would read another's (a cross-client leak).
const injectedAnswer = `{"id":"evil","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"INJECTED"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`

// What an upstream sends on a kept-alive connection after its answer, unasked (a
// second answer, the 408 some servers send before closing an idle connection, a TLS
// close_notify, bytes right behind the answer), is never read as the next request's
// answer: the gateway looks at a connection that sat idle before it reuses it, as
// Go's net/http and nginx do, closes one with anything pending and sends the request
// on a new one. Nothing of it counts against the target.
func TestUpstreamIdleBytesNotReadAsAnswer(t *testing.T) {
	t.Parallel()
	cert := testcert.SelfSigned(t)
	cases := []struct {
		name string
		tls  bool
		// first is the first request's body; after writes what follows the
		// connection's first answer, returning false to close the connection.
		first string
		after func(c net.Conn) bool
	}{
		{"second answer while idle", false, chatBody, func(c net.Conn) bool {
			_, _ = io.WriteString(c, jsonAnswer("HTTP/1.1 200 OK", injectedAnswer))
			return true
		}},
		{"408 before an idle close", false, chatBody, func(c net.Conn) bool {
			_, _ = io.WriteString(c, "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
			return false
		}},
		{"answer while idle after a stream", false, streamBody, func(c net.Conn) bool {
			_, _ = io.WriteString(c, jsonAnswer("HTTP/1.1 200 OK", injectedAnswer))
			return true
		}},
		{"answer while idle over TLS", true, chatBody, func(c net.Conn) bool {
			_, _ = io.WriteString(c, jsonAnswer("HTTP/1.1 200 OK", injectedAnswer))
			return true
		}},
		{"close_notify while idle", true, chatBody, func(c net.Conn) bool {
			_ = c.(*tls.Conn).CloseWrite()
			return true
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var tlsCfg *tls.Config
			if tc.tls {
				tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}}
			}
			sent := make(chan struct{})
			u := startRawUpstream(t, tlsCfg, func(u *rawUpstream, n int, c net.Conn, br *bufio.Reader) {
				for i := 0; u.read(n, br); i++ {
					if n == 1 && i == 0 && tc.first == streamBody {
						_, _ = io.WriteString(c, sseAnswer())
					} else {
						_, _ = io.WriteString(c, jsonAnswer("HTTP/1.1 200 OK", labelledAnswer))
					}
					if n == 1 && i == 0 {
						// After the gateway has read the answer whole.
						time.Sleep(20 * time.Millisecond)
						keep := tc.after(c)
						close(sent)
						if !keep {
							return
						}
					}
				}
			})
			cfg := rawConfig(u.addr)
			if tc.tls {
				cfg = httpsUpstreamConfig(u.addr, "timeout: 4s")
			}
			g := startGateway(t, cfg)
			if resp, b := postChat(t, g, tc.first); resp.StatusCode != 200 || strings.Contains(b, "INJECTED") {
				t.Fatalf("first request: %d %q", resp.StatusCode, b)
			}
			select {
			case <-sent:
			case <-time.After(5 * time.Second):
				t.Fatal("the upstream never sent its stray bytes")
			}
			// The connection sits idle past the 1 ms under which it is reused
			// unlooked at (README), and the bytes reach the gateway's socket.
			time.Sleep(20 * time.Millisecond)
			resp, b := postChat(t, g, chatBody)
			if resp.StatusCode != 200 || !strings.Contains(b, `"content":"hi"`) {
				t.Fatalf("second request: %d %q; want its own answer", resp.StatusCode, b)
			}
			if n := u.accepted.Load(); n != 2 || u.requests(1) != 1 {
				t.Errorf("%d connections, the first carried %d requests; want 2 and 1: the stale one is not reused", n, u.requests(1))
			}
			if o := attemptOutcomes(t, g); o["ok"] != 2 || len(o) != 1 {
				t.Errorf("attempt outcomes %v, want 2 ok and nothing else", o)
			}
		})
	}
}

// Bytes that come behind an answer, in the same reads (a Content-Length shorter than
// what the upstream sends: response splitting), leave the connection closed after
// the answer, plain or streamed, however soon the next request comes.
func TestUpstreamBytesBehindAnswerCloseConnection(t *testing.T) {
	t.Parallel()
	for _, first := range []string{chatBody, streamBody} {
		name := "chat"
		if first == streamBody {
			name = "stream"
		}
		t.Run(name, func(t *testing.T) {
			u := startRawUpstream(t, nil, func(u *rawUpstream, n int, c net.Conn, br *bufio.Reader) {
				for i := 0; u.read(n, br); i++ {
					answer := jsonAnswer("HTTP/1.1 200 OK", labelledAnswer)
					if n == 1 && i == 0 && first == streamBody {
						answer = sseAnswer()
					}
					if n == 1 && i == 0 {
						answer += jsonAnswer("HTTP/1.1 200 OK", injectedAnswer)
					}
					_, _ = io.WriteString(c, answer)
				}
			})
			g := startGateway(t, rawConfig(u.addr))
			if resp, b := postChat(t, g, first); resp.StatusCode != 200 || strings.Contains(b, "INJECTED") {
				t.Fatalf("first request: %d %q", resp.StatusCode, b)
			}
			resp, b := postChat(t, g, chatBody)
			if resp.StatusCode != 200 || !strings.Contains(b, `"content":"hi"`) {
				t.Fatalf("second request: %d %q; want its own answer", resp.StatusCode, b)
			}
			if n := u.accepted.Load(); n != 2 || u.requests(1) != 1 {
				t.Errorf("%d connections, the first carried %d requests; want 2 and 1", n, u.requests(1))
			}
		})
	}
}
