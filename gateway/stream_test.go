package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/providers/mockllm"
)

const (
	streamBody = `{"model":"chat","stream":true,"max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`
	chatBody   = `{"model":"chat","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`
)

func rawRequest(t *testing.T, g *gw, body string, header ...string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("POST /v1/chat/completions HTTP/1.1\r\nHost: " + g.Addr() + "\r\nContent-Type: application/json\r\n")
	for _, h := range header {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	return b.String()
}

// readStream reads one streamed response and checks its framing and its events.
func readStream(t *testing.T, br *bufio.Reader) *http.Response {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" ||
		len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Fatalf("status %d, header %v, transfer encoding %v", resp.StatusCode, resp.Header, resp.TransferEncoding)
	}
	if resp.Header.Get("X-Request-Id") == "" || resp.Header.Get("X-Tollgate-Backend") != "up" {
		t.Fatalf("header %v", resp.Header)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the stream: %v", err)
	}
	events := strings.Split(strings.TrimSuffix(string(body), "\n\n"), "\n\n")
	if len(events) < 3 || events[len(events)-1] != "data: [DONE]" || !strings.Contains(events[0], `"chat.completion.chunk"`) {
		t.Fatalf("stream body %q", body)
	}
	return resp
}

func readChat(t *testing.T, br *bufio.Reader) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 || !strings.Contains(string(body), `"chat.completion"`) {
		t.Fatalf("status %d, %v: %s", resp.StatusCode, err, body)
	}
}

func dialGateway(t *testing.T, g *gw) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	return conn, bufio.NewReader(conn)
}

// TestStreamKeepsConnection: after a stream the connection serves the client's next
// requests, streamed or not.
func TestStreamKeepsConnection(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{})
	g := startGateway(t, mockConfig(addr, "", ""))
	conn, br := dialGateway(t, g)
	for _, body := range []string{streamBody, chatBody, streamBody, streamBody, chatBody} {
		if _, err := io.WriteString(conn, rawRequest(t, g, body)); err != nil {
			t.Fatal(err)
		}
		if body == streamBody {
			readStream(t, br)
		} else {
			readChat(t, br)
		}
	}
}

// TestStreamPipelined: requests the client sends behind a stream before it ends are
// answered in order on the same connection, none lost.
func TestStreamPipelined(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{TPOT: 5 * time.Millisecond})
	g := startGateway(t, mockConfig(addr, "", ""))
	conn, br := dialGateway(t, g)
	all := rawRequest(t, g, streamBody) + rawRequest(t, g, chatBody) + rawRequest(t, g, streamBody) + rawRequest(t, g, chatBody)
	if _, err := io.WriteString(conn, all); err != nil {
		t.Fatal(err)
	}
	readStream(t, br)
	readChat(t, br)
	readStream(t, br)
	readChat(t, br)
}

// TestStreamRequestSentWhileStreaming: a request the client sends while its stream
// runs (the stream detached, its connection watched for a hang-up) is read by the
// watch, kept, and served once the stream has ended; so is one after that.
func TestStreamRequestSentWhileStreaming(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{TTFT: 50 * time.Millisecond, TPOT: 20 * time.Millisecond})
	g := startGateway(t, mockConfig(addr, "", ""))
	for _, next := range []string{chatBody, streamBody} {
		conn, br := dialGateway(t, g)
		if _, err := io.WriteString(conn, rawRequest(t, g, streamBody)); err != nil {
			t.Fatal(err)
		}
		// The stream has begun (its header came) when the next request goes out.
		if _, err := br.Peek(1); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(conn, rawRequest(t, g, next)+rawRequest(t, g, chatBody)); err != nil {
			t.Fatal(err)
		}
		readStream(t, br)
		if next == streamBody {
			readStream(t, br)
		} else {
			readChat(t, br)
		}
		readChat(t, br)
	}
}

// TestStreamDetaches: a stream with nothing sent behind its request runs on a
// goroutine of its own, so that fasthttp takes back the connection's reader and the
// RequestCtx while it runs; one with a request pipelined behind it stays on
// fasthttp's hijack goroutine, whose reader holds that request. Either way the
// connection goes on serving.
func TestStreamDetaches(t *testing.T) {
	var detached atomic.Int32
	serverDetach := detach
	detach = func(r *request, c net.Conn) { detached.Add(1); serverDetach(r, c) }
	t.Cleanup(func() { detach = serverDetach })
	_, addr := startMock(t, mockllm.Options{TPOT: time.Millisecond})
	g := startGateway(t, mockConfig(addr, "", ""))
	conn, br := dialGateway(t, g)
	steps := []struct {
		send     []string
		detached int32
	}{
		{[]string{streamBody}, 1},
		{[]string{streamBody, chatBody}, 1},
		{[]string{streamBody}, 2},
		{[]string{chatBody}, 2},
		{[]string{streamBody}, 3},
	}
	for i, st := range steps {
		var all string
		for _, b := range st.send {
			all += rawRequest(t, g, b)
		}
		if _, err := io.WriteString(conn, all); err != nil {
			t.Fatal(err)
		}
		for _, b := range st.send {
			if b == streamBody {
				readStream(t, br)
			} else {
				readChat(t, br)
			}
		}
		if n := detached.Load(); n != st.detached {
			t.Fatalf("step %d: %d streams detached, want %d", i, n, st.detached)
		}
	}
	// The streams are over while the connection stays open for more: it counts as
	// hijacked (the drain waits for it) until the loop serving it ends, once, not
	// once per stream it carried.
	waitFor(t, func() bool { return g.hijacked.Load() == 1 })
	conn.Close()
	waitFor(t, func() bool { return g.hijacked.Load() == 0 })
}

// TestStreamConnectionClose: a client that asks for Connection: close gets it said
// in the header and the connection closed after the stream.
func TestStreamConnectionClose(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{})
	g := startGateway(t, mockConfig(addr, "", ""))
	conn, br := dialGateway(t, g)
	if _, err := io.WriteString(conn, rawRequest(t, g, streamBody, "Connection: close")); err != nil {
		t.Fatal(err)
	}
	if resp := readStream(t, br); !resp.Close {
		t.Fatalf("no Connection: close in %v", resp.Header)
	}
	if n, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("connection still open after the stream: %v %v", n, err)
	}
}

// TestStreamHTTP10: an HTTP/1.0 client, which cannot read chunks, gets the events
// unframed and the connection closed at the end.
func TestStreamHTTP10(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{})
	g := startGateway(t, mockConfig(addr, "", ""))
	conn, br := dialGateway(t, g)
	req := strings.Replace(rawRequest(t, g, streamBody), "HTTP/1.1", "HTTP/1.0", 1)
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 || len(resp.TransferEncoding) != 0 ||
		!strings.HasSuffix(string(body), "data: [DONE]\n\n") {
		t.Fatalf("status %d, transfer encoding %v, %v: %q", resp.StatusCode, resp.TransferEncoding, err, body)
	}
}

// TestStreamSendTimeout: a client that stops reading loses its stream once nothing of
// a write has gone out for the send timeout, and the upstream request is aborted,
// rather than both being held for as long as the connection lives.
func TestStreamSendTimeout(t *testing.T) {
	old := sendTimeout.Swap(int64(300 * time.Millisecond))
	t.Cleanup(func() { sendTimeout.Store(old) })
	mock, addr := startMock(t, mockllm.Options{MaxTokens: 1 << 20, MaxModelLen: 1 << 21, TPOT: time.Microsecond})
	g := startGateway(t, mockConfig(addr, "", ""))
	conn, br := dialGateway(t, g)
	body := `{"model":"chat","stream":true,"max_tokens":1000000,"messages":[{"role":"user","content":"go on"}]}`
	if _, err := io.WriteString(conn, rawRequest(t, g, body)); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("stream did not start: %v", err)
	}
	// Read nothing more: the socket buffers fill, the gateway's write blocks.
	waitFor(t, func() bool { return mock.Stats().Running == 1 })
	waitFor(t, func() bool { return g.hijacked.Load() == 0 && mock.Stats().Running == 0 })
	if !strings.Contains(g.logs.String(), `"status":499`) {
		t.Errorf("no access log line with status 499:\n%s", g.logs.String())
	}
}

// TestStreamRelayPanic: a panic while a stream is relayed ends that stream with an
// error log and frees what it held; the process goes on.
func TestStreamRelayPanic(t *testing.T) {
	logs := &syncBuffer{}
	s := newServerWith(t, benchConfig(startStaticSSEUpstream(t)), Options{Logger: slogTo(logs)})
	ctx := newProxyCtx([]byte(`{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	ctx.Conn().(*sinkConn).panics = true
	streamOnce(t, s, ctx, nil)
	if !strings.Contains(logs.String(), "stream relay panicked") {
		t.Fatalf("no log line for the panic:\n%s", logs.String())
	}
	if n := s.hijacked.Load(); n != 0 {
		t.Fatalf("%d hijacked streams still counted", n)
	}
	if n := s.rt.Load().refs.Load(); n != 0 {
		t.Fatalf("the stream still holds the runtime (%d references)", n)
	}
	// The next stream is served as usual.
	ctx = newProxyCtx([]byte(`{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	ctx.Request.Header.SetConnectionClose()
	if n := streamOnce(t, s, ctx, nil); n < 1000 {
		t.Fatalf("the next stream wrote %d bytes", n)
	}
}

// TestAwaitNextReusesItsWrapper hands the same connection back after each of two
// streams: the second wait must reuse the first one's wrapper, so that a connection
// carrying many streams does not read through one wrapper per stream.
func TestAwaitNextReusesItsWrapper(t *testing.T) {
	s := &Server{api: &fasthttp.Server{IdleTimeout: 5 * time.Second}}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		_, _ = b.Write([]byte("x"))
		_, _ = b.Write([]byte("y"))
	}()
	read := func(c net.Conn) byte {
		t.Helper()
		var p [1]byte
		if n, err := c.Read(p[:]); n != 1 || err != nil {
			t.Fatalf("read %d: %v", n, err)
		}
		return p[0]
	}
	first := s.awaitNext(a)
	if first == nil || read(first) != 'x' {
		t.Fatal("first request's byte lost")
	}
	second := s.awaitNext(first)
	if second != first {
		t.Fatalf("second wait wrapped the connection again: %T inside %T", second.(*firstByteConn).Conn, second)
	}
	if read(second) != 'y' {
		t.Fatal("second request's byte lost")
	}
	if len(s.afterStream) != 0 {
		t.Errorf("%d connections still listed as waiting", len(s.afterStream))
	}
}

// A client that sends its next request on the connection the moment its stream has
// ended finds the stream's concurrency slot free: the stream is over (its slot and
// limits given back) before the connection serves anything else, though the wait for
// that request began while the stream ran.
func TestStreamEndsBeforeConnectionServesNext(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 3})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], limits: [{per: ip, concurrency: 1}]}
`)
	conn, br := dialGateway(t, g)
	for i := range 40 {
		if _, err := io.WriteString(conn, rawRequest(t, g, streamBody)); err != nil {
			t.Fatal(err)
		}
		if resp := readStream(t, br); resp.StatusCode != 200 {
			t.Fatalf("stream %d on the connection: status %d, want 200 (the last stream's slot still taken)", i, resp.StatusCode)
		}
	}
}
