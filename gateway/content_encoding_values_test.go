package gateway

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// TestEveryContentEncodingValueChecked: a body's codings may come on several
// Content-Encoding lines (RFC 9110 reads them as one list), and an empty one among
// them codes nothing: a gzip on any line is refused with 415, whatever the line
// before it said, and a request whose lines say only identity (or nothing) is served.
// The 415 names the one coding taken in Accept-Encoding (RFC 9110 15.5.16, RFC 7694 3),
// so that a client retries uncompressed.
func TestEveryContentEncodingValueChecked(t *testing.T) {
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	g := startGateway(t, mockConfig(up, "", ""))
	for _, c := range []struct {
		name   string
		lines  []string
		status int
	}{
		{"empty then gzip", []string{"Content-Encoding:", "Content-Encoding: gzip"}, 415},
		{"blank then br", []string{"Content-Encoding:  ", "Content-Encoding: br"}, 415},
		{"identity then gzip", []string{"Content-Encoding: identity", "Content-Encoding: gzip"}, 415},
		{"empty then identity", []string{"Content-Encoding:", "Content-Encoding: identity"}, 200},
		{"empty", []string{"Content-Encoding:"}, 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, br := dialGateway(t, g)
			if _, err := io.WriteString(conn, rawRequest(t, g, chatBody, c.lines...)); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Fatalf("%q: %d %s, want %d", c.lines, resp.StatusCode, b, c.status)
			}
			if c.status == 415 && !strings.Contains(string(b), `"code":"unsupported_content_encoding"`) {
				t.Errorf("%q: %s, want unsupported_content_encoding", c.lines, b)
			}
			if c.status == 415 && resp.Header.Get("Accept-Encoding") != "identity" {
				t.Errorf("%q: 415 with Accept-Encoding %q, want identity", c.lines, resp.Header.Values("Accept-Encoding"))
			}
		})
	}
}

// BenchmarkIdentityCoded is the Content-Encoding check on a request without one, as
// nearly every request comes.
func BenchmarkIdentityCoded(b *testing.B) {
	var h fasthttp.RequestHeader
	h.SetMethod("POST")
	h.SetRequestURI("/v1/chat/completions")
	h.SetContentType("application/json")
	h.Set("Authorization", "Bearer sk-test")
	h.Set("User-Agent", "OpenAI/Python 1.50.0")
	h.Set("X-Stainless-Lang", "python")
	h.Set("Accept", "application/json")
	b.ReportAllocs()
	for b.Loop() {
		if !identityCoded(&h) {
			b.Fatal("refused")
		}
	}
}
