package providers

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

const injectedAnswer = `{"id":"evil","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"INJECTED"},"finish_reason":"stop"}]}`

// whole200 is a whole 200 answer with body, of content type ct.
func whole200(ct, body string) string {
	return "HTTP/1.1 200 OK\r\nContent-Type: " + ct + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// A pooled connection on which the upstream wrote after its answer, unasked, is
// closed when it is next taken (after idleLook), and the request goes on a new
// connection, its own answer read there: the same for a call whose client is watched
// or not, after a plain or a streamed answer. It is no failed attempt.
func TestStaleConnectionNotReused(t *testing.T) {
	for _, stream := range []bool{false, true} {
		for _, watched := range []bool{false, true} {
			t.Run("stream="+strconv.FormatBool(stream)+"/watched="+strconv.FormatBool(watched), func(t *testing.T) {
				sent := make(chan struct{})
				u := startScript(t, func(n int, c net.Conn, _ *http.Request) bool {
					if n > 1 {
						_, _ = io.WriteString(c, whole200("application/json", string(staticAnswer)))
						return true
					}
					if stream {
						_, _ = io.WriteString(c, whole200("text/event-stream", string(staticStream)))
					} else {
						_, _ = io.WriteString(c, whole200("application/json", string(staticAnswer)))
					}
					time.Sleep(20 * time.Millisecond)
					_, _ = io.WriteString(c, whole200("application/json", injectedAnswer))
					close(sent)
					return true
				})
				b := newPoolBackend(t, Config{BaseURL: u.url(), Timeout: 10 * time.Second}, nil)
				call := func(prompt string, stream bool) *Call {
					c := promptCall(prompt, stream)
					if watched {
						c.Client = newTestClient()
					}
					return c
				}
				if _, err := sendOnce(b, call("first", stream)); err != nil {
					t.Fatalf("first request: %v", err)
				}
				<-sent
				// Idle past idleLook, the stray bytes in the gateway's socket.
				time.Sleep(20 * time.Millisecond)
				out := fasthttp.AcquireResponse()
				defer fasthttp.ReleaseResponse(out)
				var res Result
				if err := b.Send(call("second", false), out, &res); err != nil {
					t.Fatalf("second request: %v", err)
				}
				if !bytes.Contains(out.Body(), []byte(`"content":"hi"`)) {
					t.Fatalf("second request answered %q, want its own answer", out.Body())
				}
				if res.Failed || !b.Healthy() {
					t.Errorf("verdict failed=%v, healthy=%v: a stale connection counted against the target", res.Failed, b.Healthy())
				}
				if d, n := u.dials.Load(), u.got.Load(); d != 2 || n != 2 {
					t.Errorf("%d connections, %d requests; want 2 and 2", d, n)
				}
			})
		}
	}
}

// An answer naming both Content-Length and Transfer-Encoding is ErrBadResponse, a
// failure of the target's as any invalid answer, and its connection is not used
// again: for a watched call or not, plain or streamed.
func TestBothFramingsIsBadResponse(t *testing.T) {
	for _, stream := range []bool{false, true} {
		for _, watched := range []bool{false, true} {
			t.Run("stream="+strconv.FormatBool(stream)+"/watched="+strconv.FormatBool(watched), func(t *testing.T) {
				ct, body := "application/json", string(staticAnswer)
				if stream {
					ct, body = "text/event-stream", string(staticStream)
				}
				u := startScript(t, func(_ int, c net.Conn, _ *http.Request) bool {
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: "+ct+"\r\nTransfer-Encoding: chunked\r\nContent-Length: 7\r\n\r\n"+
						chunked(body)+"0\r\n\r\n")
					return true
				})
				b := newPoolBackend(t, Config{BaseURL: u.url(), Timeout: 10 * time.Second}, nil)
				for i := range 2 {
					call := promptCall("x", stream)
					if watched {
						call.Client = newTestClient()
					}
					out := fasthttp.AcquireResponse()
					var res Result
					err := b.Send(call, out, &res)
					fasthttp.ReleaseResponse(out)
					if !errors.Is(err, ErrBadResponse) || errors.Is(err, ErrConnect) || res.Stream != nil {
						t.Fatalf("request %d: err = %v (a stream: %v), want ErrBadResponse only", i, err, res.Stream != nil)
					}
					if !res.Judged || !res.Failed {
						t.Errorf("request %d: verdict judged=%v failed=%v, want a failure of the target", i, res.Judged, res.Failed)
					}
				}
				if d := u.dials.Load(); d != 2 {
					t.Errorf("%d connections for two answers, want 2: the first was reused", d)
				}
			})
		}
	}
}

// fasthttp's own transport, which the health checks use, asks the connection for a
// write deadline before each request: a connection that has served, found stale, fails
// it with errStaleConn, written to by no one, and the transport closes it.
func TestStaleConnectionFailsWriteDeadline(t *testing.T) {
	cases := []struct {
		name  string
		stray func(u *upstreamConn, peer net.Conn)
	}{
		{"bytes", func(_ *upstreamConn, peer net.Conn) {
			_, _ = io.WriteString(peer, "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")
		}},
		{"close", func(_ *upstreamConn, peer net.Conn) { _ = peer.Close() }},
		{"reset", func(_ *upstreamConn, peer net.Conn) {
			_ = peer.(*net.TCPConn).SetLinger(0)
			_ = peer.Close()
		}},
		{"faulty framing", func(u *upstreamConn, _ net.Conn) { u.head.fields = hasLength | hasEncoding }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u, peer := loopbackPair(t)
			if err := u.SetWriteDeadline(time.Time{}); err != nil {
				t.Fatalf("a connection that has not served: %v", err)
			}
			u.served = true
			if err := u.SetWriteDeadline(time.Time{}); err != nil {
				t.Fatalf("an idle connection with nothing pending: %v", err)
			}
			tc.stray(u, peer)
			waitUntil(t, "the upstream's move reaches the socket", func() bool { return u.stale(true) })
			if err := u.SetWriteDeadline(time.Time{}); !errors.Is(err, errStaleConn) {
				t.Fatalf("got %v, want errStaleConn", err)
			}
		})
	}
}

// headScanCases are answer headers (and what follows them) with the framing fields
// the final header names, whether it is complete, and whether its end is one fasthttp
// does not take (bare: no CRLF CRLF).
var headScanCases = []struct {
	name, head string
	fields     uint8
	done, bare bool
}{
	{"Content-Length", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello", hasLength, true, false},
	{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", hasEncoding, true, false},
	{"both, Content-Length first", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", hasLength | hasEncoding, true, false},
	{"both, Transfer-Encoding first", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", hasLength | hasEncoding, true, false},
	{"any case, blanks before the colon", "HTTP/1.1 200 OK\r\nTRANSFER-encoding: chunked\r\ncontent-LENGTH \t: 5\r\n\r\n", hasLength | hasEncoding, true, false},
	{"bare LF lines", "HTTP/1.1 200 OK\nContent-Length: 5\nTransfer-Encoding: chunked\n\n", hasLength | hasEncoding, true, true},
	{"a bare LF blank line", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\n", hasLength, true, true},
	{"a bare LF before the blank line", "HTTP/1.1 200 OK\r\nContent-Length: 5\n\r\n", hasLength, true, true},
	{"a bare LF after the status line", "HTTP/1.1 200 OK\n\r\n", 0, true, true},
	{"a bare LF inside", "HTTP/1.1 200 OK\r\nX-A: b\nContent-Length: 5\r\n\r\n", hasLength, true, false},
	{"an interim answer's bare LF", "HTTP/1.1 100 Continue\n\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 0, true, true},
	{"other names alike", "HTTP/1.1 200 OK\r\nContent-Lengthy: 5\r\nX-Content-Length: 5\r\nContent-Type: a\r\nTransfer: b\r\nContent-Length 5\r\n\r\n", 0, true, false},
	{"named in a value", "HTTP/1.1 200 OK\r\nX-Note: content-length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", hasEncoding, true, false},
	{"named in the body", "HTTP/1.1 200 OK\r\nContent-Length: 34\r\n\r\nTransfer-Encoding: chunked\r\n\r\n", hasLength, true, false},
	{"interim answer's fields", "HTTP/1.1 100 Continue\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", hasEncoding, true, false},
	{"both after two interim answers", "HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", hasLength | hasEncoding, true, false},
	{"cut in the header", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Enc", hasLength, false, false},
	{"cut after a name's colon", "HTTP/1.1 200 OK\r\nTRANSFER-enCoding:", hasEncoding, false, false},
	{"status line too short", "HTTP/1.1\r\nContent-Length: 5\r\n\r\n", hasLength, true, false},
}

// headScan finds the same fields however the header is cut across reads.
func TestHeadScan(t *testing.T) {
	for _, tc := range headScanCases {
		t.Run(tc.name, func(t *testing.T) {
			p := []byte(tc.head)
			check := func(how string, s *headScan) {
				t.Helper()
				if s.fields != tc.fields || (s.state == headOff) != tc.done || s.bare != tc.bare {
					t.Errorf("%s: fields %02b, done %v, bare %v; want %02b, %v, %v", how, s.fields, s.state == headOff, s.bare, tc.fields, tc.done, tc.bare)
				}
			}
			for k := range len(p) + 1 {
				var s headScan
				s.begin()
				s.feed(p[:k])
				s.feed(p[k:])
				check("cut at "+strconv.Itoa(k), &s)
			}
			var s headScan
			s.begin()
			for i := range p {
				s.feed(p[i : i+1])
			}
			check("byte by byte", &s)
		})
	}
}

// FuzzHeadScan checks headScan, fed in two reads, against a line-by-line reading of
// the same bytes.
func FuzzHeadScan(f *testing.F) {
	for _, tc := range headScanCases {
		f.Add([]byte(tc.head), uint16(len(tc.head)/2))
	}
	f.Fuzz(func(t *testing.T, p []byte, cut uint16) {
		k := int(cut) % (len(p) + 1)
		var s headScan
		s.begin()
		s.feed(p[:k])
		s.feed(p[k:])
		fields, done, bare := framingFields(p)
		if s.fields != fields || (s.state == headOff) != done || s.bare != bare {
			t.Fatalf("%q cut at %d: fields %02b, done %v, bare %v; want %02b, %v, %v", p, k, s.fields, s.state == headOff, s.bare, fields, done, bare)
		}
	})
}

// framingFields reads p line by line as headScan should: the framing fields the
// final header names (an interim 1xx one's forgotten; a line cut short counts once
// its colon came), whether it is complete, and whether the header that ended the
// scan did so without a CRLF CRLF.
func framingFields(p []byte) (fields uint8, done, bare bool) {
	status := true
	var digit byte
	crlf := false
	for {
		line, rest, whole := bytes.Cut(p, []byte("\n"))
		if !whole && status {
			return fields, false, false
		}
		p = rest
		switch {
		case status:
			status, digit = false, 0
			if len(line) > 9 {
				digit = line[9]
			}
		case whole && (len(line) == 0 || string(line) == "\r"):
			if len(line) == 0 || !crlf {
				return fields, true, true
			}
			if digit != '1' {
				return fields, true, false
			}
			fields, status = 0, true
		default:
			if name, _, ok := bytes.Cut(line, []byte(":")); ok {
				switch string(asciiLower(bytes.TrimRight(name, " \t"))) {
				case lengthName:
					fields |= hasLength
				case encodingName:
					fields |= hasEncoding
				}
			}
		}
		if !whole {
			return fields, false, false
		}
		crlf = len(line) > 0 && line[len(line)-1] == '\r'
	}
}

func asciiLower(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		out[i] = lower(c)
	}
	return out
}
