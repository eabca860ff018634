package gateway

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
)

// An answer whose header names both Transfer-Encoding: chunked and Content-Length is
// 502 upstream_bad_response, plain or streamed, whichever comes first and however
// spelled, and its connection is closed: RFC 9112 section 6.3 (3) says such a
// message "ought to be handled as an error" (request smuggling, response splitting),
// and nginx answers 502 for it. An interim 1xx header's Content-Length is not the
// answer's.
func TestUpstreamBothFramingsIs502(t *testing.T) {
	t.Parallel()
	chunked := func(body string) string {
		return strconv.FormatInt(int64(len(body)), 16) + "\r\n" + body + "\r\n0\r\n\r\n"
	}
	cases := []struct {
		name, before, framing string
		ok                    bool
	}{
		{"Content-Length first", "", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", false},
		{"Transfer-Encoding first", "", "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", false},
		{"lower case, blank before the colon", "", "transfer-encoding: chunked\r\ncontent-length : 5\r\n", false},
		{"Content-Length in an interim answer", "HTTP/1.1 103 Early Hints\r\nContent-Length: 0\r\n\r\n", "Transfer-Encoding: chunked\r\n", true},
	}
	for _, tc := range cases {
		for _, stream := range []bool{false, true} {
			t.Run(tc.name+"/stream="+strconv.FormatBool(stream), func(t *testing.T) {
				ct, body, req := "application/json", labelledAnswer, chatBody
				if stream {
					ct, body, req = "text/event-stream", sseChunk("hi")+"data: [DONE]\n\n", streamBody
				}
				u := startRawUpstream(t, nil, func(u *rawUpstream, n int, c net.Conn, br *bufio.Reader) {
					for u.read(n, br) {
						_, _ = io.WriteString(c, tc.before+"HTTP/1.1 200 OK\r\nContent-Type: "+ct+"\r\n"+tc.framing+"\r\n"+chunked(body))
					}
				})
				g := startGateway(t, rawConfig(u.addr))
				for i := range 2 {
					resp, b := postChat(t, g, req)
					if tc.ok {
						if resp.StatusCode != 200 || !strings.Contains(b, "hi") {
							t.Fatalf("request %d: %d %q, want 200", i, resp.StatusCode, b)
						}
						continue
					}
					if resp.StatusCode != 502 || !strings.Contains(b, `"code":"upstream_bad_response"`) {
						t.Fatalf("request %d: %d %q, want 502 upstream_bad_response", i, resp.StatusCode, b)
					}
				}
				if tc.ok {
					if n := u.accepted.Load(); n != 1 {
						t.Errorf("%d connections for two answers, want 1", n)
					}
					return
				}
				if n := u.accepted.Load(); n != 2 || u.requests(1) != 1 {
					t.Errorf("%d connections, the first carried %d requests; want 2 and 1: not reused", n, u.requests(1))
				}
			})
		}
	}
}
