package gateway

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// TestLongRequestLineStatus: a request over the 8 KiB read buffer is refused with 414
// URI Too Long when its request line alone does not fit (RFC 9110 §15.5.15, as nginx
// answers it), and with 431 when its header fields overflow (RFC 6585 §5), each in
// the API's error shape: a 431 saying "headers" sends the developer of a long URL
// looking through headers a few bytes long.
func TestLongRequestLineStatus(t *testing.T) {
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	g := startGateway(t, mockConfig(up, "", ""))
	long := strings.Repeat("a", 9000)
	tests := []struct {
		name   string
		raw    string
		status int
		code   string
	}{
		{"long URL", "GET /v1/models?after=" + long + " HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"},
		{"long URL, POST", "POST /v1/chat/completions?" + long + " HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", 414, "uri_too_long"},
		{"long header", "GET /v1/models HTTP/1.1\r\nHost: x\r\nCookie: " + long + "\r\n\r\n", 431, "request_header_too_large"},
		{"long header after a longish URL", "GET /v1/models?after=" + strings.Repeat("b", 500) + " HTTP/1.1\r\nHost: x\r\nCookie: " +
			strings.Repeat("k=v; ", 2000) + "\r\n\r\n", 431, "request_header_too_large"},
		{"many headers", "GET /v1/models HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-Filler: "+strings.Repeat("f", 90)+"\r\n", 100) + "\r\n",
			431, "request_header_too_large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := exchange(t, g.Addr(), tc.raw)
			var e struct {
				Error struct{ Code string } `json:"error"`
			}
			if resp.StatusCode != tc.status || json.Unmarshal([]byte(b), &e) != nil || e.Error.Code != tc.code {
				t.Errorf("%d %s; want %d with code %s in the API's error shape", resp.StatusCode, b, tc.status, tc.code)
			}
		})
	}
}
