package providers

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/internal/deadline"
	"github.com/tollgate/tollgate/internal/testcert"
)

// corkConn holds what is written to it while held, and sends it in one write when
// released: TLS records the upstream writes one after another reach the gateway's
// socket together, as they do whenever the upstream's writes outrun the gateway's
// reads.
type corkConn struct {
	net.Conn
	mu   sync.Mutex
	held bool
	buf  bytes.Buffer
	// sizes are the sizes of the writes held: a TLS connection writes each record
	// in a write of its own.
	sizes []int
}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held {
		c.sizes = append(c.sizes, len(p))
		return c.buf.Write(p)
	}
	return c.Conn.Write(p)
}

func (c *corkConn) hold() { c.mu.Lock(); c.held = true; c.mu.Unlock() }

func (c *corkConn) release() { c.releasePart(-1) }

// releasePart sends, in one write, the first n bytes held (all of them when n < 0),
// and holds the rest until the next release.
func (c *corkConn) releasePart(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n < 0 {
		c.held, n = false, c.buf.Len()
	}
	// tls.Conn's CloseWrite leaves a write deadline of now behind it.
	_ = c.Conn.SetWriteDeadline(time.Time{})
	_, _ = c.Conn.Write(c.buf.Next(n))
}

// firstRecords is the size of the first n records held.
func (c *corkConn) firstRecords(n int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	sum := 0
	for _, s := range c.sizes[:n] {
		sum += s
	}
	return sum
}

// tlsServerConfig serves a self-signed certificate up to TLS version max.
func tlsServerConfig(t testing.TB, max uint16) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{testcert.SelfSigned(t)}, MinVersion: tls.VersionTLS12, MaxVersion: max}
}

// tlsLoopbackPair is loopbackPair through TLS up to version max: the gateway's side
// with its handshake made, as a dial makes it, and the upstream's, whose socket
// writes its cork can hold back.
func tlsLoopbackPair(t testing.TB, max uint16) (*upstreamConn, *tls.Conn, *corkConn) {
	t.Helper()
	u, peer := loopbackPair(t)
	cork := &corkConn{Conn: peer}
	srv := tls.Server(cork, tlsServerConfig(t, max))
	shook := make(chan error, 1)
	go func() { shook <- srv.Handshake() }()
	if err := u.handshake(context.Background(), &tls.Config{InsecureSkipVerify: true}, time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := <-shook; err != nil {
		t.Fatal(err)
	}
	return u, srv, cork
}

var tlsVersions = []struct {
	name string
	max  uint16
}{{"TLS 1.2", tls.VersionTLS12}, {"TLS 1.3", tls.VersionTLS13}}

// What the upstream sends behind an answer that arrives with it, in the same read of
// the socket, stays in the TLS client, which hands out one record at a time: heldBack
// finds it there, whether it is a record of its own, the start of one, the rest of the
// answer's record, or the upstream's close_notify; with nothing behind the answer it
// finds nothing, and the connection reads its next answer as before. TLS 1.3
// connections have read the server's session tickets ahead of the first answer.
func TestTLSHeldBack(t *testing.T) {
	const answer, behind = "first answer", "second answer"
	cases := []struct {
		name string
		send func(srv *tls.Conn, cork *corkConn)
		want bool
	}{
		{"nothing behind", func(srv *tls.Conn, _ *corkConn) { _, _ = io.WriteString(srv, answer) }, false},
		{"a record behind", func(srv *tls.Conn, cork *corkConn) {
			cork.hold()
			_, _ = io.WriteString(srv, answer)
			_, _ = io.WriteString(srv, behind)
			cork.release()
		}, true},
		{"the start of a record behind", func(srv *tls.Conn, cork *corkConn) {
			cork.hold()
			_, _ = io.WriteString(srv, answer)
			_, _ = io.WriteString(srv, behind)
			cork.releasePart(cork.firstRecords(1) + 8)
		}, true},
		{"the rest of the answer's record", func(srv *tls.Conn, _ *corkConn) { _, _ = io.WriteString(srv, answer+behind) }, true},
		{"close_notify behind", func(srv *tls.Conn, cork *corkConn) {
			cork.hold()
			_, _ = io.WriteString(srv, answer)
			_ = srv.CloseWrite()
			cork.release()
		}, true},
	}
	for _, v := range tlsVersions {
		for _, tc := range cases {
			t.Run(v.name+"/"+tc.name, func(t *testing.T) {
				u, srv, cork := tlsLoopbackPair(t, v.max)
				tc.send(srv, cork)
				got := make([]byte, len(answer))
				if _, err := io.ReadFull(u, got); err != nil || string(got) != answer {
					t.Fatalf("read %q, %v; want %q", got, err, answer)
				}
				if held := u.heldBack(); held != tc.want {
					t.Fatalf("heldBack = %v, want %v", held, tc.want)
				}
				if tc.want {
					return
				}
				if u.heldBack() {
					t.Fatal("heldBack found something on a second look")
				}
				// The look left the TLS client and the connection's deadlines as
				// they were: the next answer reads under the deadline set for it.
				_, _ = io.WriteString(srv, behind)
				if err := u.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
					t.Fatal(err)
				}
				got = make([]byte, len(behind))
				if _, err := io.ReadFull(u, got); err != nil || string(got) != behind {
					t.Fatalf("next answer: read %q, %v; want %q", got, err, behind)
				}
				if err := u.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
					t.Fatal(err)
				}
				if _, err := u.Read(got); !deadline.IsTimeout(err) {
					t.Fatalf("read of a silent upstream: %v, want its deadline's timeout", err)
				}
			})
		}
	}
}

// A pooled TLS connection whose TLS client holds bytes behind its last answer fails
// the write deadline fasthttp's own transport (the health checks') asks for before
// its next request: it is closed, written to by no one.
func TestTLSHeldBackFailsWriteDeadline(t *testing.T) {
	u, srv, cork := tlsLoopbackPair(t, tls.VersionTLS13)
	cork.hold()
	_, _ = io.WriteString(srv, "answer")
	_, _ = io.WriteString(srv, "stray")
	cork.release()
	if _, err := io.ReadFull(u, make([]byte, len("answer"))); err != nil {
		t.Fatal(err)
	}
	u.served = true
	if err := u.SetWriteDeadline(time.Time{}); !errors.Is(err, errStaleConn) {
		t.Fatalf("got %v, want errStaleConn", err)
	}
}

// startTLSScript is startScript over TLS: answer writes through the upstream's TLS
// side, and cork holds its socket's writes back.
func startTLSScript(t *testing.T, answer func(n int, c *tls.Conn, cork *corkConn, req *http.Request) bool) *scriptUpstream {
	t.Helper()
	cfg := tlsServerConfig(t, tls.VersionTLS13)
	u := &scriptUpstream{}
	u.addr = serveRaw(t, &u.dials, func(c net.Conn) {
		cork := &corkConn{Conn: c}
		tc := tls.Server(cork, cfg)
		defer tc.Close()
		br := bufio.NewReader(tc)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			if !answer(int(u.got.Add(1)), tc, cork, req) {
				return
			}
		}
	})
	return u
}

// README: bytes that come behind an answer close its connection, through TLS as in
// plaintext. An answer the upstream wrote right behind the first, in a record of its
// own that came in the same read of the socket, is never read by the next request,
// even one that takes the connection at once (within idleLook, when the socket is not
// looked at): the connection closed at the first answer's end, after a plain answer or
// a stream, and the next request went over a new one, its own answer read there. It
// is no failure of the target's.
func TestTLSBytesBehindAnswerCloseConnection(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run("stream="+strconv.FormatBool(stream), func(t *testing.T) {
			u := startTLSScript(t, func(n int, c *tls.Conn, cork *corkConn, _ *http.Request) bool {
				if n > 1 {
					_, _ = io.WriteString(c, whole200("application/json", string(staticAnswer)))
					return true
				}
				cork.hold()
				if stream {
					_, _ = io.WriteString(c, whole200("text/event-stream", string(staticStream)))
				} else {
					_, _ = io.WriteString(c, whole200("application/json", string(staticAnswer)))
				}
				_, _ = io.WriteString(c, whole200("application/json", injectedAnswer))
				cork.release()
				return true
			})
			b := newPoolBackend(t, Config{BaseURL: "https://" + u.addr + "/v1", TLS: TLSConfig{InsecureSkipVerify: true},
				Timeout: 10 * time.Second}, nil)
			if _, err := sendOnce(b, promptCall("first", stream)); err != nil {
				t.Fatalf("first request: %v", err)
			}
			out := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseResponse(out)
			var res Result
			if err := b.Send(promptCall("second", false), out, &res); err != nil {
				t.Fatalf("second request: %v", err)
			}
			if !bytes.Contains(out.Body(), []byte(`"content":"hi"`)) {
				t.Fatalf("second request answered %q, want its own answer", out.Body())
			}
			if res.Failed || !b.Healthy() {
				t.Errorf("verdict failed=%v, healthy=%v: bytes behind an answer counted against the target", res.Failed, b.Healthy())
			}
			if d, n := u.dials.Load(), u.got.Load(); d != 2 || n != 2 {
				t.Errorf("%d connections, %d requests; want 2 and 2", d, n)
			}
		})
	}
}

// tlsRecords finds the same record boundaries however the reads cut the records: a
// read that ends where a record ends brought nothing beyond it, one that brings a byte
// of the next record did.
func TestTLSRecords(t *testing.T) {
	header := func(n int) string { return "\x17\x03\x03" + string([]byte{byte(n >> 8), byte(n)}) }
	one := header(300) + strings.Repeat("a", 300)
	empty := header(0)
	cases := []struct {
		name   string
		reads  []string
		beyond bool
		in     bool
	}{
		{"one record", []string{one}, false, false},
		{"header, then body", []string{one[:5], one[5:]}, false, false},
		{"cut in the header", []string{one[:3], one[3:]}, false, false},
		{"cut in the body", []string{one[:100], one[100:]}, false, false},
		{"part of a record", []string{one[:100]}, false, true},
		{"two records", []string{one + one}, true, false},
		{"a record and a header's start", []string{one + one[:2]}, true, true},
		{"the end of one, the start of the next", []string{one[:100], one[100:] + one[:7]}, true, true},
		{"a record, then the next alone", []string{one, one}, false, false},
		{"an empty record", []string{empty}, false, false},
		{"an empty record behind", []string{one + empty}, true, false},
		{"a record behind an empty one", []string{empty + one}, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var r tlsRecords
			for _, p := range tc.reads {
				r.feed([]byte(p))
			}
			if r.beyond != tc.beyond || r.inRecord() != tc.in {
				t.Errorf("beyond = %v, in a record = %v; want %v, %v", r.beyond, r.inRecord(), tc.beyond, tc.in)
			}
		})
	}
}

// BenchmarkTLSHeldBack is the look into a TLS connection's client at the end of an
// answer that came in records of its own, which its records settle, and the read
// through the TLS client that settles it otherwise, both finding nothing.
func BenchmarkTLSHeldBack(b *testing.B) {
	u, srv, _ := tlsLoopbackPair(b, tls.VersionTLS13)
	_, _ = io.WriteString(srv, "answer")
	if _, err := io.ReadFull(u, make([]byte, len("answer"))); err != nil {
		b.Fatal(err)
	}
	for _, read := range []bool{false, true} {
		b.Run("read="+strconv.FormatBool(read), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				u.drained = !read
				if u.heldBack() {
					b.Fatal("a connection with nothing behind its answer found holding bytes")
				}
			}
		})
	}
}

// BenchmarkSendTLS is BenchmarkSend against an https target (TLS 1.3), whose
// answers end with a look into the TLS client (heldBack).
func BenchmarkSendTLS(b *testing.B) {
	for _, stream := range []bool{false, true} {
		b.Run("stream="+strconv.FormatBool(stream), func(b *testing.B) {
			r := &replica{tb: b, quit: make(chan struct{})}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			r.addr = ln.Addr().String()
			r.serve(tls.NewListener(ln, tlsServerConfig(b, tls.VersionTLS13)))
			b.Cleanup(func() { close(r.quit); r.kill() })
			r.static.Store(true)
			be := newPoolBackend(b, Config{BaseURL: "https://" + r.addr + "/v1", TLS: TLSConfig{InsecureSkipVerify: true},
				FirstByteTimeout: time.Minute, StreamIdleTimeout: time.Minute}, nil)
			a := newAttempt(promptCall("hello", stream))
			defer a.release()
			b.ReportAllocs()
			for b.Loop() {
				if err := a.send(be); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
