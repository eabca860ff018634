package gateway

import (
	"strings"
	"testing"
)

// A body asked for with Expect: 100-continue is refused from its headers when what it
// would hold once read, its buffer and the copy sent upstream (twice its
// Content-Length), has no room, not invited and refused after its upload.
// Not t.Parallel: A's buffer must be seen, and E refused, within the upstream's 1 s TTFT.
func TestMaxBufferedBytesExpectCountsUpstreamCopy(t *testing.T) {
	g := serveWithOptions(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 1MiB, max_buffered_bytes: 1MiB}
auth: {mode: none}
backends: {demo: {provider: mock, model: mock-1, mock: {ttft: 1s, max_tokens: 2}}}
endpoints: [{name: chat, type: chat, routes: [{backend: demo}]}]
`, Options{})
	// A's 300,000-byte body is read and held with its upstream copy: 600,000 bytes.
	a := dialRaw(t, g, nil)
	ab := padBody(chatPad, 300000)
	postBytes(t, a, "/v1/chat/completions", "", len(ab), ab)
	waitBuffered(t, g, 600000, "while A's upstream works")
	// E's 300,000 bytes fit beside A's as a buffer (900,000), but not with their
	// copy (1,200,000 over 1,048,576).
	e := dialRaw(t, g, nil)
	postBytes(t, e, "/v1/chat/completions", "Expect: 100-continue\r\n", 300000, "")
	resp, got := nextAnswer(t, e)
	if resp.StatusCode != 503 || !strings.Contains(got, `"code":"overloaded"`) || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("an expectation for a body whose copy has no room got %d %s; want 503 overloaded from its headers", resp.StatusCode, got)
	}
	if resp, _ := nextAnswer(t, a); resp.StatusCode != 200 {
		t.Fatalf("A got %d", resp.StatusCode)
	}
}
