package gateway

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// anthropicShaped reports whether body is an error in the Messages API's shape,
// {"type":"error","error":{"type","message"}}, the one the Anthropic SDKs read.
func anthropicShaped(body string) bool {
	var e struct {
		Type  string `json:"type"`
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	return json.Unmarshal([]byte(body), &e) == nil && e.Type == "error" && e.Error.Type != "" && e.Error.Message != ""
}

// TestMessagesUnreadRequestShape: a request to /v1/messages or
// /v1/messages/count_tokens that the gateway cannot read, sent over raw TCP, is
// refused in the Messages API's error shape, whatever fasthttp's error: a line ended
// by a bare LF (the request line, a field line, the empty line, a trailer; alone or
// behind a request served on the same connection), a field line fasthttp cannot
// parse, a Host that is no host (fasthttp fails the URI after reading the header), a
// request line with two spaces, an absolute-form target, and a body that stalls past
// read_timeout or ends short of its Content-Length (fasthttp resets the header before
// its error handler runs). The same requests to /v1/chat/completions keep OpenAI's.
func TestMessagesUnreadRequestShape(t *testing.T) {
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	g := startGateway(t, strings.Replace(mockConfig(up, "", ""), "shutdown_grace: 5s}",
		"shutdown_grace: 5s, read_timeout: 300ms}", 1))
	cases := []struct {
		name, raw string
		status    int
	}{
		{"bare LF throughout", "POST PATH HTTP/1.1\nHost: x\nContent-Type: application/json\nContent-Length: 2\n\n{}", 400},
		{"bare LF after the request line", "POST PATH HTTP/1.1\nHost: x\r\nContent-Length: 2\r\n\r\n{}", 400},
		{"bare LF after a field", "POST PATH HTTP/1.1\r\nHost: x\nContent-Length: 2\r\n\r\n{}", 400},
		{"bare LF empty line", "POST PATH HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\n{}\r\n\r\n", 400},
		{"bare LF before the request line", "\nPOST PATH HTTP/1.1\nHost: x\nContent-Length: 2\n\n{}", 400},
		{"bare LF trailer", "POST PATH HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX: y\n\r\n", 400},
		{"field line starting with a space", "POST PATH HTTP/1.1\r\n Host: x\r\nContent-Length: 2\r\n\r\n{}", 400},
		{"folded field line", "POST PATH HTTP/1.1\r\nHost: x\r\n Folded: y\r\nContent-Length: 2\r\n\r\n{}", 400},
		{"folded with a query", "POST PATH?beta=true HTTP/1.1\r\nHost: x\r\n\tFolded: y\r\nContent-Length: 2\r\n\r\n{}", 400},
		{"host with a bad port", "POST PATH HTTP/1.1\r\nHost: x:abc\r\nContent-Length: 2\r\n\r\n{}", 400},
		{"host unclosed bracket", "POST PATH HTTP/1.1\r\nHost: [::1\r\nContent-Length: 2\r\n\r\n{}", 400},
		{"absolute form with a bad port", "POST http://x:abc" + "PATH HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", 400},
		{"two spaces before the target", "POST  PATH HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", 400},
		{"NUL in a value", "POST PATH HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nX: \x00\r\n\r\n{}", 400},
		{"two hosts", "POST PATH HTTP/1.1\r\nHost: x\r\nHost: y\r\nContent-Length: 2\r\n\r\n{}", 400},
		{"bad content length", "POST PATH HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}", 400},
		{"body stalls", "POST PATH HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{", 408},
		{"header stalls", "POST PATH HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n", 408},
	}
	for _, path := range []string{"/v1/messages", "/v1/messages/count_tokens", "/v1/chat/completions"} {
		for _, c := range cases {
			t.Run(path+"/"+c.name, func(t *testing.T) {
				resp, body := exchange(t, g.Addr(), strings.ReplaceAll(c.raw, "PATH", path))
				if resp.StatusCode != c.status {
					t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, body)
				}
				if got, want := anthropicShaped(body), path != "/v1/chat/completions"; got != want {
					t.Fatalf("in the Messages API's shape: %v, want %v: %s", got, want, body)
				}
			})
		}
	}
	t.Run("body cut short by the close", func(t *testing.T) {
		c, err := net.Dial("tcp", g.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.WriteString(c, "POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n{")
		_ = c.(*net.TCPConn).CloseWrite()
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 400 || !anthropicShaped(string(b)) {
			t.Fatalf("status %d body %s; want 400 in the Messages API's shape", resp.StatusCode, b)
		}
	})
	t.Run("bare LF behind a request served", func(t *testing.T) {
		c, err := net.Dial("tcp", g.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		body := `{"model":"chat","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`
		_, _ = io.WriteString(c, "POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "+
			itoa(len(body))+"\r\n\r\n"+body)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("first request: status %d", resp.StatusCode)
		}
		_, _ = io.WriteString(c, "POST /v1/messages HTTP/1.1\nHost: x\nContent-Length: 2\n\n{}")
		resp, err = http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 400 || !anthropicShaped(string(b)) {
			t.Fatalf("status %d body %s; want 400 in the Messages API's shape", resp.StatusCode, b)
		}
	})
}
