package gateway

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// fasthttp quotes a header or trailer field's value in its parse error ("invalid
// header value %q") whatever SecureErrorLogMessage says: an upstream that echoes the
// request's Authorization header in a field with a byte HTTP forbids (a debugging
// echo) had the backend's key logged in "upstream failed" or "upstream stream
// failed". The client gets 502 upstream_bad_response, or the stream's error event,
// and neither the answer nor the log carries the key.
func TestUpstreamBadFieldValueNotLogged(t *testing.T) {
	t.Parallel()
	const key = "sk-field-value-7d31c9ab"
	cases := []struct {
		name   string
		stream bool
		answer func(auth string) string
	}{
		{"header value", false, func(auth string) string {
			return "HTTP/1.1 200 OK\r\nX-Echo: " + auth + "\x01\r\nContent-Length: 0\r\n\r\n"
		}},
		{"trailer value", false, func(auth string) string {
			return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
				trailerChunk(labelledAnswer) + "0\r\nX-Echo: " + auth + "\x01\r\n\r\n"
		}},
		{"stream trailer value", true, func(auth string) string {
			return "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" +
				trailerChunk(sseChunk("hi")) + "0\r\nX-Echo: " + auth + "\x01\r\n\r\n"
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, req *http.Request) {
				_, _ = io.WriteString(c, tc.answer(req.Header.Get("Authorization")))
			})
			g := startGateway(t, strings.Replace(rawConfig(addr), "model: up-model,", "model: up-model, api_key: "+key+",", 1))
			body := chatBody
			if tc.stream {
				body = streamBody
			}
			resp, b := postChat(t, g, body)
			switch {
			case strings.Contains(b, key):
				t.Errorf("answer (%d) carries the key: %q", resp.StatusCode, b)
			case !tc.stream && (resp.StatusCode != 502 || !strings.Contains(b, `"code":"upstream_bad_response"`)):
				t.Errorf("answer %d %q, want 502 upstream_bad_response", resp.StatusCode, b)
			case tc.stream && (resp.StatusCode != 200 || !strings.Contains(b, `"code":"upstream_bad_response"`)):
				t.Errorf("answer %d %q, want a stream ended by an upstream_bad_response event", resp.StatusCode, b)
			}
			deadline := time.Now().Add(2 * time.Second)
			for !strings.Contains(g.logs.String(), "upstream") && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			l := g.logs.String()
			if !strings.Contains(l, "invalid") {
				t.Fatalf("no failure logged:\n%s", l)
			}
			if strings.Contains(l, key) {
				t.Errorf("log carries the key:\n%s", l)
			}
		})
	}
}
