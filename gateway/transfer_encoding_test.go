package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// TestTransferEncodingNotChunkedRefused: RFC 9112 §6.3 (4): "If a Transfer-Encoding
// header field is present in a request and the chunked transfer coding is not the
// final encoding, the message body length cannot be determined reliably; the server
// MUST respond with the 400 (Bad Request) status code and then close the
// connection." ("identity" is no longer a registered transfer coding; nginx answers
// such a request 501 and closes.) fasthttp takes `Transfer-Encoding: identity`
// without Content-Length for an empty body, and would serve the bytes the client sent
// as the body as a request of their own; with one, a body whose length the gateway
// and a proxy in front of it may read otherwise. Neither is served, on either
// listener.
func TestTransferEncodingNotChunkedRefused(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{})
	g := startGateway(t, mockConfig(addr, "", ""))
	const next = "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, tc := range []struct {
		name, addr, raw string
	}{
		{"identity, no Content-Length", g.Addr(),
			"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: identity\r\n\r\n" + next},
		{"identity with Content-Length", g.Addr(),
			"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: IDENTITY\r\nContent-Length: " +
				strconv.Itoa(len(chatBody)) + "\r\n\r\n" + chatBody + next},
		{"identity on a GET", g.Addr(), "GET /v1/models HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n" + next},
		{"identity, expecting 100-continue", g.Addr(),
			"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nTransfer-Encoding: identity\r\n\r\n" + next},
		{"identity on the admin listener", g.AdminAddr(),
			"POST /admin/reload HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: identity\r\n\r\n" + next},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", tc.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(conn, tc.raw); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 400 && resp.StatusCode != 501 {
				t.Errorf("status %d (%s), want 400 for a request whose body length cannot be determined", resp.StatusCode, b)
			}
			if !resp.Close {
				t.Errorf("answer keeps the connection open (Connection: %q), want it closed after the 400", resp.Header.Get("Connection"))
			}
			if resp2, err := http.ReadResponse(br, nil); err == nil {
				b2, _ := io.ReadAll(resp2.Body)
				resp2.Body.Close()
				t.Errorf("the bytes sent after the header were served as a request of their own: %d %.80s", resp2.StatusCode, b2)
			}
		})
	}
}

// TestTransferEncodingChunkedServed: chunked, in any case and with spaces around it,
// is the coding a request body may come in; it is served on a connection that stays
// open.
func TestTransferEncodingChunkedServed(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	g := startGateway(t, mockConfig(addr, "", ""))
	conn, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	raw := "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding:  Chunked \r\n\r\n" +
		strconv.FormatInt(int64(len(chatBody)), 16) + "\r\n" + chatBody + "\r\n0\r\n\r\n" +
		"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	for _, want := range []string{"chat completion", "model list"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", want, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Close {
			t.Errorf("%s: %d (close %v) %.200s, want 200 on a connection kept open", want, resp.StatusCode, resp.Close, b)
		}
	}
}

// transferCoded reads every Transfer-Encoding line of the header block as it came.
func TestTransferCoded(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		want      bool
	}{
		{"none", "Host: x\r\nContent-Length: 3\r\n\r\n", false},
		{"chunked", "Host: x\r\nTransfer-Encoding: chunked\r\n\r\n", false},
		{"chunked in another case, spaces around", "transfer-encoding: \tCHUNKED \r\n\r\n", false},
		{"identity", "Host: x\r\nTransfer-Encoding: identity\r\n\r\n", true},
		{"identity, lower-case name", "Host: x\r\ntransfer-encoding: identity\r\n\r\n", true},
		{"empty", "Transfer-Encoding:\r\n\r\n", true},
		{"gzip before chunked", "Transfer-Encoding: gzip, chunked\r\n\r\n", true},
		{"folded onto the next line", "Transfer-Encoding: chunked\r\n identity\r\n\r\n", true},
		{"a fold of another field", "X-A: 1\r\n 2\r\nTransfer-Encoding: chunked\r\n\r\n", false},
		{"line feeds alone", "Host: x\nTransfer-Encoding: identity\n\n", true},
		{"after the block", "Host: x\r\n\r\nTransfer-Encoding: identity\r\n", false},
		{"a name it begins", "Transfer-Encoding-X: identity\r\n\r\n", false},
		{"no block", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := transferCoded([]byte(tc.raw)); got != tc.want {
				t.Errorf("transferCoded(%q) = %v, want %v", tc.raw, got, tc.want)
			}
		})
	}
}

// unframed finds the identity coding fasthttp takes, with a Content-Length or none,
// and reads the raw header block only for a request framed so.
func TestUnframed(t *testing.T) {
	const post = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
	for _, tc := range []struct {
		name, raw string
		want      bool
	}{
		{"Content-Length", post + "Content-Length: 3\r\n\r\n", false},
		{"Content-Length, Connection: close", post + "Connection: close\r\nContent-Length: 3\r\n\r\n", false},
		{"chunked", post + "Transfer-Encoding: chunked\r\n\r\n", false},
		{"chunked, Connection: close", post + "Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n", false},
		{"no length", post + "\r\n", false},
		{"a GET", "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n", false},
		{"identity", post + "Transfer-Encoding: identity\r\n\r\n", true},
		{"identity with Content-Length", post + "Transfer-Encoding: identity\r\nContent-Length: 3\r\n\r\n", true},
		{"identity with Content-Length 0", post + "Content-Length: 0\r\nTransfer-Encoding: Identity\r\n\r\n", true},
		{"identity on a GET", "GET /v1/models HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := unframed(parsedHeader(t, tc.raw)); got != tc.want {
				t.Errorf("unframed = %v, want %v", got, tc.want)
			}
		})
	}
}

// parsedHeader is the request header fasthttp reads from raw, up to its empty line.
func parsedHeader(tb testing.TB, raw string) *fasthttp.RequestHeader {
	tb.Helper()
	h := new(fasthttp.RequestHeader)
	if err := h.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		tb.Fatal(err)
	}
	return h
}

// BenchmarkUnframed is the framing check of an API call (Content-Length, kept alive),
// which every request pays.
func BenchmarkUnframed(b *testing.B) {
	h := parsedHeader(b, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-1\r\n"+
		"Content-Type: application/json\r\nContent-Length: 3\r\n\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if unframed(h) {
			b.Fatal("unframed")
		}
	}
}
