package providers

import (
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

// A streaming call's error answer is read whole as a buffered one is: its buffer grows
// with what came, each size over 64 KiB asked of the call's Hold before it is made, to
// its Content-Length (and a byte to see its end), not past it.
// With room, the upstream's error reaches out whole; without, the attempt ends with
// ErrAnswerNoRoom, no verdict on the target, the upstream asked once and its
// connection closed, not read on.
func TestStreamedErrorAnswerHeld(t *testing.T) {
	const n = 2_000_000
	body := `{"error":{"message":"` + strings.Repeat("e", n-len(`{"error":{"message":""}}`)) + `"}}`
	head := "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(n) + "\r\n"
	closed := make(chan error, 4)
	u := startScript(t, func(i int, c net.Conn, _ *http.Request) bool {
		if i == 1 {
			// Read whole: the connection would go back to the pool.
			_, _ = io.WriteString(c, head+"Connection: close\r\n\r\n"+body)
			return false
		}
		_, err := io.WriteString(c, head+"\r\n"+body)
		if err == nil {
			// Written into the sockets' buffers: the gateway's close shows as
			// the end of the connection.
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = c.Read(make([]byte, 1))
		}
		closed <- err
		return false
	})
	b := newTestBackend(t, Config{Provider: "openai", BaseURL: "http://" + u.addr + "/v1", Model: "m"})

	t.Run("room", func(t *testing.T) {
		h := &boundHold{}
		call := promptCall("hi", true)
		call.Hold = h
		out := fasthttp.AcquireResponse()
		defer fasthttp.ReleaseResponse(out)
		var res Result
		err := b.Send(call, out, &res)
		var ue *UpstreamError
		if !errors.As(err, &ue) || ue.Status != 500 || string(out.Body()) != body {
			t.Fatalf("err = %v, %d bytes; want the upstream's 500 whole", err, len(out.Body()))
		}
		if h.held != n+1 {
			t.Errorf("held %d for a body of %d, its Content-Length: want %d", h.held, n, n+1)
		}
		for i, a := range h.asked {
			if a <= maxPooledBuffer || i > 0 && a <= h.asked[i-1] {
				t.Fatalf("asked %v: each over 64 KiB and more than the one before", h.asked)
			}
		}
	})
	t.Run("no room", func(t *testing.T) {
		got := u.got.Load()
		h := &boundHold{limit: 1 << 20}
		call := promptCall("hi", true)
		call.Hold = h
		out := fasthttp.AcquireResponse()
		defer fasthttp.ReleaseResponse(out)
		var res Result
		err := b.Send(call, out, &res)
		if !errors.Is(err, ErrAnswerNoRoom) || errors.Is(err, ErrBadResponse) {
			t.Fatalf("err = %v, want ErrAnswerNoRoom alone", err)
		}
		if res.Judged || res.Failed {
			t.Errorf("judged %v failed %v: want no verdict", res.Judged, res.Failed)
		}
		if h.held > 1<<20 {
			t.Errorf("held %d with room for %d", h.held, 1<<20)
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
		if n := u.got.Load() - got; n != 1 {
			t.Errorf("upstream asked %d times, want once", n)
		}
		if n := b.Targets()[0].InFlight(); n != 0 {
			t.Errorf("%d attempts still in flight", n)
		}
	})
}
