package providers

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// A coded answer grows as it is decoded (a few KiB of gzip hold a megabyte): the
// decoded buffer is counted against the call's Hold in place of the coded one read,
// and one it has no room for is ErrAnswerNoRoom, no verdict on the target; with room
// the answer comes decoded and the hold counts the decoded buffer.
func TestSendDecodedAnswerHold(t *testing.T) {
	const n = 1 << 20
	body := bigAnswer(n)
	u, coded := startGzipUpstream(t, "200 OK", body)
	if coded > 64<<10 {
		t.Fatalf("gzip of %d bytes: the coded answer should fit the pooled size", coded)
	}
	b := newTestBackend(t, Config{Provider: "openai", BaseURL: "http://" + u.addr + "/v1", Model: "m"})
	out := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(out)

	call := promptCall("hi", false)
	h := &boundHold{limit: 512 << 10}
	call.Hold = h
	var res Result
	err := b.Send(call, out, &res)
	if !errors.Is(err, ErrAnswerNoRoom) || errors.Is(err, ErrBadResponse) {
		t.Fatalf("err = %v, want ErrAnswerNoRoom", err)
	}
	if res.Judged || res.Failed {
		t.Errorf("judged %v failed %v: want no verdict", res.Judged, res.Failed)
	}
	if len(h.asked) == 0 || h.asked[len(h.asked)-1] < n {
		t.Errorf("asked %v: want the decoded buffer, at least %d", h.asked, n)
	}

	call = promptCall("hi", false)
	h = &boundHold{}
	call.Hold = h
	out.Reset()
	res = Result{}
	if err := b.Send(call, out, &res); err != nil {
		t.Fatalf("with room: %v", err)
	}
	if got := out.Body(); string(got) != body || len(out.Header.ContentEncoding()) != 0 {
		t.Fatalf("answer of %d bytes, Content-Encoding %q: want the %d decoded, uncoded", len(got), out.Header.ContentEncoding(), n)
	}
	if h.held < n {
		t.Errorf("held %d, want the decoded buffer (at least %d)", h.held, n)
	}
	if n := b.Targets()[0].InFlight(); n != 0 {
		t.Errorf("%d attempts still in flight", n)
	}
}

// A streaming call's error answer, read whole, is held as a buffered answer is when
// coded too: its decoded buffer is asked of the call's Hold, ErrAnswerNoRoom without
// room, the upstream's error passed on decoded with it.
func TestSendStreamedDecodedErrorHold(t *testing.T) {
	const n = 1 << 20
	body := `{"error":{"message":"` + string(bytes.Repeat([]byte("x"), n)) + `"}}`
	u, _ := startGzipUpstream(t, "500 Internal Server Error", body)
	b := newTestBackend(t, Config{Provider: "openai", BaseURL: "http://" + u.addr + "/v1", Model: "m"})
	out := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(out)

	call := promptCall("hi", true)
	h := &boundHold{limit: 512 << 10}
	call.Hold = h
	var res Result
	if err := b.Send(call, out, &res); !errors.Is(err, ErrAnswerNoRoom) {
		t.Fatalf("err = %v, want ErrAnswerNoRoom", err)
	}
	if len(h.asked) == 0 || h.asked[len(h.asked)-1] < n {
		t.Errorf("asked %v: want the decoded buffer, at least %d", h.asked, n)
	}

	call = promptCall("hi", true)
	h = &boundHold{}
	call.Hold = h
	out.Reset()
	res = Result{}
	var ue *UpstreamError
	if err := b.Send(call, out, &res); !errors.As(err, &ue) || ue.Status != 500 {
		t.Fatalf("with room: %v, want the upstream's 500", err)
	}
	if len(out.Body()) < n || h.held < n {
		t.Errorf("answer of %d bytes, held %d: want the error decoded whole and held", len(out.Body()), h.held)
	}
}

// An Anthropic error answer coded by a proxy in front of the API is decoded under the
// call's Hold too, buffered or streamed: ErrAnswerNoRoom when the decoded body has no
// room, else the error translated with the upstream's status and its message whole.
func TestAnthropicDecodedErrorHold(t *testing.T) {
	const n = 1 << 20
	body := `{"type":"error","error":{"type":"invalid_request_error","message":"` + strings.Repeat("x", n) + `"}}`
	u, _ := startGzipUpstream(t, "400 Bad Request", body)
	b := newTestBackend(t, Config{Provider: "anthropic", BaseURL: "http://" + u.addr, Model: "claude-x", APIKey: "k"})
	out := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(out)
	for _, stream := range []bool{false, true} {
		call := promptCall("hi", stream)
		h := &boundHold{limit: 512 << 10}
		call.Hold = h
		var res Result
		out.Reset()
		if err := b.Send(call, out, &res); !errors.Is(err, ErrAnswerNoRoom) {
			t.Fatalf("stream %v: err = %v, want ErrAnswerNoRoom", stream, err)
		}
		if len(h.asked) == 0 || h.asked[len(h.asked)-1] < n {
			t.Errorf("stream %v: asked %v, want the decoded buffer, at least %d", stream, h.asked, n)
		}

		call = promptCall("hi", stream)
		h = &boundHold{}
		call.Hold = h
		res = Result{}
		out.Reset()
		var ue *UpstreamError
		if err := b.Send(call, out, &res); !errors.As(err, &ue) || ue.Status != 400 {
			t.Fatalf("stream %v with room: %v, want the upstream's 400", stream, err)
		}
		if got := out.Body(); !bytes.Contains(got, []byte(`"invalid_request_error"`)) || bytes.Count(got, []byte("x")) < n {
			t.Errorf("stream %v: answer of %d bytes, want the error translated with its message whole", stream, len(got))
		}
		if h.held < n {
			t.Errorf("stream %v: held %d, want the decoded buffer (at least %d)", stream, h.held, n)
		}
	}
	if n := b.Targets()[0].InFlight(); n != 0 {
		t.Errorf("%d attempts still in flight", n)
	}
}

// startGzipUpstream answers every request with body, gzipped, under status (a status
// line's code and reason), its Content-Length the coded size, which it returns.
func startGzipUpstream(t *testing.T, status, body string) (*scriptUpstream, int) {
	var z bytes.Buffer
	w := gzip.NewWriter(&z)
	_, _ = io.WriteString(w, body)
	_ = w.Close()
	answer := "HTTP/1.1 " + status + "\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: " +
		strconv.Itoa(z.Len()) + "\r\n\r\n" + z.String()
	u := startScript(t, func(_ int, c net.Conn, _ *http.Request) bool {
		_, _ = io.WriteString(c, answer)
		return true
	})
	return u, z.Len()
}
