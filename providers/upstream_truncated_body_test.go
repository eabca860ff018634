package providers

import (
	"errors"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// An answer whose header came whole and whose body the connection's close or reset
// cut short is the upstream's invalid answer (ErrBadResponse), not an unreachable
// upstream (ErrConnect): the attempt is judged against the target, as a failure, for
// its health and the canary's gates. A call whose client is watched reads its answer
// through connRoundTrip, and ends the same way.
func TestTruncatedAnswerIsBadResponse(t *testing.T) {
	const body = `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}]}`
	part := body[:40]
	for _, tc := range []struct {
		name, answer  string
		stream, reset bool
	}{
		{name: "shorter than its Content-Length", answer: "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
			strconv.Itoa(len(body)) + "\r\n\r\n" + part},
		{name: "chunked without its last chunk", answer: "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
			chunked(part)},
		{name: "reset in the body", answer: "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
			strconv.Itoa(len(body)) + "\r\n\r\n" + part, reset: true},
		{name: "reset before a byte of a body up to the close", answer: "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
			reset: true},
		{name: "error answer to a stream", answer: "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: " +
			strconv.Itoa(len(body)) + "\r\n\r\n" + part, stream: true},
	} {
		for _, watched := range []bool{false, true} {
			t.Run(tc.name+"/watched="+strconv.FormatBool(watched), func(t *testing.T) {
				u := startScript(t, func(_ int, c net.Conn, _ *http.Request) bool {
					_, _ = c.Write([]byte(tc.answer))
					time.Sleep(20 * time.Millisecond)
					if tcp, ok := c.(*net.TCPConn); ok && tc.reset {
						_ = tcp.SetLinger(0)
					}
					return false
				})
				b := newPoolBackend(t, Config{BaseURL: u.url(), Timeout: 10 * time.Second}, nil)
				call := promptCall("x", tc.stream)
				if watched {
					call.Client = newTestClient()
				}
				out := fasthttp.AcquireResponse()
				defer fasthttp.ReleaseResponse(out)
				var res Result
				err := b.Send(call, out, &res)
				if !errors.Is(err, ErrBadResponse) || errors.Is(err, ErrConnect) || errors.Is(err, ErrTimeout) {
					t.Fatalf("err = %v, want ErrBadResponse only", err)
				}
				if !res.Judged || !res.Failed {
					t.Errorf("verdict judged=%v failed=%v, want a failure of the target", res.Judged, res.Failed)
				}
				if n := u.got.Load(); n != 1 {
					t.Errorf("%d attempts reached the upstream, want 1", n)
				}
			})
		}
	}
}
