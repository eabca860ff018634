package providers

import (
	"bufio"
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

// scriptUpstream answers each request with what answer writes (raw bytes); answer
// returns false to close the connection after its answer.
type scriptUpstream struct {
	addr  string
	dials atomic.Int64
	got   atomic.Int64
}

func startScript(t *testing.T, answer func(n int, c net.Conn, req *http.Request) bool) *scriptUpstream {
	t.Helper()
	u := &scriptUpstream{}
	u.addr = serveRaw(t, &u.dials, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			n := int(u.got.Add(1))
			if !answer(n, c, req) {
				return
			}
		}
	})
	return u
}

// serveRaw listens on a free loopback port and serves each connection it accepts on
// a goroutine of its own, counting it in dials (nil: not counted). The listener and
// every connection close when the test ends. It returns the listener's address.
func serveRaw(t *testing.T, dials *atomic.Int64, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if dials != nil {
				dials.Add(1)
			}
			t.Cleanup(func() { _ = c.Close() })
			go serve(c)
		}
	}()
	return ln.Addr().String()
}

func (u *scriptUpstream) url() string { return "http://" + u.addr + "/v1" }

func chunked(s string) string {
	return strconv.FormatInt(int64(len(s)), 16) + "\r\n" + s + "\r\n"
}

const oneChunkEvent = `data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"}}]}` + "\n\n"

// readStreamToEnd sends call on b and reads its stream to its end; it returns the error
// that ended it (nil at [DONE]).
func readStreamToEnd(t *testing.T, b *Backend, call *Call) error {
	t.Helper()
	out := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(out)
	var res Result
	if err := b.Send(call, out, &res); err != nil {
		return err
	}
	err := drainStream(res.Stream)
	_ = res.Stream.Close()
	return err
}

// The backend's clients are built with SecureErrorLogMessage (providers.go: an
// upstream that echoes what it got would otherwise put the request's Authorization
// header in errors, logs and spans). A streamed answer's malformed chunked trailer
// fails the stream without quoting the trailer, through fasthttp's own transport (an
// unwatched call) and through a watched call's upstreamBody alike, whose carrier
// response's header lacks the setting.
func TestStreamTrailerErrorQuotesNothing(t *testing.T) {
	const key = "sk-test-trailer-3f9e2a71"
	u := startScript(t, func(_ int, c net.Conn, req *http.Request) bool {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"+
			chunked(oneChunkEvent)+"0\r\nAuthorization: "+req.Header.Get("Authorization")+"\r\n\r\n")
		return true
	})
	b := newPoolBackend(t, Config{BaseURL: u.url(), APIKey: key, Timeout: 10 * time.Second}, nil)
	for _, watched := range []bool{false, true} {
		t.Run("watched="+strconv.FormatBool(watched), func(t *testing.T) {
			call := promptCall("x", true)
			if watched {
				call.Client = newTestClient()
			}
			err := readStreamToEnd(t, b, call)
			if err == nil {
				t.Fatal("stream ended cleanly on a malformed trailer")
			}
			if strings.Contains(err.Error(), key) {
				t.Errorf("stream error quotes the key: %v", err)
			}
		})
	}
}

// An upstream answering a streamed request 204 No Content (a proxy, a misrouted
// path) with the event stream's content type: the answer has no body, so fasthttp
// (and connRoundTrip, noBody) gives it no body stream. Send fails it as an invalid
// answer (ErrBadResponse, as a 304 or a 3xx is) instead of setting the stream reader
// up on no body.
func TestStreamNoContentAnswerIsBadResponse(t *testing.T) {
	for _, prov := range []string{"openai", "anthropic"} {
		for _, watched := range []bool{false, true} {
			t.Run(prov+"/watched="+strconv.FormatBool(watched), func(t *testing.T) {
				u := startScript(t, func(_ int, c net.Conn, req *http.Request) bool {
					_, _ = io.WriteString(c, "HTTP/1.1 204 No Content\r\nContent-Type: text/event-stream\r\n\r\n")
					return true
				})
				cfg := Config{Provider: prov, BaseURL: u.url(), Timeout: 10 * time.Second}
				if prov == "anthropic" {
					cfg.APIKey = "k"
				}
				b := newPoolBackend(t, cfg, nil)
				call := promptCall("x", true)
				if watched {
					call.Client = newTestClient()
				}
				var err error
				panicked := func() (p any) {
					defer func() { p = recover() }()
					err = readStreamToEnd(t, b, call)
					return nil
				}()
				if panicked != nil {
					t.Fatalf("a 204 answer to a stream panicked: %v", panicked)
				}
				if !errors.Is(err, ErrBadResponse) {
					t.Errorf("got %v, want ErrBadResponse", err)
				}
			})
		}
	}
}
