package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// A request the gateway cannot read (headers over the read buffer, a request line
// over it, a body stalled past read_timeout, an unknown Transfer-Encoding) is answered
// in the shape of the API its path names, as every other error is: on /v1/messages
// and its count_tokens Anthropic's {"type":"error","error":{"type","message"}}, which
// its SDKs read, elsewhere OpenAI's.
func TestUnreadableRequestAnsweredInItsAPIShape(t *testing.T) {
	t.Parallel()
	g := startGateway(t, strings.Replace(maxBodyConfig(largeBodyUpstream(t), "1MiB"), "max_body_bytes: 1MiB}",
		"max_body_bytes: 1MiB, read_timeout: 500ms}", 1))
	long := strings.Repeat("a", 9000)
	data := chatOfSize(100)
	stalled := func(path string) string {
		return "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
			strconv.FormatInt(int64(len(data)), 16) + "\r\n" + data
	}
	for _, tc := range []struct {
		name, raw string
		status    int
		anthropic bool
		code      string // OpenAI's error code, or Anthropic's error type
	}{
		{"messages, long header", "POST /v1/messages HTTP/1.1\r\nHost: x\r\nX-Filler: " + long + "\r\n\r\n", 431, true, "invalid_request_error"},
		{"messages after empty lines, long header", "\r\n\r\nPOST /v1/messages HTTP/1.1\r\nHost: x\r\nX-Filler: " + long + "\r\n\r\n", 431, true, "invalid_request_error"},
		{"count_tokens, long header", "POST /v1/messages/count_tokens HTTP/1.1\r\nHost: x\r\nX-Filler: " + long + "\r\n\r\n", 431, true, "invalid_request_error"},
		{"messages, long query", "POST /v1/messages?beta=" + long + " HTTP/1.1\r\nHost: x\r\n\r\n", 414, true, "invalid_request_error"},
		{"messages, body stalled", stalled("/v1/messages"), 408, true, "invalid_request_error"},
		{"messages, unknown transfer coding", "POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400, true, "invalid_request_error"},
		{"chat, long header", "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Filler: " + long + "\r\n\r\n", 431, false, "request_header_too_large"},
		{"a path like messages, long header", "POST /v1/messagesx HTTP/1.1\r\nHost: x\r\nX-Filler: " + long + "\r\n\r\n", 431, false, "request_header_too_large"},
		{"chat, body stalled", stalled("/v1/chat/completions"), 408, false, "request_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, br := dialGateway(t, g)
			if _, err := io.WriteString(c, tc.raw); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d %s, want %d", resp.StatusCode, b, tc.status)
			}
			var e struct {
				Type  string `json:"type"`
				Error struct {
					Type    string `json:"type"`
					Code    string `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatalf("body %s: %v", b, err)
			}
			if tc.anthropic {
				if e.Type != "error" || e.Error.Type != tc.code || e.Error.Code != "" || e.Error.Message == "" {
					t.Errorf("body %s, want Anthropic's error shape with type %s", b, tc.code)
				}
			} else if e.Type != "" || e.Error.Code != tc.code || e.Error.Message == "" {
				t.Errorf("body %s, want OpenAI's error shape with code %s", b, tc.code)
			}
		})
	}
}
