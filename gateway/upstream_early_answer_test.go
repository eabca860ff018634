package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/promtest"
)

// An upstream that answers a large request before reading its body (a 413 for a
// body over its own limit) and closes the connection on the rest, which the gateway
// is still writing, has its answer passed on to the client, plain or streamed: not a
// 502 upstream_unreachable, not a refused attempt, not retried. The next request
// goes on a new connection and gets its own answer.
func TestUpstreamEarlyAnswerPassedOn(t *testing.T) {
	t.Parallel()
	const tooLarge = `{"error":{"message":"request body too large","type":"invalid_request_error","param":null,"code":"payload_too_large"}}`
	for _, stream := range []bool{false, true} {
		name := "chat"
		if stream {
			name = "stream"
		}
		t.Run(name, func(t *testing.T) {
			u := startRawUpstream(t, nil, func(u *rawUpstream, n int, c net.Conn, br *bufio.Reader) {
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					u.mu.Lock()
					u.perConn[n]++
					u.mu.Unlock()
					if req.ContentLength > 1<<20 {
						// The body left unread: the close resets the connection.
						_, _ = io.WriteString(c, "HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\n"+
							strings.TrimPrefix(jsonAnswer("", tooLarge), "\r\n"))
						time.Sleep(10 * time.Millisecond)
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					_, _ = io.WriteString(c, jsonAnswer("HTTP/1.1 200 OK", labelledAnswer))
				}
			})
			cfg := strings.Replace(rawConfig(u.addr), "shutdown_grace: 5s", "shutdown_grace: 5s, max_body_bytes: 32MiB", 1)
			g := startGateway(t, cfg)
			body := `{"model":"chat","max_tokens":8,"stream":` + map[bool]string{false: "false", true: "true"}[stream] +
				`,"messages":[{"role":"user","content":"` + strings.Repeat("a", 16<<20) + `"}]}`
			resp, b := postChat(t, g, body)
			if resp.StatusCode != 413 || !strings.Contains(b, "request body too large") {
				t.Fatalf("large request: %d %q; want the upstream's 413", resp.StatusCode, b)
			}
			resp, b = postChat(t, g, chatBody)
			if resp.StatusCode != 200 || !strings.Contains(b, `"content":"hi"`) {
				t.Fatalf("next request: %d %q; want its own answer", resp.StatusCode, b)
			}
			if n := u.accepted.Load(); n != 2 || u.requests(1) != 1 || u.requests(2) != 1 {
				t.Errorf("%d connections carrying %d and %d requests; want 2, each with 1", n, u.requests(1), u.requests(2))
			}
			fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			for outcome, want := range map[string]float64{"status_4xx": 1, "ok": 1, "refused": 0, "error": 0} {
				v, _ := promtest.Sum(fams, "tollgate_upstream_attempts_total", func(l map[string]string) bool { return l["outcome"] == outcome })
				if v != want {
					t.Errorf("attempts with outcome %s: %v, want %v", outcome, v, want)
				}
			}
		})
	}
}
