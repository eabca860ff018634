package gateway

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/promtest"
)

// An upstream that sends its answer's header and part of its body, then closes or
// resets the connection, was reached and answered, cut short: the client gets 502
// upstream_bad_response (not upstream_unreachable), the attempt counts as outcome
// error (not refused, "before a response"), and it is not retried, since the
// upstream did the work the answer stands for.
func TestUpstreamTruncatedAnswerIsBadResponse(t *testing.T) {
	t.Parallel()
	part := labelledAnswer[:60]
	for _, tc := range []struct {
		name, answer string
		// reset ends the connection with a reset; streamToo also sends the request
		// as a stream's (whose 200 body is read as events, and cut as a stream).
		reset, streamToo bool
	}{
		{"shorter than its Content-Length", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
			strconv.Itoa(len(labelledAnswer)) + "\r\n\r\n" + part, false, false},
		{"chunked without its last chunk", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
			strconv.FormatInt(int64(len(part)), 16) + "\r\n" + part + "\r\n", false, false},
		{"reset in the body", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
			strconv.Itoa(len(labelledAnswer)) + "\r\n\r\n" + part, true, false},
		{"error answer cut short", "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n" +
			`{"error":{"message":"bad`, false, true},
	} {
		for _, mode := range []struct{ name, body string }{{"chat", chatBody}, {"stream", streamBody}} {
			if mode.name == "stream" && !tc.streamToo {
				continue
			}
			t.Run(tc.name+"/"+mode.name, func(t *testing.T) {
				addr, count := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
					_, _ = c.Write([]byte(tc.answer))
					time.Sleep(20 * time.Millisecond)
					if tcp, ok := c.(*net.TCPConn); ok && tc.reset {
						_ = tcp.SetLinger(0)
					}
					c.Close()
				})
				g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 5s}
backends:
  up: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model, timeout: 20s}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], retries: 2}
logging: {level: error, access_log: false}
`)
				resp, body := postChat(t, g, mode.body)
				if resp.StatusCode != 502 || !strings.Contains(body, `"code":"upstream_bad_response"`) {
					t.Fatalf("%d %q, want 502 upstream_bad_response", resp.StatusCode, body)
				}
				if n := count.Load(); n != 1 {
					t.Errorf("%d attempts, want 1: a cut answer is not retried", n)
				}
				fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
				if err != nil {
					t.Fatal(err)
				}
				for _, o := range []struct {
					outcome string
					want    float64
				}{{"error", 1}, {"refused", 0}} {
					got, _ := promtest.Sum(fams, "tollgate_upstream_attempts_total", func(l map[string]string) bool { return l["outcome"] == o.outcome })
					if got != o.want {
						t.Errorf("tollgate_upstream_attempts_total{outcome=%q} = %v, want %v", o.outcome, got, o.want)
					}
				}
			})
		}
	}
}
