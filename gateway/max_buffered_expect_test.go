package gateway

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A body asked for with Expect: 100-continue is refused from its headers when what it
// would hold once read, its buffer and the copy sent upstream (twice its
// Content-Length), has no room, not invited and refused after its upload.
func TestMaxBufferedBytesExpectCountsUpstreamCopy(t *testing.T) {
	g := serveWithOptions(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 1MiB, max_buffered_bytes: 1MiB}
auth: {mode: none}
backends: {demo: {provider: mock, model: mock-1, mock: {ttft: 1s, max_tokens: 2}}}
endpoints: [{name: chat, type: chat, routes: [{backend: demo}]}]
`, Options{})
	body := func(n int) string {
		head := `{"model":"chat","messages":[{"role":"user","content":"hi"}],"user":"`
		return head + strings.Repeat("a", n-len(head)-2) + `"}`
	}
	// A's 300,000-byte body is read and held with its upstream copy: 600,000 bytes.
	a := dialRaw(t, g, nil)
	ab := body(300000)
	if _, err := io.WriteString(a.conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(ab))+"\r\n\r\n"+ab); err != nil {
		t.Fatal(err)
	}
	if !pollFor(2*time.Second, func() bool {
		v, _ := gaugeValue(t, g.Server, "tollgate_request_body_buffered_bytes")
		return v == 600000
	}) {
		v, _ := gaugeValue(t, g.Server, "tollgate_request_body_buffered_bytes")
		t.Fatalf("tollgate_request_body_buffered_bytes = %v while A's upstream works, want 600000", v)
	}
	// E's 300,000 bytes fit beside A's as a buffer (900,000), but not with their
	// copy (1,200,000 over 1,048,576).
	e := dialRaw(t, g, nil)
	if _, err := io.WriteString(e.conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: 300000\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(e.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(got), `"code":"overloaded"`) || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("an expectation for a body whose copy has no room got %d %s; want 503 overloaded from its headers", resp.StatusCode, got)
	}
	resp, err = http.ReadResponse(a.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("A got %d", resp.StatusCode)
	}
}
