package providers

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// An upstream may answer before it has read the whole request (a 413 for a body over
// its limit, a 400 from the header alone) and close the connection on the rest of
// it: the gateway's write then fails with a reset or a broken pipe, and the answer
// waits in the socket. That answer is the request's: it is read and passed on as any
// answer is, the connection closed after it, rather than the request failing as an
// unreachable upstream (a failure of the target's). A connection that closes with no
// answer still fails the request as before.
func TestEarlyAnswerBeforeBodySent(t *testing.T) {
	const tooLarge = `{"error":{"message":"request body too large","type":"invalid_request_error","param":null,"code":"payload_too_large"}}`
	prompt := strings.Repeat("a", 16<<20)
	for _, stream := range []bool{false, true} {
		for _, watched := range []bool{false, true} {
			t.Run("stream="+strconv.FormatBool(stream)+"/watched="+strconv.FormatBool(watched), func(t *testing.T) {
				var dials, got atomic.Int64
				addr := serveRaw(t, &dials, func(c net.Conn) {
					defer c.Close()
					req, err := http.ReadRequest(bufio.NewReader(c))
					if err != nil {
						return
					}
					got.Add(1)
					if req.ContentLength < 1<<20 {
						return
					}
					// The header alone is read: the close resets the connection
					// on the body still coming.
					_, _ = io.WriteString(c, "HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: "+
						strconv.Itoa(len(tooLarge))+"\r\n\r\n"+tooLarge)
					time.Sleep(10 * time.Millisecond)
				})
				b := newPoolBackend(t, Config{BaseURL: "http://" + addr + "/v1", Timeout: 10 * time.Second}, nil)
				call := promptCall(prompt, stream)
				if watched {
					call.Client = newTestClient()
				}
				out := fasthttp.AcquireResponse()
				defer fasthttp.ReleaseResponse(out)
				var res Result
				err := b.Send(call, out, &res)
				if res.Stream != nil {
					_ = res.Stream.Close()
				}
				ue, ok := errors.AsType[*UpstreamError](err)
				if !ok || ue.Status != 413 || !bytes.Contains(out.Body(), []byte("request body too large")) {
					t.Fatalf("err = %v, body %q; want the upstream's 413 and its body", err, out.Body())
				}
				if res.Failed || !b.Healthy() {
					t.Errorf("verdict failed=%v, healthy=%v: the upstream's 413 counted against the target", res.Failed, b.Healthy())
				}
				if d, n := dials.Load(), got.Load(); d != 1 || n != 1 {
					t.Errorf("%d connections, %d requests; want 1 and 1", d, n)
				}
			})
		}
	}
	t.Run("closed without an answer", func(t *testing.T) {
		addr := serveRaw(t, nil, func(c net.Conn) {
			defer c.Close()
			_, _ = http.ReadRequest(bufio.NewReader(c))
		})
		b := newPoolBackend(t, Config{BaseURL: "http://" + addr + "/v1", Timeout: 10 * time.Second}, nil)
		out := fasthttp.AcquireResponse()
		defer fasthttp.ReleaseResponse(out)
		var res Result
		err := b.Send(promptCall(prompt, false), out, &res)
		if !errors.Is(err, ErrConnect) || !res.Failed {
			t.Fatalf("err = %v, failed=%v; want an unreachable upstream, a failure of the target's", err, res.Failed)
		}
	})
}
