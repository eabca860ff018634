package gateway

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// The x-request-id a request is answered with and logged under (the client's own when
// sane, or a new one) is the one its upstream gets, once, so that an access line's
// request can be found in the upstream's logs (vLLM's --enable-request-id-headers
// takes it as its own): a client ID the gateway refuses (over 128 bytes, or not
// printable ASCII) is replaced upstream too.
func TestUpstreamGetsAnsweredRequestID(t *testing.T) {
	up, addr := startHeaderLinesUpstream(t)
	g := startGateway(t, mockConfig(addr, "", ""))
	const body = `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
	for _, tc := range []struct {
		name, header, want string
	}{
		{"none sent", "", ""},
		{"sane one kept", "X-Request-Id: client-id-1\r\n", "client-id-1"},
		{"sent twice", "X-Request-Id: first-id\r\nX-Request-Id: second-id\r\n", "first-id"},
		{"too long", "X-Request-Id: " + strings.Repeat("r", 200) + "\r\n", ""},
		{"with a space", "X-Request-Id: my request\r\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + tc.header +
				fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)) + body
			resp, answer := exchange(t, strings.TrimPrefix(g.url, "http://"), raw)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, answer)
			}
			answered := resp.Header.Get("X-Request-Id")
			if answered == "" || tc.want != "" && answered != tc.want {
				t.Fatalf("answered x-request-id %q, want %q", answered, tc.want)
			}
			if got := up.get("X-Request-Id"); len(got) != 1 || got[0] != answered {
				t.Errorf("answered x-request-id %q; upstream got %q", answered, got)
			}
			if !loggedRequestID(g.logs.String(), answered) {
				t.Errorf("no access line with request_id %q in %s", answered, g.logs.String())
			}
		})
	}
}

// loggedRequestID reports whether logs hold an access line with request_id id.
func loggedRequestID(logs, id string) bool {
	for _, l := range strings.Split(logs, "\n") {
		var line struct {
			Msg       string `json:"msg"`
			RequestID string `json:"request_id"`
		}
		if json.Unmarshal([]byte(l), &line) == nil && line.Msg == "request" && line.RequestID == id {
			return true
		}
	}
	return false
}
