package gateway

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/providers/mockllm"
	"github.com/valyala/fasthttp"
)

// closedWithin reads c until the server closes it and returns how long that took
// from start; it fails if the connection is still open after limit.
func closedWithin(t *testing.T, c net.Conn, start time.Time, limit time.Duration) time.Duration {
	t.Helper()
	_ = c.SetReadDeadline(start.Add(limit))
	_, err := io.Copy(io.Discard, c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection still open after %v", limit)
	}
	return time.Since(start)
}

// server.read_timeout bounds reading a request from its first byte, and
// server.idle_timeout the wait for the next one on a kept-alive connection; the
// gateway moves both deadlines lazily (internal/deadline), so this checks that each
// still fires when it should and not at the other's time.
func TestServerTimeouts(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 2})
	cfg := strings.Replace(mockConfig(addr, "", ""), "shutdown_grace: 5s}",
		"shutdown_grace: 5s, read_timeout: 300ms, idle_timeout: 1200ms}", 1)
	g := startGateway(t, cfg)
	host := strings.TrimPrefix(g.url, "http://")
	const body = `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
	req := "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body

	dial := func(t *testing.T) net.Conn {
		c, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	roundTrip := func(t *testing.T, c net.Conn, br *bufio.Reader) { roundTripOK(t, c, br, req) }

	// slowRequest sends half a request's headers and checks that read_timeout closes
	// the connection 300 ms later.
	slowRequest := func(t *testing.T, c net.Conn) {
		start := time.Now()
		_, _ = io.WriteString(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
		if took := closedWithin(t, c, start, 3*time.Second); took < 250*time.Millisecond || took > 1100*time.Millisecond {
			t.Errorf("closed %v after the first byte, want read_timeout's 300 ms", took)
		}
	}

	t.Run("slow first request", func(t *testing.T) {
		slowRequest(t, dial(t))
	})
	t.Run("admin listener", func(t *testing.T) {
		// The admin listener has the same bounds: a slow scraper or a half-open
		// connection does not hold it forever.
		c, err := net.Dial("tcp", g.AdminAddr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		slowRequest(t, c)
	})
	t.Run("idle keep-alive", func(t *testing.T) {
		c := dial(t)
		br := bufio.NewReader(c)
		roundTrip(t, c, br)
		roundTrip(t, c, br)
		start := time.Now()
		// Open past read_timeout: idle_timeout governs the wait.
		if took := closedWithin(t, c, start, 4*time.Second); took < 1100*time.Millisecond || took > 3*time.Second {
			t.Errorf("idle connection closed after %v, want idle_timeout's 1.2 s", took)
		}
	})
	t.Run("slow request after an idle wait", func(t *testing.T) {
		c := dial(t)
		br := bufio.NewReader(c)
		roundTrip(t, c, br)
		time.Sleep(500 * time.Millisecond)
		slowRequest(t, c)
	})
	t.Run("requests keep a connection alive past both", func(t *testing.T) {
		c := dial(t)
		br := bufio.NewReader(c)
		end := time.Now().Add(2 * time.Second)
		for time.Now().Before(end) {
			roundTrip(t, c, br)
			time.Sleep(200 * time.Millisecond)
		}
	})
}

// A client must take a non-streamed answer within the send timeout, and one more for
// every sendQuantum bytes of a larger one: one that takes nothing loses its
// connection (and the goroutine and buffers serving it) instead of holding them for
// as long as it stays connected, while one that takes a large answer at a steady
// pace gets all of it.
func TestAnswerSendTimeout(t *testing.T) {
	oldTimeout := sendTimeout.Swap(int64(300 * time.Millisecond))
	oldQuantum := sendQuantum
	t.Cleanup(func() { sendTimeout.Store(oldTimeout); sendQuantum = oldQuantum })

	size := make(chan int, 1)
	upstream := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		n := <-size
		body := make([]byte, 0, n+256)
		body = append(body, `{"id":"x","object":"chat.completion","created":1,"model":"up-model","choices":[{"index":0,"message":{"role":"assistant","content":"`...)
		for len(body) < n {
			body = append(body, "0123456789abcdef"...)
		}
		body = append(body, `"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`...)
		ctx.Response.Header.SetContentType("application/json")
		ctx.Response.SetBodyRaw(body)
	})
	g := startGateway(t, benchConfig(upstream))
	// A small receive buffer keeps the kernel from taking the answer in the client's
	// place.
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		if e := c.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) }); e != nil {
			return e
		}
		return err
	}}
	const body = `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
	ask := func(t *testing.T, n int) (*http.Response, time.Time) {
		c, err := d.Dial("tcp", g.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		size <- n
		if _, err := io.WriteString(c, rawRequest(t, g, body)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReaderSize(c, 4096), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("status %v, %v", resp, err)
		}
		return resp, time.Now()
	}

	t.Run("a client that takes nothing", func(t *testing.T) {
		// More than the kernel's buffers take, within one quantum: the send timeout
		// alone (300 ms) bounds it.
		sendQuantum = 8 << 20
		resp, began := ask(t, 6<<20)
		time.Sleep(time.Second)
		got, err := io.Copy(io.Discard, resp.Body)
		if err == nil {
			t.Fatalf("the whole answer (%d bytes) came after %v without reading", got, time.Since(began))
		}
	})
	t.Run("a large answer taken at a steady pace", func(t *testing.T) {
		// 8 MiB: sixteen quanta of 512 KiB, 4.8 s to take it. Taken at 512 KiB per
		// 100 ms, the half the kernel does not buffer takes about 0.8 s, well past
		// the one send timeout of a small answer.
		sendQuantum = 512 << 10
		resp, _ := ask(t, 8<<20)
		buf := make([]byte, 512<<10)
		total := 0
		for {
			n, err := io.ReadFull(resp.Body, buf)
			total += n
			if err == io.EOF || err == io.ErrUnexpectedEOF && total == int(resp.ContentLength) {
				break
			}
			if err != nil {
				t.Fatalf("after %d of %d bytes: %v", total, resp.ContentLength, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if total != int(resp.ContentLength) {
			t.Fatalf("%d of %d bytes", total, resp.ContentLength)
		}
	})
}

// A kept-alive connection idle for longer than the send timeout (idle_timeout, 90 s by
// default, is longer than its 60 s) still gets what fasthttp writes before the next
// answer's deadline is set: the answer to a request whose body is over the limit, and
// "100 Continue". The send deadline is the handler's, which fasthttp clears once the
// answer is written, not a server WriteTimeout left on the connection.
func TestSendDeadlineClearedOnKeptAliveConnection(t *testing.T) {
	old := sendTimeout.Swap(int64(300 * time.Millisecond))
	t.Cleanup(func() { sendTimeout.Store(old) })
	_, addr := startMock(t, mockllm.Options{MaxTokens: 2})
	cfg := strings.Replace(mockConfig(addr, "", ""), "shutdown_grace: 5s}",
		"shutdown_grace: 5s, read_timeout: 5s, idle_timeout: 5s}", 1)
	g := startGateway(t, cfg)
	const body = `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`

	idleConn := func(t *testing.T) (net.Conn, *bufio.Reader) {
		c, br := dialGateway(t, g)
		roundTripOK(t, c, br, rawRequest(t, g, body))
		// Idle for longer than the write timeout, well within idle_timeout.
		time.Sleep(600 * time.Millisecond)
		return c, br
	}

	t.Run("body over the limit gets its 413", func(t *testing.T) {
		c, br := idleConn(t)
		// 64 KiB max_body_bytes: fasthttp's own limit is 2*64 KiB + 1 MiB.
		req := "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n"
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("no answer to an oversized request on a connection idle past the write timeout: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != 413 {
			t.Fatalf("status %d, want 413", resp.StatusCode)
		}
	})
	t.Run("Expect 100-continue gets its 100", func(t *testing.T) {
		c, br := idleConn(t)
		req := "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: " +
			strconv.Itoa(len(body)) + "\r\n\r\n"
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		line, err := br.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
			t.Fatalf("no 100 Continue on a connection idle past the write timeout: %q, %v", line, err)
		}
	})
}

// roundTripOK sends the raw request req on c and reads its answer whole from br; the
// answer must be a 200.
func roundTripOK(t *testing.T, c net.Conn, br *bufio.Reader, req string) {
	t.Helper()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}
