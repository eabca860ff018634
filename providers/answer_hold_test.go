package providers

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// boundHold is an AnswerHold with room for limit bytes (0: any), which records each
// buffer size it was asked for and what it holds.
type boundHold struct {
	limit, held int
	asked       []int
}

func (h *boundHold) HoldAnswer(n int) bool {
	h.asked = append(h.asked, n)
	if h.limit > 0 && n > h.limit {
		return false
	}
	h.held = n
	return true
}

// bigAnswer is a chat completion of n bytes.
func bigAnswer(n int) string {
	const head = `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"`
	const tail = `"},"finish_reason":"stop"}]}`
	return head + strings.Repeat("a", n-len(head)-len(tail)) + tail
}

// inChunks is body framed as chunks of size bytes each (the last shorter), with the
// last chunk.
func inChunks(body string, size int) string {
	var b strings.Builder
	for len(body) > 0 {
		n := min(size, len(body))
		b.WriteString(chunked(body[:n]))
		body = body[n:]
	}
	b.WriteString("0\r\n\r\n")
	return b.String()
}

// The buffer an answer is read into is counted as it grows past 64 KiB, each size
// asked before it is allocated, in place of the one before: what the hold counts
// last is the buffer the body ends in, a Content-Length's exactly, the others' under
// twice the body; a chunked body of small chunks doubles too, asked a few times, not
// once a chunk.
func TestReadBodyHoldsWhatItGrows(t *testing.T) {
	const n = 1_000_000
	body := bigAnswer(n)
	for _, tc := range []struct{ name, answer string }{
		{"content-length", lengthHead + strconv.Itoa(n) + "\r\n\r\n" + body},
		{"small chunks", chunkedHead + inChunks(body, 1000)},
		{"one chunk", chunkedHead + inChunks(body, n)},
		{"up to the close", closeHead + body},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &boundHold{}
			resp := readHeld(t, tc.answer, 64<<20, h)
			b := resp.Body()
			if string(b) != body {
				t.Fatalf("body of %d bytes, want the %d sent", len(b), n)
			}
			if h.held != cap(b) || cap(b) >= 2*n || tc.name == "content-length" && cap(b) != n {
				t.Errorf("held %d, buffer of %d for a body of %d", h.held, cap(b), n)
			}
			for i, a := range h.asked {
				if a <= maxPooledBuffer || i > 0 && a <= h.asked[i-1] {
					t.Fatalf("asked %v: each over 64 KiB and more than the one before", h.asked)
				}
			}
			if len(h.asked) > 6 {
				t.Errorf("asked %d times (%v), want the buffer doubled", len(h.asked), h.asked)
			}
		})
	}
}

// readHeld reads answer as connRoundTrip does a buffered one, its body under max and
// hold.
func readHeld(t *testing.T, answer string, max int, hold AnswerHold) *fasthttp.Response {
	t.Helper()
	resp, err := readAnswerHeld(t, answer, max, hold)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func readAnswerHeld(t *testing.T, answer string, max int, hold AnswerHold) (*fasthttp.Response, error) {
	t.Helper()
	resp := fasthttp.AcquireResponse()
	t.Cleanup(func() { fasthttp.ReleaseResponse(resp) })
	br := bufio.NewReader(strings.NewReader(answer))
	resp.SkipBody = true
	if err := resp.Read(br); err != nil {
		t.Fatalf("header: %v", err)
	}
	resp.SkipBody = false
	return resp, readBody(resp, br, max, hold)
}

// An answer whose buffer the hold has no room for ends the read with ErrAnswerNoRoom
// before that buffer is made: the hold counts, and the answer holds, no more than
// the room there was.
func TestReadBodyNoRoom(t *testing.T) {
	const n, room = 1_000_000, 300_000
	for _, tc := range []struct{ name, answer string }{
		{"content-length", lengthHead + strconv.Itoa(n) + "\r\n\r\n" + bigAnswer(n)},
		{"chunked", chunkedHead + inChunks(bigAnswer(n), 4096)},
		{"up to the close", closeHead + bigAnswer(n)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &boundHold{limit: room}
			resp, err := readAnswerHeld(t, tc.answer, 64<<20, h)
			if !errors.Is(err, ErrAnswerNoRoom) || errors.Is(err, ErrBadResponse) {
				t.Fatalf("err = %v, want ErrAnswerNoRoom alone", err)
			}
			if b := resp.SwapBody(nil); h.held > room || cap(b) > room {
				t.Errorf("held %d, buffer of %d, with room for %d", h.held, cap(b), room)
			}
		})
	}
}

// A large buffer fasthttp's pool hands a response (a translated answer's read, given
// back whole) is not read into: a small answer holds a small buffer, and asks nothing.
func TestReadBodyLeavesLargePooledBuffer(t *testing.T) {
	body := `{"id":"x","choices":[]}`
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	resp.SwapBody(make([]byte, 0, 1<<20))
	br := bufio.NewReader(strings.NewReader(lengthHead + strconv.Itoa(len(body)) + "\r\n\r\n" + body))
	resp.SkipBody = true
	if err := resp.Read(br); err != nil {
		t.Fatal(err)
	}
	resp.SkipBody = false
	h := &boundHold{}
	if err := readBody(resp, br, 64<<20, h); err != nil {
		t.Fatal(err)
	}
	if b := resp.Body(); string(b) != body || cap(b) > maxPooledBuffer || len(h.asked) > 0 {
		t.Errorf("body %q in a buffer of %d, asked %v", b, cap(b), h.asked)
	}
}

// Through a backend: an answer the call's Hold has no room for fails the attempt with
// ErrAnswerNoRoom, neither an invalid answer nor a failure of the target (no verdict),
// the upstream asked once; its connection is closed, not read on, and the next call
// dials a new one.
func TestSendAnswerNoRoom(t *testing.T) {
	const n = 4 << 20
	answer := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(n) + "\r\n\r\n" + bigAnswer(n)
	closed := make(chan error, 4)
	u := startScript(t, func(_ int, c net.Conn, _ *http.Request) bool {
		_, err := io.WriteString(c, answer)
		if err == nil {
			// Written whole into the socket's buffers: the gateway's close
			// shows as the end of the connection.
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = c.Read(make([]byte, 1))
		}
		closed <- err
		return false
	})
	b := newTestBackend(t, Config{Provider: "openai", BaseURL: "http://" + u.addr + "/v1", Model: "m"})
	call := promptCall("hi", false)
	call.Hold = &boundHold{limit: 1 << 20}
	out := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(out)
	var res Result
	err := b.Send(call, out, &res)
	if !errors.Is(err, ErrAnswerNoRoom) || errors.Is(err, ErrBadResponse) || errors.Is(err, ErrConnect) {
		t.Fatalf("err = %v, want ErrAnswerNoRoom alone", err)
	}
	if res.Judged || res.Failed || res.Status != 200 {
		t.Errorf("judged %v failed %v status %d: want no verdict on a 200", res.Judged, res.Failed, res.Status)
	}
	select {
	case err := <-closed:
		var ne net.Error
		if err == nil || errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the upstream's connection stayed open (%v)", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream's connection stayed open")
	}
	if got := u.got.Load(); got != 1 {
		t.Errorf("upstream asked %d times, want once", got)
	}
	// With room, the next call is answered whole, on a new connection.
	call = promptCall("hi", false)
	call.Hold = &boundHold{}
	if _, err := sendOnce(b, call); err != nil {
		t.Fatalf("next call: %v", err)
	}
	if d := u.dials.Load(); d != 2 {
		t.Errorf("%d connections dialled, want 2", d)
	}
	if n := b.Targets()[0].InFlight(); n != 0 {
		t.Errorf("%d attempts still in flight", n)
	}
}
