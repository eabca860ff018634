package gateway

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// README, Admin API: errors are in the API's error shape. A request the admin
// listener could not read (a body over its limit, a Content-Length that is no number,
// headers over its buffer) was answered by fasthttp's own text/plain "Error when
// parsing request" or "Too big request header", with 400 for a body too large; it is
// now the error shape, 413 request_too_large for the body (from the headers alone when
// the client waits for 100 Continue). A body at the limit is read.
func TestAdminUnreadableRequestInErrorShape(t *testing.T) {
	t.Parallel()
	_, base := startAdminGateway(t)
	addr := strings.TrimPrefix(base, "http://")
	for _, c := range []struct {
		name, head string
		status     int
		code       string
	}{
		{"body over the limit", "POST /admin/keys/a/revoke HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer tok\r\nContent-Length: " + strconv.Itoa(adminMaxBody+1) + "\r\n\r\n", 413, "request_too_large"},
		// Answered from its headers, not "100 Continue" and then 413 for the body.
		{"body over the limit, expecting 100-continue", "POST /admin/keys/a/revoke HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer tok\r\nExpect: 100-continue\r\nContent-Length: " + strconv.Itoa(adminMaxBody+1) + "\r\n\r\n", 413, "request_too_large"},
		{"body at the limit", "POST /admin/endpoints/chat/weights HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer tok\r\nContent-Length: " + strconv.Itoa(adminMaxBody) + "\r\n\r\n" + strings.Repeat(" ", adminMaxBody), 400, "invalid_weights"},
		{"length not a number", "POST /admin/reload HTTP/1.1\r\nHost: localhost\r\nContent-Length: ten\r\n\r\n", 400, "bad_request"},
		{"headers over 8 KiB", "GET /admin/keys HTTP/1.1\r\nHost: localhost\r\nX-Pad: " + strings.Repeat("p", 9<<10) + "\r\n\r\n", 431, "request_header_too_large"},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.WriteString(conn, c.head); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != c.status {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, c.status, raw)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q, want JSON: %s", ct, raw)
			}
			var body map[string]any
			if err := json.Unmarshal(raw, &body); err != nil {
				t.Fatalf("body is not JSON: %q", raw)
			}
			checkAdminError(t, c.name, body, c.code)
		})
	}
}
