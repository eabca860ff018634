package providers

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// An answer whose header block does not end in CRLF CRLF (its lines ended by a bare
// LF, or its last line's) is one fasthttp never takes: it waits for a CRLF CRLF that
// does not come. Such an answer fails at once as the upstream's invalid answer
// (ErrBadResponse), on a connection the upstream keeps open too, rather than holding
// the request past first_byte_timeout until the attempt's own deadline. A header that
// ends in CRLF CRLF with a bare LF inside it is read as fasthttp reads it.
func TestBareLFAnswerHeader(t *testing.T) {
	const body = `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}]}`
	const events = "data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n"
	for _, tc := range []struct {
		name, head string
		ok         bool
	}{
		{"every line a bare LF", "HTTP/1.1 200 OK\nContent-Type: %s\nContent-Length: %d\n\n", false},
		{"a bare LF blank line", "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\n", false},
		{"the last line a bare LF", "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\n\r\n", false},
		{"an interim answer's bare LF", "HTTP/1.1 100 Continue\n\nHTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", false},
		{"a bare LF inside, CRLF CRLF at the end", "HTTP/1.1 200 OK\r\nContent-Type: %s\nContent-Length: %d\r\n\r\n", true},
	} {
		for _, stream := range []bool{false, true} {
			for _, watched := range []bool{false, true} {
				t.Run(tc.name+"/stream="+strconv.FormatBool(stream)+"/watched="+strconv.FormatBool(watched), func(t *testing.T) {
					ct, payload := "application/json", body
					if stream {
						ct, payload = "text/event-stream", events
					}
					answer := fmt.Sprintf(tc.head, ct, len(payload)) + payload
					u := startScript(t, func(_ int, c net.Conn, _ *http.Request) bool {
						_, _ = c.Write([]byte(answer))
						return true
					})
					b := newPoolBackend(t, Config{BaseURL: u.url(), Timeout: 3 * time.Second, FirstByteTimeout: 2 * time.Second}, nil)
					call := promptCall("x", stream)
					if watched {
						call.Client = newTestClient()
					}
					out := fasthttp.AcquireResponse()
					defer fasthttp.ReleaseResponse(out)
					var res Result
					start := time.Now()
					err := b.Send(call, out, &res)
					if res.Stream != nil {
						_ = res.Stream.Close()
					}
					if tc.ok {
						if err != nil {
							t.Fatalf("err = %v, want the answer", err)
						}
						return
					}
					if !errors.Is(err, ErrBadResponse) || errors.Is(err, ErrTimeout) {
						t.Fatalf("err = %v after %v, want ErrBadResponse at once", err, time.Since(start).Round(time.Millisecond))
					}
					if !res.Judged || !res.Failed {
						t.Errorf("verdict judged=%v failed=%v, want a failure of the target", res.Judged, res.Failed)
					}
				})
			}
		}
	}
}
