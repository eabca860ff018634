package gateway

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// rawRecorder is an upstream that records the exact bytes of every request it gets
// (header block and body) and answers each with the same bytes.
type rawRecorder struct {
	addr   string
	mu     sync.Mutex
	raws   []string
	heads  []string
	bodies []string
}

func (u *rawRecorder) last(t *testing.T) (head, body string) {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.heads) == 0 {
		t.Fatal("upstream got no request")
	}
	return u.heads[len(u.heads)-1], u.bodies[len(u.bodies)-1]
}

func startRawRecorder(t *testing.T, answer string) *rawRecorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	u := &rawRecorder{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					var raw bytes.Buffer
					tee := bufio.NewReader(io.TeeReader(br, &raw))
					req, err := http.ReadRequest(tee)
					if err != nil {
						return
					}
					body, _ := io.ReadAll(req.Body)
					// Whatever tee buffered beyond this request is lost; the gateway
					// sends one request at a time on a connection, so that is none.
					r := raw.String()
					head := r
					if i := strings.Index(r, "\r\n\r\n"); i >= 0 {
						head = r[:i+2]
					}
					u.mu.Lock()
					u.raws = append(u.raws, r)
					u.heads = append(u.heads, head)
					u.bodies = append(u.bodies, string(body))
					u.mu.Unlock()
					if _, err := io.WriteString(c, answer); err != nil {
						return
					}
				}
			}()
		}
	}()
	return u
}

func rawAnswer(extraHeaders, ctype, body string) string {
	return "HTTP/1.1 200 OK\r\nContent-Type: " + ctype + "\r\n" + extraHeaders +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// rawHeaderLines parses a raw header block into its lines (name: value), the
// request line left out.
func rawHeaderLines(head string) [][2]string {
	var out [][2]string
	lines := strings.Split(strings.TrimRight(head, "\r\n"), "\r\n")
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, ":")
		out = append(out, [2]string{k, strings.TrimSpace(v)})
	}
	return out
}

func rawHeaderValues(head, name string) []string {
	var vs []string
	for _, kv := range rawHeaderLines(head) {
		if strings.EqualFold(kv[0], name) {
			vs = append(vs, kv[1])
		}
	}
	return vs
}

const rawChatBody = `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`

// TestConnectionNamedRequestIDStillGoesUp: every answer's x-request-id is the ID the
// upstream gets as its X-Request-Id (README). A client whose Connection header names
// X-Request-Id makes its own line hop-by-hop, not the gateway's, which replaced it.
func TestConnectionNamedRequestIDStillGoesUp(t *testing.T) {
	up := startRawRecorder(t, rawAnswer("", "application/json", string(benchChatResp)))
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  oa: {provider: openai, base_url: "http://`+up.addr+`/v1", model: up-model, api_key: sk-operator-key-123456}
endpoints:
  - {name: chat, type: chat, routes: [{backend: oa}]}
logging: {level: error}
`)
	addr := strings.TrimPrefix(g.url, "http://")
	for _, tc := range []struct{ name, hdr string }{
		{"client-id", "Connection: close, X-Request-Id\r\nX-Request-Id: client-id-7\r\n"},
		{"no-client-id", "Connection: close, X-Request-Id\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + tc.hdr +
				fmt.Sprintf("Content-Length: %d\r\n\r\n", len(rawChatBody)) + rawChatBody
			resp, answer := exchange(t, addr, raw)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, answer)
			}
			id := resp.Header.Get("X-Request-Id")
			head, _ := up.last(t)
			if vs := rawHeaderValues(head, "X-Request-Id"); len(vs) != 1 || vs[0] != id {
				t.Errorf("answer x-request-id %q, upstream got X-Request-Id %q; want the same ID upstream\n%s", id, vs, head)
			}
		})
	}
}

// TestConnectionNamedTraceparentStillGoesUp: with an exporter the upstream sees the
// gateway's attempt span as its parent (README, Tracing), whatever the client's
// Connection header names; with none the client's traceparent is the client's, and
// one its Connection names is hop-by-hop and dropped.
func TestConnectionNamedTraceparentStillGoesUp(t *testing.T) {
	up := startRawRecorder(t, rawAnswer("", "application/json", string(benchChatResp)))
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  oa: {provider: openai, base_url: "http://`+up.addr+`/v1", model: up-model, api_key: sk-operator-key-123456}
endpoints:
  - {name: chat, type: chat, routes: [{backend: oa}]}
tracing: {exporter: otlp-http, endpoint: "127.0.0.1:1", insecure: true, sample_ratio: 1}
logging: {level: error}
`)
	addr := strings.TrimPrefix(g.url, "http://")
	raw := "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
		"Connection: close, traceparent\r\nTraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n" +
		fmt.Sprintf("Content-Length: %d\r\n\r\n", len(rawChatBody)) + rawChatBody
	resp, answer := exchange(t, addr, raw)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, answer)
	}
	head, _ := up.last(t)
	if vs := rawHeaderValues(head, "Traceparent"); len(vs) != 1 || strings.Contains(vs[0], "b7ad6b7169203331") {
		t.Errorf("upstream got traceparent %q, want one, the gateway's attempt span's\n%s", vs, head)
	}

	untraced := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  oa: {provider: openai, base_url: "http://`+up.addr+`/v1", model: up-model, api_key: sk-operator-key-123456}
endpoints:
  - {name: chat, type: chat, routes: [{backend: oa}]}
logging: {level: error}
`)
	resp, answer = exchange(t, strings.TrimPrefix(untraced.url, "http://"), raw)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, answer)
	}
	head, _ = up.last(t)
	if vs := rawHeaderValues(head, "Traceparent"); len(vs) != 0 {
		t.Errorf("without tracing, upstream got the traceparent the client's Connection named: %q", vs)
	}
}
