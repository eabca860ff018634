package providers

import (
	"bufio"
	"bytes"
	"crypto/tls"
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

// The early answer of TestEarlyAnswerBeforeBodySent through TLS: the upstream writes
// its 413, then closes (a close_notify, then the reset of the body still coming).
func TestEarlyAnswerBeforeBodySentTLS(t *testing.T) {
	const tooLarge = `{"error":{"message":"request body too large"}}`
	prompt := strings.Repeat("a", 16<<20)
	for _, max := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		for _, notify := range []bool{false, true} {
			t.Run(tls.VersionName(max)+"/close_notify="+strconv.FormatBool(notify), func(t *testing.T) {
				var dials atomic.Int64
				cfg := tlsServerConfig(t, max)
				addr := serveRaw(t, &dials, func(raw net.Conn) {
					c := tls.Server(raw, cfg)
					defer raw.Close()
					req, err := http.ReadRequest(bufio.NewReader(c))
					if err != nil || req.ContentLength < 1<<20 {
						return
					}
					_, _ = io.WriteString(c, "HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: "+
						strconv.Itoa(len(tooLarge))+"\r\n\r\n"+tooLarge)
					if notify {
						_ = c.Close()
					}
					time.Sleep(10 * time.Millisecond)
				})
				b := newPoolBackend(t, Config{BaseURL: "https://" + addr + "/v1", Timeout: 10 * time.Second, TLS: TLSConfig{InsecureSkipVerify: true}}, nil)
				out := fasthttp.AcquireResponse()
				defer fasthttp.ReleaseResponse(out)
				var res Result
				err := b.Send(promptCall(prompt, false), out, &res)
				ue, ok := errors.AsType[*UpstreamError](err)
				if !ok || ue.Status != 413 || !bytes.Contains(out.Body(), []byte("request body too large")) {
					t.Fatalf("err = %v, body %q; want the upstream's 413 and its body", err, out.Body())
				}
				if res.Failed || !b.Healthy() || dials.Load() != 1 {
					t.Errorf("failed=%v healthy=%v dials=%d", res.Failed, b.Healthy(), dials.Load())
				}
			})
		}
	}
}
