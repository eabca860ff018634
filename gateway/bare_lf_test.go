package gateway

import (
	"bufio"
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

	"github.com/tollgate/tollgate/internal/connwrap"
	"github.com/tollgate/tollgate/internal/deadline"
)

// post is a chat request with body, its header lines ended by CRLF.
func post(body string) string {
	return "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// bareLFs ends every line of raw's header in a bare LF, not its body's.
func bareLFs(raw string) string {
	head, body, _ := strings.Cut(raw, "\r\n\r\n")
	return strings.ReplaceAll(head, "\r\n", "\n") + "\n\n" + body
}

const getModels = "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"

// exchangeAll writes raw on c, a byte at a time when slow, and reads up to n answers,
// then, if the last said Connection: close, what follows it: the statuses, the last
// answer's body, whether it said Connection: close, and whether the connection then
// ended (rather than timing out, or sending more).
func exchangeAll(t *testing.T, c net.Conn, raw string, slow bool, n int) (statuses []int, last string, closeSaid, ended bool) {
	t.Helper()
	// Well within the gateway's read_timeout: an answer that waits for it fails.
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	go func() {
		if !slow {
			_, _ = io.WriteString(c, raw)
			return
		}
		for i := range len(raw) {
			// Each byte its own segment, and most their own read.
			if _, err := c.Write([]byte{raw[i]}); err != nil {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	br := bufio.NewReader(c)
	for len(statuses) < n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return statuses, last, closeSaid, false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		statuses = append(statuses, resp.StatusCode)
		last, closeSaid = string(b), resp.Close
	}
	if closeSaid {
		_, err := br.ReadByte()
		var ne net.Error
		ended = err != nil && !(errors.As(err, &ne) && ne.Timeout())
	}
	return statuses, last, closeSaid, ended
}

// chatCountUpstream answers every chat request with a completion, counting them.
func chatCountUpstream(t *testing.T) (*atomic.Int64, string) {
	var n atomic.Int64
	addr := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		n.Add(1)
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		ctx.Response.SetBodyRaw(benchChatResp)
	})
	return &n, addr
}

// bareLFCases are requests, one or more pipelined on a connection, with the statuses
// they get and how many go upstream: a request whose header has a line ended by a
// bare LF is refused 400 at once, wherever the line, and the connection closed with
// what follows unread.
var bareLFCases = []struct {
	name     string
	raw      string
	slow     bool
	want     []int
	upstream int64
}{
	{"every line a bare LF", bareLFs(post(chatBody)), false, []int{400}, 0},
	{"every line a bare LF, a byte a read", bareLFs(post(chatBody)), true, []int{400}, 0},
	{"the empty line a bare LF", strings.Replace(post(chatBody), "\r\n\r\n", "\r\n\n", 1), false, []int{400}, 0},
	{"the last field line a bare LF", strings.Replace(post(chatBody), "\r\n\r\n", "\n\r\n", 1), false, []int{400}, 0},
	{"the request line a bare LF", strings.Replace(post(chatBody), "HTTP/1.1\r\n", "HTTP/1.1\n", 1), false, []int{400}, 0},
	{"a bare LF in the middle of a CRLF header", strings.Replace(post(chatBody), "Host: x\r\n", "Host: x\n", 1), false, []int{400}, 0},
	{"a bare LF in the middle, a byte a read", strings.Replace(post(chatBody), "Host: x\r\n", "Host: x\n", 1), true, []int{400}, 0},
	{"a bare LF in the middle, the body not sent", strings.Replace(strings.TrimSuffix(post(chatBody), chatBody), "Host: x\r\n", "Host: x\n", 1), false, []int{400}, 0},
	{"the empty line a bare LF, a CRLF CRLF in the body", strings.Replace(post(chatBody+"\r\n\r\n"+getModels), "\r\n\r\n", "\r\n\n", 1), false, []int{400}, 0},
	{"a bare LF, then a request behind it", bareLFs(getModels) + getModels, false, []int{400}, 0},
	{"pipelined, the third a bare LF", post(chatBody) + getModels + bareLFs(post(chatBody)) + getModels, false, []int{200, 200, 400}, 1},
	{"after a chunked request", "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
		strconv.FormatInt(int64(len(chatBody)), 16) + "\r\n" + chatBody + "\r\n0\r\n\r\n" + bareLFs(getModels), false, []int{200, 400}, 1},
	// The connection follows a folded line, and a framing field written in ways
	// fasthttp takes: what follows is judged, its request line included, which
	// the header block fasthttp keeps does not hold.
	{"after a folded header line", "GET /v1/models HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n" +
		strings.Replace(getModels, "Host: x\r\n", "Host: x\nX-B: c\r\n", 1), false, []int{200, 400}, 0},
	{"after a folded header line, the request line a bare LF", "GET /v1/models HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n" +
		strings.Replace(getModels, "HTTP/1.1\r\n", "HTTP/1.1\n", 1), false, []int{200, 400}, 0},
	{"after a Content-Length past many blanks, the request line a bare LF", strings.Replace(post(chatBody), "Content-Length: ", "Content-Length:"+strings.Repeat(" ", 60), 1) +
		strings.Replace(getModels, "HTTP/1.1\r\n", "HTTP/1.1\n", 1), false, []int{200, 400}, 1},
	{"after a Content-Length folded onto its next line, the request line a bare LF", strings.Replace(post(chatBody), "Content-Length: ", "Content-Length:\r\n ", 1) +
		strings.Replace(getModels, "HTTP/1.1\r\n", "HTTP/1.1\n", 1), false, []int{200, 400}, 1},
	{"HTTP/1.0, every line a bare LF", strings.ReplaceAll(bareLFs(post(chatBody)), "HTTP/1.1", "HTTP/1.0"), false, []int{400}, 0},
	{"expecting 100-continue", strings.Replace(post(""), "Host: x\r\n", "Host: x\nExpect: 100-continue\r\n", 1), false, []int{400}, 0},

	{"a CRLF header, a byte a read", post(chatBody), true, []int{200}, 1},
	{"HTTP/1.0", strings.Replace(post(chatBody), "HTTP/1.1", "HTTP/1.0", 1), false, []int{200}, 1},
	{"a body with empty lines, bare LF and CRLF", post("{\n\n"+chatBody[1:len(chatBody)-1]+"\r\n\r\n}\n\n") + getModels, false, []int{200, 200}, 1},
	{"empty lines between requests", getModels + "\r\n" + getModels + "\n" + getModels, false, []int{200, 200, 200}, 0},
}

// TestBareLFRefused runs each of bareLFCases on the API listener.
func TestBareLFRefused(t *testing.T) {
	t.Parallel()
	upstream, addr := chatCountUpstream(t)
	g := startGateway(t, strings.Replace(mockConfig(addr, "", ""), "shutdown_grace: 5s}", "shutdown_grace: 5s, read_timeout: 60s}", 1))
	for _, tc := range bareLFCases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", g.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			before := upstream.Load()
			checkBareLF(t, c, tc.raw, tc.slow, tc.want)
			if sent := upstream.Load() - before; sent != tc.upstream {
				t.Errorf("%d requests went upstream, want %d (the chat requests served, none refused)", sent, tc.upstream)
			}
		})
	}
	if logs := g.logs.String(); !strings.Contains(logs, `"status":400`) || !strings.Contains(logs, `"error":"bad_request"`) {
		t.Errorf("no access log line of a 400 bad_request:\n%s", logs)
	}
}

// checkBareLF sends raw on c and checks the statuses it gets; the last, a 400, must
// be errBareLF's, say Connection: close and be followed by the connection's end.
func checkBareLF(t *testing.T, c net.Conn, raw string, slow bool, want []int) {
	t.Helper()
	got, last, closeSaid, ended := exchangeAll(t, c, raw, slow, len(want))
	if len(got) != len(want) || !equalInts(got, want) {
		t.Fatalf("statuses %v, want %v (a wait for read_timeout shows as fewer); last answer %.300s", got, want, last)
	}
	if want[len(want)-1] != 400 {
		return
	}
	if !strings.Contains(last, `"code":"bad_request"`) || !strings.Contains(last, "bare LF") {
		t.Errorf("the 400 says %s, want bad_request naming the bare LF", last)
	}
	if !closeSaid || !ended {
		t.Errorf("after the 400: Connection: close %v, connection ended %v; want both (what follows unread)", closeSaid, ended)
	}
}

func equalInts(a, b []int) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return len(a) == len(b)
}

// chunkedPost is a chat request with body sent as one chunk, then the last chunk and
// trailer, the trailer's lines and the empty line that ends it.
func chunkedPost(body, trailer string) string {
	return "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
		strconv.FormatInt(int64(len(body)), 16) + "\r\n" + body + "\r\n0\r\n" + trailer
}

// TestBareLFTrailer: a line of a chunked body's trailer, which fasthttp reads as it
// reads a header block, ended by a bare LF is refused as one of the header is, and
// what follows is not read: whether the trailer came with the header (refused before
// the body is looked at), a byte at a time (refused where the body's read meets it),
// or after the header with a request behind it (whose CRLF CRLF fasthttp would take
// for the trailer's end).
func TestBareLFTrailer(t *testing.T) {
	t.Parallel()
	upstream, addr := chatCountUpstream(t)
	g := startGateway(t, strings.Replace(mockConfig(addr, "", ""), "shutdown_grace: 5s}", "shutdown_grace: 5s, read_timeout: 60s}", 1))
	for _, tc := range []struct {
		name     string
		raw      string
		want     []int
		upstream int64
	}{
		{"a trailer line a bare LF", chunkedPost(chatBody, "X-Sum: 1\n\r\n"), []int{400}, 0},
		{"a trailer line a bare LF, a request behind it", chunkedPost(chatBody, "X-Sum: 1\r\nX-B: 2\n\r\n") + getModels, []int{400}, 0},
		{"the trailer's empty line a bare LF, a request behind it", chunkedPost(chatBody, "X-Sum: 1\r\n\n") + getModels, []int{400}, 0},
		{"the trailer just a bare LF, a request behind it", chunkedPost(chatBody, "\n") + getModels, []int{400}, 0},
		{"a CRLF trailer, a request behind it", chunkedPost(chatBody, "X-Sum: 1\r\n\r\n") + getModels, []int{200, 200}, 1},
	} {
		head, rest, _ := strings.Cut(tc.raw, "\r\n\r\n")
		head += "\r\n\r\n"
		for _, how := range []string{"whole", "a byte a read", "the header first"} {
			t.Run(tc.name+", "+how, func(t *testing.T) {
				c, err := net.Dial("tcp", g.Addr())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				before := upstream.Load()
				switch how {
				case "whole":
					checkBareLF(t, c, tc.raw, false, tc.want)
				case "a byte a read":
					checkBareLF(t, c, tc.raw, true, tc.want)
				default:
					if _, err := io.WriteString(c, head); err != nil {
						t.Fatal(err)
					}
					// Most often the handler waits for the body by now; the answer
					// is the same if not.
					time.Sleep(20 * time.Millisecond)
					checkBareLF(t, c, rest, false, tc.want)
				}
				if sent := upstream.Load() - before; sent != tc.upstream {
					t.Errorf("%d requests went upstream, want %d", sent, tc.upstream)
				}
			})
		}
	}
}

// TestBareLFAfterStream: a stream's connection is served anew after the stream (its
// requests counted on): a request pipelined behind a stream, or sent after it, is
// refused by its own number.
func TestBareLFAfterStream(t *testing.T) {
	t.Parallel()
	g := startGateway(t, strings.Replace(mockConfig(startStaticSSEUpstream(t), "", ""), "shutdown_grace: 5s}", "shutdown_grace: 5s, read_timeout: 60s}", 1))
	stream := post(`{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	for _, tc := range []struct {
		name string
		raw  string
		want []int
	}{
		{"pipelined behind it", stream + getModels + bareLFs(getModels), []int{200, 200, 400}},
		{"pipelined behind it, its header read whole", stream + strings.Replace(getModels, "Host: x\r\n", "Host: x\nX-A: b\r\n", 1), []int{200, 400}},
		{"two streams, then one", stream + stream + bareLFs(stream), []int{200, 200, 400}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", g.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			checkBareLF(t, c, tc.raw, false, tc.want)
		})
	}
	t.Run("sent after it", func(t *testing.T) {
		c, err := net.Dial("tcp", g.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		checkBareLF(t, c, stream, false, []int{200})
		checkBareLF(t, c, getModels, false, []int{200})
		// Its header read whole: only the connection saw the request line's bare
		// LF, in its third request, the first of fasthttp's loop after the stream.
		checkBareLF(t, c, strings.Replace(getModels, "HTTP/1.1\r\n", "HTTP/1.1\n", 1), false, []int{400})
	})
}

// TestBareLFRefusedTLS: under server.tls the header lines followed are those the
// client sent, decrypted.
func TestBareLFRefusedTLS(t *testing.T) {
	t.Parallel()
	p := newTestPKI(t)
	_, addr := chatCountUpstream(t)
	g := startGateway(t, strings.Replace(mockConfig(addr, "", ""), "shutdown_grace: 5s}",
		`shutdown_grace: 5s, read_timeout: 60s, tls: {cert_file: "`+p.serverCert+`", key_file: "`+p.serverKey+`"}}`, 1))
	for _, tc := range bareLFCases {
		if !strings.Contains(tc.name, "every line") && !strings.Contains(tc.name, "pipelined") && !strings.Contains(tc.name, "body with") {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			c, err := tls.Dial("tcp", g.Addr(), &tls.Config{RootCAs: p.pool})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			checkBareLF(t, c, tc.raw, tc.slow, tc.want)
		})
	}
}

// TestBareLFRefusedAdmin: the admin listener refuses such a request the same way, with
// the same answer. A trailer of nothing but a bare LF fasthttp takes for the end of
// the connection (its ErrBrokenChunk, not the connection's ErrBareLF): the connection
// tells that it stopped at a bare LF, on a connection's first request or a later one.
func TestBareLFRefusedAdmin(t *testing.T) {
	t.Parallel()
	_, addr := chatCountUpstream(t)
	g := startGateway(t, strings.Replace(mockConfig(addr, "", ""), "shutdown_grace: 5s}", "shutdown_grace: 5s, read_timeout: 60s}", 1))
	const healthz = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
	const chunked = "POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n"
	for _, tc := range []struct {
		name string
		raw  string
		want []int
	}{
		{"every line a bare LF", bareLFs(healthz), []int{400}},
		{"a bare LF in the middle", strings.Replace(healthz+healthz, "Host: x\r\n", "Host: x\nX-A: b\r\n", 1), []int{400}},
		// The admin server reads a body whole, its trailer too, before the handler.
		{"a trailer line a bare LF", "POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX-Sum: 1\n\r\n" + healthz, []int{400}},
		{"after a folded line, the request line a bare LF", strings.Replace(healthz, "Host: x\r\n", "Host: x\r\nX-A: a\r\n b\r\n", 1) +
			strings.Replace(healthz, "HTTP/1.1\r\n", "HTTP/1.1\n", 1), []int{200, 400}},
		{"CRLF", healthz + healthz, []int{200, 200}},
		{"the trailer just a bare LF", chunked + "\n" + healthz, []int{400}},
		{"the trailer's empty line a bare LF", chunked + "X-Sum: 1\r\n\n" + healthz, []int{400}},
		{"a request, then one whose trailer is just a bare LF", healthz + chunked + "\n" + healthz, []int{200, 400}},
		{"a CRLF trailer", chunked + "\r\n" + healthz, []int{405, 200}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", g.AdminAddr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			checkBareLF(t, c, tc.raw, false, tc.want)
		})
		t.Run(tc.name+", the header first", func(t *testing.T) {
			c, err := net.Dial("tcp", g.AdminAddr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			head, rest, _ := strings.Cut(tc.raw, "\r\n\r\n")
			if _, err := io.WriteString(c, head+"\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			// Most often the server waits for the body by now; the answer is the
			// same if not.
			time.Sleep(20 * time.Millisecond)
			checkBareLF(t, c, rest, false, tc.want)
		})
	}
}

// TestBareLineEnd reads header blocks as RequestHeader.RawHeaders gives them.
func TestBareLineEnd(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		bare      bool
	}{
		{"none", "", false},
		{"the empty line alone", "\r\n", false},
		{"CRLF lines", "Host: x\r\nContent-Length: 3\r\n\r\n", false},
		{"a CR inside a value", "X-A: a\rb\r\n\r\n", false},
		{"every line a bare LF", "Host: x\nContent-Length: 3\n\n", true},
		{"the empty line a bare LF", "Host: x\r\n\n", true},
		{"the empty line alone, a bare LF", "\n", true},
		{"a bare LF inside", "Host: x\r\nX-A: b\nContent-Length: 3\r\n\r\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := bareLineEnd([]byte(tc.raw)); got != tc.bare {
				t.Errorf("bareLineEnd(%q) = %v, want %v", tc.raw, got, tc.bare)
			}
		})
	}
}

// followedCtx is a RequestCtx on a connection as the API listener accepts it (an
// arrivalConn under a deadline.Conn that follows its requests' headers), which read
// raw, whose header is parsed as its first request's.
func followedCtx(tb testing.TB, raw string) *fasthttp.RequestCtx {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	l := deadline.Listener{Listener: arrivalListener{ln}, Heads: true}
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { client.Close() })
	conn, err := l.Accept()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(client, raw); err != nil {
		tb.Fatal(err)
	}
	ctx := &fasthttp.RequestCtx{}
	ctx.Init2(conn, nopLogger{}, true)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := ctx.Request.Header.Read(bufio.NewReader(conn)); err != nil {
		tb.Fatal(err)
	}
	ac, _ := connwrap.Under[*arrivalConn](conn)
	ac.requests++
	return ctx
}

// TestBareLFOfFollowedConn: on a connection that follows its requests, the request
// is judged by what the connection saw, the trailer read along with its header
// included, which the header fasthttp parsed does not show.
func TestBareLFOfFollowedConn(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		bare      bool
	}{
		{"CRLF", getModels, false},
		{"a CRLF trailer", chunkedPost(chatBody, "X-Sum: 1\r\n\r\n"), false},
		{"a trailer line a bare LF", chunkedPost(chatBody, "X-Sum: 1\n\r\n") + getModels, true},
		{"the trailer's empty line a bare LF", chunkedPost(chatBody, "\n") + getModels, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := bareLF(followedCtx(t, tc.raw)); got != tc.bare {
				t.Errorf("bareLF = %v, want %v", got, tc.bare)
			}
		})
	}
}

// BenchmarkBareLF is the check every API request pays before it is routed, on a
// connection that followed its header and on one that did not (the header block
// fasthttp kept read instead), for an SDK's chat request.
func BenchmarkBareLF(b *testing.B) {
	raw := "POST /v1/chat/completions HTTP/1.1\r\nHost: gateway.internal:8080\r\nAccept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n" +
		"Accept: application/json\r\nContent-Type: application/json\r\nUser-Agent: OpenAI/Python 1.54.4\r\n" +
		"X-Stainless-Lang: python\r\nX-Stainless-Package-Version: 1.54.4\r\nX-Stainless-OS: Linux\r\n" +
		"X-Stainless-Arch: x64\r\nX-Stainless-Runtime: CPython\r\nX-Stainless-Runtime-Version: 3.12.7\r\n" +
		"Authorization: Bearer sk-0123456789abcdef0123456789abcdef\r\nX-Stainless-Async: false\r\n" +
		"X-Stainless-Retry-Count: 0\r\nContent-Length: 0\r\n\r\n"
	unfollowed := newProxyCtx(nil)
	parsedHeader(b, raw).CopyTo(&unfollowed.Request.Header)
	for _, bc := range []struct {
		name string
		ctx  *fasthttp.RequestCtx
	}{{"followed", followedCtx(b, raw)}, {"header block", unfollowed}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if bareLF(bc.ctx) {
					b.Fatal("refused")
				}
			}
		})
	}
}
