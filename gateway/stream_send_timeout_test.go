package gateway

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/connwrap"
	"github.com/tollgate/tollgate/internal/deadline"
	"github.com/tollgate/tollgate/internal/testcert"
)

// bigEventUpstream streams one small event, then, once burst is closed (at once when
// nil), one event of size bytes, a last one and [DONE], chunked.
func bigEventUpstream(t *testing.T, size int, burst chan struct{}) string {
	t.Helper()
	big := strings.Repeat("x", size)
	addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
		chunk := func(s string) {
			_, _ = io.WriteString(c, strconv.FormatInt(int64(len(s)), 16)+"\r\n"+s+"\r\n")
		}
		chunk(sseChunk("first"))
		if burst != nil {
			<-burst
		}
		chunk(sseChunk(big))
		chunk(sseChunk("last"))
		chunk("data: [DONE]\n\n")
		_, _ = io.WriteString(c, "0\r\n\r\n")
	})
	return addr
}

// openBigStream starts a stream on a connection to g with a small receive buffer,
// reads its header and first event, and returns the rest of its body to read.
func openBigStream(t *testing.T, g *gw) *bufio.Reader {
	t.Helper()
	conn, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// A small receive buffer keeps the kernel from taking the stream in the
	// client's place.
	_ = conn.(*net.TCPConn).SetReadBuffer(64 << 10)
	br := bufio.NewReaderSize(conn, 4<<10)
	body := `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	if _, err := io.WriteString(conn, rawRequest(t, g, body)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stream did not start: %v", err)
	}
	rb := bufio.NewReaderSize(resp.Body, 64)
	if _, err := rb.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	return rb
}

// wholeStream fails the test unless got, read to its end with err, is the rest of a
// stream that ended well.
func wholeStream(t *testing.T, g *gw, got []byte, err error, what string) {
	t.Helper()
	s := string(got)
	if err != nil || strings.Contains(s, `"error"`) || !strings.Contains(s, "data: [DONE]") || !strings.Contains(s, `"last"`) {
		tail := s
		if len(tail) > 300 {
			tail = tail[len(tail)-300:]
		}
		t.Fatalf("stream cut %s: %v after %d bytes, ends %q\n%s", what, err, len(s), tail, g.logs.String())
	}
}

// README: a client loses its stream only when no byte of it went out for the whole
// send timeout. One that reads an event, then, 2 s later, gets an 8 MiB one (within
// the 16 MiB event bound) and reads nothing for 3 s of a 4 s send timeout keeps its
// stream: the write that blocked has its whole send timeout from its start (until 6 s
// after the first event), not what was left of a deadline set at an earlier event
// (4 s after it, 1 s before the client reads on).
func TestStreamPauseUnderSendTimeoutKeepsStream(t *testing.T) {
	old := sendTimeout.Swap(int64(4 * time.Second))
	t.Cleanup(func() { sendTimeout.Store(old) })
	burst := make(chan struct{})
	g := startGateway(t, mockConfig(bigEventUpstream(t, 8<<20, burst), "", ""))
	rb := openBigStream(t, g)
	// The first event went out.
	first := time.Now()
	time.Sleep(2 * time.Second)
	close(burst)
	// The client takes nothing for 3 s, then reads on.
	time.Sleep(3 * time.Second)
	t.Logf("client resumes %v after the first event", time.Since(first))
	got, err := io.ReadAll(rb)
	wholeStream(t, g, got, err, "after a 3 s pause under the 4 s send timeout")
}

// A client that takes an 8 MiB event steadily but slowly, for three times the send
// timeout in all and never pausing as long as it, keeps its stream: the send timeout
// bounds the time nothing goes out, not a write's length (nginx's send_timeout).
func TestStreamSlowClientKeepsStream(t *testing.T) {
	old := sendTimeout.Swap(int64(time.Second))
	t.Cleanup(func() { sendTimeout.Store(old) })
	g := startGateway(t, mockConfig(bigEventUpstream(t, 8<<20, nil), "", ""))
	rb := openBigStream(t, g)
	start := time.Now()
	var got []byte
	buf := make([]byte, 64<<10)
	var err error
	for {
		var n int
		n, err = io.ReadFull(rb, buf)
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		err = nil
	}
	t.Logf("the client took the stream in %v", time.Since(start))
	wholeStream(t, g, got, err, "while the client took it steadily")
}

// The connections a stream runs on, the gateway's own (deadline.Listener's, plain or
// under TLS, and a firstByteConn over either after an earlier stream), time their
// writes by what goes out (streamTo): none falls back to a deadline per write.
func TestStreamConnsTimeTheirWrites(t *testing.T) {
	cert := testcert.SelfSigned(t)
	accept := func(t *testing.T, l net.Listener) net.Conn {
		t.Helper()
		peer, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { peer.Close() })
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	listen := func(t *testing.T) deadline.Listener {
		t.Helper()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		return deadline.Listener{Listener: ln}
	}
	for _, tc := range []struct {
		name string
		conn func(t *testing.T) net.Conn
	}{
		{"plain", func(t *testing.T) net.Conn { return accept(t, listen(t)) }},
		{"TLS", func(t *testing.T) net.Conn {
			return accept(t, deadline.NewTLSListener(listen(t), &tls.Config{Certificates: []tls.Certificate{cert}}))
		}},
	} {
		for _, wrapped := range []bool{false, true} {
			t.Run(tc.name+"/after a stream="+strconv.FormatBool(wrapped), func(t *testing.T) {
				c := tc.conn(t)
				if wrapped {
					c, _ = newFirstByteConn(c)
				}
				if _, ok := connwrap.Under[writeStaller](c); !ok {
					t.Fatalf("%T: no writeStaller under it", c)
				}
			})
		}
	}
}
