package providers

import (
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// An upstream that answers with something other than HTTP (another protocol on the
// port, a bare HTML page) sent an invalid answer; one that closes the connection, or
// sends half a header and closes, stays unreachable.
func TestClassifyNotHTTP(t *testing.T) {
	for _, tt := range []struct {
		name, answer string
		want         error
	}{
		{"not a status line", "garbage garbage\r\n\r\n", ErrBadResponse},
		{"status code not a number", "HTTP/1.1 abc OK\r\n\r\n", ErrBadResponse},
		{"another protocol", "SSH-2.0-OpenSSH_9.6\r\n", ErrBadResponse},
		{"page without a header, then closed", "<html>hi</html>", ErrConnect},
		{"closed at once", "", ErrConnect},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						defer c.Close()
						buf := make([]byte, 4096)
						_, _ = c.Read(buf)
						_, _ = c.Write([]byte(tt.answer))
						time.Sleep(50 * time.Millisecond)
					}()
				}
			}()
			hc := &fasthttp.HostClient{Addr: ln.Addr().String(), SecureErrorLogMessage: true}
			req := fasthttp.AcquireRequest()
			defer fasthttp.ReleaseRequest(req)
			req.Header.SetMethod("POST")
			req.SetRequestURI("http://" + ln.Addr().String() + "/v1/chat/completions")
			req.SetBodyString("{}")
			var resp fasthttp.Response
			err = hc.DoTimeout(req, &resp, 2*time.Second)
			if err == nil {
				t.Fatal("no error")
			}
			got := classify(err)
			if !errors.Is(got, tt.want) {
				t.Fatalf("classify(%v) = %v, want %v", err, got, tt.want)
			}
			if tt.want == ErrBadResponse && errors.Is(got, ErrConnect) {
				t.Fatalf("classify(%v) is both", err)
			}
			if tt.answer != "" && strings.Contains(got.Error(), tt.answer[:5]) {
				t.Fatalf("the error quotes what the upstream sent: %v", got)
			}
		})
	}
}

// An answer larger than the buffered-answer bound (MaxResponseBytes) is the
// upstream's invalid answer (ErrBadResponse), not an unreachable upstream: it is not
// retried, since each attempt re-runs the generation for the same answer. An error
// body read from a stream is not cut to the bound and passed on either.
func TestAnswerOverLimitIsBadResponse(t *testing.T) {
	big := `{"pad":"` + strings.Repeat("x", 8<<10) + `","usage":{"prompt_tokens":1,"completion_tokens":1}}`
	for _, tc := range []struct {
		name, status string
		stream       bool
	}{
		{"200", "200 OK", false},
		{"500", "500 Internal Server Error", false},
		{"500 to a stream", "500 Internal Server Error", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := rawUpstream(t, listen4(t), func(*http.Request) string {
				return "HTTP/1.1 " + tc.status + "\r\nContent-Type: application/json\r\nContent-Length: " +
					strconv.Itoa(len(big)) + "\r\n\r\n" + big
			})
			b := newTestBackend(t, Config{Provider: "openai", BaseURL: "http://" + addr + "/v1", Model: "m", MaxResponseBytes: 1 << 10})
			var out fasthttp.Response
			var res Result
			err := b.Send(chatCall(chatBody, tc.stream), &out, &res)
			var ue *UpstreamError
			if errors.Is(err, ErrConnect) || !errors.Is(err, ErrBadResponse) || errors.As(err, &ue) {
				t.Fatalf("an 8 KiB answer over a 1 KiB bound: err = %v; want ErrBadResponse only", err)
			}
			if !strings.Contains(err.Error(), "too large") {
				t.Fatalf("err = %v, want it to say the answer was too large", err)
			}
		})
	}
}
