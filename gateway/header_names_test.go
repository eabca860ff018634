package gateway

import (
	"fmt"
	"strings"
	"testing"
)

// TestHeaderNameNotTokenRefused: a request header line whose name is not an HTTP
// token ("X Foo: bar", a space inside the name) is accepted by fasthttp's parser.
// RFC 9110 5.1 defines field-name = token, and 2.2 says a sender MUST NOT generate
// protocol elements that do not match the grammar: the gateway, the sender of the
// upstream request, refuses such a request with 400, as nginx does, and passes
// nothing upstream, where strict servers (h11 behind uvicorn/vLLM) refuse the whole
// request and lenient ones may read the name differently from the gateway.
func TestHeaderNameNotTokenRefused(t *testing.T) {
	up, addr := startHeaderLinesUpstream(t)
	g := startGateway(t, mockConfig(addr, "", ""))
	const body = `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
	raw := "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
		"X Foo: bar\r\nX-Team-Tag: one\r\n" +
		fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)) + body
	resp, answer := exchange(t, strings.TrimPrefix(g.url, "http://"), raw)
	if resp.StatusCode != 400 || !strings.Contains(answer, `"code":"bad_request"`) || !resp.Close {
		t.Fatalf("status %d, close %v: %s; want 400 bad_request, the connection closed", resp.StatusCode, resp.Close, answer)
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	for name, v := range up.lines {
		for _, c := range []byte(name) {
			if !validHeaderNameByte(c) {
				t.Errorf("upstream received a header line named %q (value %q): not an HTTP token (RFC 9110 5.1); client got %d", name, v, resp.StatusCode)
				break
			}
		}
	}
	if up.lines != nil {
		t.Errorf("the refused request went upstream: %v", up.lines)
	}
}

// validHeaderNameByte reports whether c is a tchar (RFC 9110 5.6.2).
func validHeaderNameByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// TestHeaderNamesValid checks every byte of every name of a header block against
// RFC 9110's token, as fasthttp passes the block on (RawHeaders).
func TestHeaderNamesValid(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		valid     bool
	}{
		{"none", "", true},
		{"the empty line alone", "\r\n", true},
		{"tokens", "Host: x\r\nContent-Type: application/json\r\nX-Stainless-OS: Linux\r\n\r\n", true},
		{"every tchar", "!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n", true},
		{"a value with spaces and colons", "User-Agent: a b:c \t\r\nX-A: \r\n\r\n", true},
		{"a folded line", "X-A: one\r\n two\r\n\tthree\r\nX-B: b\r\n\r\n", true},
		{"bare line feeds", "X-A: a\nX-B: b\n\n", true},
		{"a space in a name", "X-A: a\r\nX Foo: bar\r\n\r\n", false},
		{"a space before the colon", "X-Foo : bar\r\n\r\n", false},
		{"a tab in a name", "X\tFoo: bar\r\n\r\n", false},
		{"a separator in a name", "X(Foo): bar\r\n\r\n", false},
		{"a slash in a name", "X/Foo: bar\r\n\r\n", false},
		{"a byte over 0x7f in a name", "X-Fö: bar\r\n\r\n", false},
		{"a NUL in a name", "X-F\x00: bar\r\n\r\n", false},
		{"an empty name", ": bar\r\n\r\n", false},
		{"no colon", "X-Foo\r\n\r\n", false},
		{"a name cut short", "X-Foo", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := headerNamesValid([]byte(tc.raw)); got != tc.valid {
				t.Errorf("headerNamesValid(%q) = %v, want %v", tc.raw, got, tc.valid)
			}
		})
	}
}

// BenchmarkHeaderNamesValid measures the check of the header block the official
// OpenAI Python SDK sends, on every API request.
func BenchmarkHeaderNamesValid(b *testing.B) {
	raw := []byte("Host: gateway.internal:8080\r\nAccept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n" +
		"Accept: application/json\r\nContent-Type: application/json\r\nUser-Agent: OpenAI/Python 1.54.4\r\n" +
		"X-Stainless-Lang: python\r\nX-Stainless-Package-Version: 1.54.4\r\nX-Stainless-OS: Linux\r\n" +
		"X-Stainless-Arch: x64\r\nX-Stainless-Runtime: CPython\r\nX-Stainless-Runtime-Version: 3.12.7\r\n" +
		"Authorization: Bearer sk-0123456789abcdef0123456789abcdef\r\nX-Stainless-Async: false\r\n" +
		"X-Stainless-Retry-Count: 0\r\nContent-Length: 97\r\n\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if !headerNamesValid(raw) {
			b.Fatal("refused")
		}
	}
}
