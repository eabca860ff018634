package gateway

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"
)

// A client that closes its sending side
// before its body is complete sent an incomplete message (RFC 9112 6.3: a message
// whose connection closes before the Content-Length's bytes came "MUST" be considered
// incomplete; 7.1: a chunked body ends with its last, zero-size chunk), which the
// gateway must not forward as if whole; README's error table answers an unreadable
// request 400 bad_request. Here the bytes that did come are a complete JSON request:
// 20 KiB of a body announced 100 bytes longer, and a chunked body without its last
// chunk.
func TestTruncatedBodyNotServed(t *testing.T) {
	var calls atomic.Int64
	up := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		calls.Add(1)
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		ctx.Response.SetBodyRaw(benchChatResp)
	})
	g := startGateway(t, mockConfig(up, "", ""))
	body := chatOfSize(20 << 10)
	const head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
	for _, tc := range []struct{ name, sent string }{
		{"Content-Length 100 bytes over what came", head + "Content-Length: " + strconv.Itoa(len(body)+100) + "\r\n\r\n" + body},
		{"chunked, no last chunk", head + "Transfer-Encoding: chunked\r\n\r\n" + strings.TrimSuffix(chunked(body, 4096), "0\r\n\r\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls.Store(0)
			c, br := dialGateway(t, g)
			if _, err := io.WriteString(c, tc.sent); err != nil {
				t.Fatal(err)
			}
			_ = c.(*net.TCPConn).CloseWrite()
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				if calls.Load() != 0 {
					t.Fatalf("no answer (%v), but the incomplete body went upstream", err)
				}
				return
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 400 || calls.Load() != 0 || !strings.Contains(string(b), `"bad_request"`) {
				t.Fatalf("status %d, upstream called %d times: %.200s; want 400 bad_request and nothing sent upstream for an incomplete body",
					resp.StatusCode, calls.Load(), b)
			}
		})
	}
}

// README, "A stream holds about 29 KiB of
// gateway memory": once its request went upstream, a stream needs nothing of the
// client's body, and hijackStream gives its buffers to the next request. 16 streams of 1 MiB prompts each, held open by an upstream that
// sent the first event, must not keep 16 MiB of bodies live.
func TestStreamDoesNotHoldBody(t *testing.T) {
	hold := make(chan struct{})
	up, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
		ev := sseChunk("hi")
		_, _ = io.WriteString(c, strconv.FormatInt(int64(len(ev)), 16)+"\r\n"+ev+"\r\n")
		<-hold
	})
	g := startGateway(t, strings.Replace(mockConfig(up, "", ""), "max_body_bytes: 64KiB", "max_body_bytes: 8MiB", 1))
	t.Cleanup(func() { close(hold) })
	const n, size = 16, 1 << 20
	body := `{"model":"chat","stream":true,"messages":[{"role":"user","content":"` + strings.Repeat("a", size) + `"}]}`
	raw := "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body
	liveHeap()
	before := liveHeap()
	for i := range n {
		c, br := dialGateway(t, g)
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("stream %d: %v %v", i, err, resp)
		}
		if _, err := br.ReadString('\n'); err != nil { // the first event's first line
			t.Fatalf("stream %d: %v", i, err)
		}
	}
	liveHeap()
	after := liveHeap()
	grown := int64(after) - int64(before)
	t.Logf("%d open streams of %d KiB bodies: %.1f MiB live", n, size>>10, float64(grown)/(1<<20))
	if grown > n*size/2 {
		t.Fatalf("%d open streams, each of a %d KiB prompt already sent upstream, hold %.1f MiB more live heap than before them (%.0f KiB a stream): the client's body stays live for the stream's life",
			n, size>>10, float64(grown)/(1<<20), float64(grown)/n/1024)
	}
}

// README's error table, "request not read within server.read_timeout" is 408
// request_timeout, and TestBodyStalledGets408 has it for a stall in the handler's own
// reading. A chunked body that stalls where fasthttp's chunk parser reads byte by
// byte, the CRLF after a chunk's data, gets it too: fasthttp wraps the deadline's
// timeout in ErrBrokenChunk, which has no Unwrap, and the connection tells it
// (deadline.Conn's ReadEnd).
func TestChunkedStallGets408(t *testing.T) {
	t.Parallel()
	g := startGateway(t, strings.Replace(maxBodyConfig(largeBodyUpstream(t), "1MiB"), "max_body_bytes: 1MiB}",
		"max_body_bytes: 1MiB, read_timeout: 500ms}", 1))
	head := "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
	data := chatOfSize(8 << 10)
	for _, tc := range []struct{ name, sent string }{
		{"after a chunk's data, before its CRLF", strconv.FormatInt(int64(len(data)), 16) + "\r\n" + data},
		{"after a chunk's data and its CR", strconv.FormatInt(int64(len(data)), 16) + "\r\n" + data + "\r"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, br := dialGateway(t, g)
			if _, err := io.WriteString(c, head+tc.sent); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 408 || !strings.Contains(string(b), `"request_timeout"`) {
				t.Fatalf("status %d: %s; want 408 request_timeout for a chunked body stalled past read_timeout", resp.StatusCode, b)
			}
		})
	}
}
