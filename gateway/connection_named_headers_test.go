package gateway

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// headerRecorder is an upstream that answers every request with benchChatResp and
// keeps the header of the last one it got.
func headerRecorder(t *testing.T) (addr string, last func() http.Header) {
	var mu sync.Mutex
	var got http.Header
	addr, _ = scriptedUpstream(t, func(_ int, c net.Conn, req *http.Request) {
		mu.Lock()
		got = req.Header.Clone()
		mu.Unlock()
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "+
			strconv.Itoa(len(benchChatResp))+"\r\n\r\n"+string(benchChatResp))
	})
	return addr, func() http.Header {
		mu.Lock()
		defer mu.Unlock()
		if got == nil {
			t.Fatal("upstream got no request")
		}
		return got
	}
}

// namedHeadersGateway is a gateway in front of upstream, with tracing's lines added.
func namedHeadersGateway(t *testing.T, upstream, tracing string) *gw {
	return startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  oa: {provider: openai, base_url: "http://`+upstream+`/v1", model: up-model, api_key: sk-operator-key-123456}
endpoints:
  - {name: chat, type: chat, routes: [{backend: oa}]}
logging: {level: error}
`+tracing)
}

// chatWithHeaders sends a chat request with the raw header lines hdr to g.
func chatWithHeaders(t *testing.T, g *gw, hdr string) *http.Response {
	t.Helper()
	const body = `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
	raw := "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + hdr +
		fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)) + body
	resp, answer := exchange(t, strings.TrimPrefix(g.url, "http://"), raw)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, answer)
	}
	return resp
}

// TestConnectionNamedRequestIDStillGoesUp: every answer's x-request-id is the ID the
// upstream gets as its X-Request-Id (README). A client whose Connection header names
// X-Request-Id makes its own line hop-by-hop, not the gateway's, which replaced it.
func TestConnectionNamedRequestIDStillGoesUp(t *testing.T) {
	up, last := headerRecorder(t)
	g := namedHeadersGateway(t, up, "")
	for _, tc := range []struct{ name, hdr string }{
		{"client-id", "Connection: close, X-Request-Id\r\nX-Request-Id: client-id-7\r\n"},
		{"no-client-id", "Connection: close, X-Request-Id\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := chatWithHeaders(t, g, tc.hdr).Header.Get("X-Request-Id")
			if vs := last()["X-Request-Id"]; len(vs) != 1 || vs[0] != id {
				t.Errorf("answer x-request-id %q, upstream got X-Request-Id %q; want the same ID upstream", id, vs)
			}
		})
	}
}

// TestConnectionNamedTraceparentStillGoesUp: with an exporter the upstream sees the
// gateway's attempt span as its parent (README, Tracing), whatever the client's
// Connection header names; with none the client's traceparent is the client's, and
// one its Connection names is hop-by-hop and dropped.
func TestConnectionNamedTraceparentStillGoesUp(t *testing.T) {
	up, last := headerRecorder(t)
	const hdr = "Connection: close, traceparent\r\nTraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"

	chatWithHeaders(t, namedHeadersGateway(t, up,
		`tracing: {exporter: otlp-http, endpoint: "127.0.0.1:1", insecure: true, sample_ratio: 1}`), hdr)
	if vs := last()["Traceparent"]; len(vs) != 1 || strings.Contains(vs[0], "b7ad6b7169203331") {
		t.Errorf("upstream got traceparent %q, want one, the gateway's attempt span's", vs)
	}

	chatWithHeaders(t, namedHeadersGateway(t, up, ""), hdr)
	if vs := last()["Traceparent"]; len(vs) != 0 {
		t.Errorf("without tracing, upstream got the traceparent the client's Connection named: %q", vs)
	}
}
