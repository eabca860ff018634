package gateway

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// chatPad begins a chat body whose size padBody sets with its user field.
const chatPad = `{"model":"chat","messages":[{"role":"user","content":"hi"}],"user":"`

// padBody is head followed by a string's worth of a's and its end: n bytes in all.
func padBody(head string, n int) string {
	return head + strings.Repeat("a", n-len(head)-2) + `"}`
}

// writeRaw writes s on c's connection.
func writeRaw(t *testing.T, c *rawClient, s string) {
	t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		t.Fatal(err)
	}
}

// postBytes sends a POST to path whose body has length bytes, with the header lines
// given (each ending in CRLF) and the first bytes of the body, part.
func postBytes(t *testing.T, c *rawClient, path, header string, length int, part string) {
	t.Helper()
	writeRaw(t, c, "POST "+path+" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+header+"Content-Length: "+strconv.Itoa(length)+"\r\n\r\n"+part)
}

// nextAnswer reads the next answer on c, and its body.
func nextAnswer(t *testing.T, c *rawClient) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// waitBuffered waits for tollgate_request_body_buffered_bytes to read want.
func waitBuffered(t *testing.T, g *gw, want float64, what string) {
	t.Helper()
	if !pollFor(5*time.Second, func() bool {
		v, _ := gaugeValue(t, g.Server, "tollgate_request_body_buffered_bytes")
		return v == want
	}) {
		v, _ := gaugeValue(t, g.Server, "tollgate_request_body_buffered_bytes")
		t.Fatalf("tollgate_request_body_buffered_bytes = %v %s, want %v", v, what, want)
	}
}
