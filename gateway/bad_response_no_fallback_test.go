package gateway

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// An upstream that answered, but not in the API (a 200 whose body is not one JSON
// object, a body its connection's close cut short after the header, a stream whose
// first event is an HTML page), did the work the request asked for: the client gets
// 502 upstream_bad_response from that one attempt, neither retried nor sent to the
// endpoint's fallbacks, each of which would generate the answer again.
func TestBadResponseNotSentToFallback(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, answer, body string }{
		{"body not JSON", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello", chatBody},
		{"body cut after its header", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"id\":", chatBody},
		{"stream's first event not JSON", "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 16\r\n\r\ndata: <html>\n\n\n",
			`{"model":"chat","stream":true,"max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr, hits := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
				_, _ = io.WriteString(c, tc.answer)
				c.Close()
			})
			spare, spareAddr := startMock(t, mockllm.Options{MaxTokens: 4})
			g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model}
  spare: {provider: openai, base_url: "http://`+spareAddr+`/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], retries: 2, fallbacks: [spare]}
logging: {level: info, format: json}
`)
			resp, body := postChat(t, g, tc.body)
			if resp.StatusCode != 502 || !strings.Contains(body, "upstream_bad_response") {
				t.Fatalf("client got %d %s; want 502 upstream_bad_response", resp.StatusCode, body)
			}
			if got := resp.Header.Get("X-Tollgate-Backend"); got != "up" {
				t.Errorf("x-tollgate-backend %q, want up, whose answer it was", got)
			}
			if n := hits.Load(); n != 1 {
				t.Errorf("upstream asked %d times, want 1", n)
			}
			if n := spare.Stats().Requests["/v1/chat/completions"]; n != 0 {
				t.Errorf("fallback asked %d times, want none", n)
			}
			if line := accessLine(t, g, resp.Header.Get("X-Request-Id")); line["attempts"] != 1.0 {
				t.Errorf("access log attempts %v, want 1", line["attempts"])
			}
		})
	}
}
