package providers

import (
	"bytes"
	"testing"

	"github.com/valyala/fasthttp"
)

// serverResponse is a response as the gateway's fasthttp server holds one: it keeps
// its body buffer across Reset, for the connection's next request (ReduceMemoryUsage
// off).
func serverResponse() *fasthttp.Response {
	out := &fasthttp.Response{KeepBodyBuffer: true}
	out.SetBodyString("an earlier answer on this connection")
	out.Reset()
	out.KeepBodyBuffer = true
	return out
}

// heldAfterReset is the capacity of the body buffer out keeps once reset, as the
// server resets it after writing it.
func heldAfterReset(out *fasthttp.Response) int {
	out.Reset()
	return cap(out.SwapBody(nil))
}

// An answer over maxPooledBuffer handed to the client's response (an upstream's body
// swapped in, or a body built for the client) is let go when the response is reset
// once written: kept as its body buffer, it would stay with the client's connection,
// idle in its pool, until the next request on it. A small one is swapped in and its
// buffer kept, as before, without allocating.
func TestAnswerBufferKeptOnlyWhenSmall(t *testing.T) {
	for _, c := range []struct {
		name string
		size int
		kept bool
	}{
		{"small", 4 << 10, true},
		{"at maxPooledBuffer", maxPooledBuffer, true},
		{"over maxPooledBuffer", maxPooledBuffer + 1, false},
		{"large", 40 << 20, false},
	} {
		body := bytes.Repeat([]byte{'a'}, c.size)
		t.Run(c.name+"/swapBody", func(t *testing.T) {
			up := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseResponse(up)
			up.SetBodyRaw(nil)
			up.SwapBody(body[:c.size:c.size])
			out := serverResponse()
			swapBody(out, up)
			if !bytes.Equal(out.Body(), body) {
				t.Fatalf("out's body is %d bytes, want the upstream's %d", len(out.Body()), c.size)
			}
			if held := heldAfterReset(out); (held >= c.size) != c.kept {
				t.Errorf("after the reset out holds a buffer of %d bytes (kept: %v, want %v)", held, held >= c.size, c.kept)
			}
		})
		t.Run(c.name+"/setAnswer", func(t *testing.T) {
			out := serverResponse()
			setAnswer(out, bytes.Clone(body))
			if !bytes.Equal(out.Body(), body) {
				t.Fatalf("out's body is %d bytes, want %d", len(out.Body()), c.size)
			}
			if held := heldAfterReset(out); (held >= c.size) != c.kept {
				t.Errorf("after the reset out holds a buffer of %d bytes (kept: %v, want %v)", held, held >= c.size, c.kept)
			}
		})
	}
}
