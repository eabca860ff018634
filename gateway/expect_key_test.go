package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// expectHeaders sends the header of a chat call announcing a 30000-byte body with
// `Expect: 100-continue` (curl does for bodies over 1 MiB), and no body, and returns
// the gateway's first answer: a client that asks learns from its headers alone whether
// the request will be taken (RFC 9110 10.1.1).
func expectHeaders(t *testing.T, addr, header string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"+
		header+"Expect: 100-continue\r\nContent-Length: 30000\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// The body is never sent: a server that refuses answers now.
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == 100 {
		return resp, ""
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// Without a key, or with a wrong one, the answer to the expectation is known from the
// header: the final 401 (README: the key is "checked before the body is parsed"), as
// Go's net/http answers when its handler refuses without reading the body, not "100
// Continue", which invited an unauthenticated client to upload up to max_body_bytes
// that the gateway then dropped.
func TestExpectContinueRefusesBadKeyBeforeUpload(t *testing.T) {
	g := startAuthGateway(t)
	for _, tc := range []struct {
		name, header, code string
	}{
		{"wrong bearer key", "Authorization: Bearer sk-wrong-0000", "invalid_api_key"},
		{"wrong api-key", "api-key: sk-wrong-0000", "invalid_api_key"},
		{"no key", "X-Probe: none", "missing_api_key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := expectHeaders(t, g.Addr(), tc.header+"\r\n")
			if resp.StatusCode != 401 {
				t.Fatalf("answer to the expectation: %d %s, want the final 401 %s (no invitation to upload the body)", resp.StatusCode, resp.Status, tc.code)
			}
			if !strings.Contains(b, `"code":"`+tc.code+`"`) {
				t.Errorf("401 body %s, want code %s", b, tc.code)
			}
		})
	}
}

// The expectation is answered as the handler answers the request's headers, in its
// order (serveCall): a Content-Encoding gets its 415 before the key is looked at, a
// key on two lines its 400, and a valid key, or a call to a gateway without keys, is
// invited to send its body.
func TestExpectContinueAnswersHeadersInHandlerOrder(t *testing.T) {
	g := startAuthGateway(t)
	for _, tc := range []struct {
		name, header string
		status       int
		code         string
	}{
		{"valid key", "Authorization: Bearer sk-team-a-1234\r\n", 100, ""},
		{"coded body, wrong key", "Content-Encoding: gzip\r\nAuthorization: Bearer sk-wrong-0000\r\n", 415, "unsupported_content_encoding"},
		{"key on two lines", "api-key: sk-team-a-1234\r\napi-key: sk-other-9999\r\n", 400, "duplicate_api_key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := expectHeaders(t, g.Addr(), tc.header)
			if resp.StatusCode != tc.status || tc.code != "" && !strings.Contains(b, `"code":"`+tc.code+`"`) {
				t.Errorf("%d %s, want %d %s", resp.StatusCode, b, tc.status, tc.code)
			}
		})
	}
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	open := startGateway(t, mockConfig(addr, "", ""))
	if resp, b := expectHeaders(t, open.Addr(), "X-Probe: none\r\n"); resp.StatusCode != 100 {
		t.Errorf("auth.mode none: %d %s, want 100 Continue", resp.StatusCode, b)
	}
}

// A key refused from the headers is recorded as any refused key is, once: one
// access-log line, one 401 in tollgate_requests_total, a tollgate.auth span marked
// error.type=invalid_api_key. The handler does not run after the refused
// expectation.
func TestExpectContinueKeyRefusalRecordedOnce(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	g, exp := startTracedGateway(t, mockConfig(addr, "", "")+`auth: {mode: keys, keys: [{name: team-a, key: sk-team-a-1234}]}
tracing: {exporter: none, sample_ratio: 1}
`)
	const id = "expect-refused-key"
	resp, _ := expectHeaders(t, g.Addr(), "Authorization: Bearer sk-wrong-0000\r\nX-Request-Id: "+id+"\r\n")
	if resp.StatusCode != 401 {
		t.Fatalf("%d, want 401", resp.StatusCode)
	}
	spans := requestSpans(t, g, exp, id)
	if as := spans["tollgate.auth"]; len(as) != 1 {
		t.Errorf("%d tollgate.auth spans, want 1", len(as))
	} else if v, ok := attr(as[0].Snapshot(), "error.type"); !ok || v.AsString() != "invalid_api_key" {
		t.Errorf("auth span error.type %q, want invalid_api_key", v.Emit())
	}
	if n := strings.Count(g.logs.String(), `"request_id":"`+id+`"`); n != 1 {
		t.Errorf("%d access-log lines for the request, want 1", n)
	}
	if n := requestsWith(t, g, map[string]string{"code": "401"}); n != 1 {
		t.Errorf("%v requests counted 401, want 1", n)
	}
}
