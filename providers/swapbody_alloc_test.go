//go:build !race

package providers

import (
	"bufio"
	"bytes"
	"strconv"
	"testing"

	"github.com/valyala/fasthttp"
)

// TestSwapBodyKeepsBodyPoolWarm runs the non-streaming hand-off the way a server
// does, long past the point where fasthttp's body pool calibrates its sizes from
// what it is given back (42,000 of one size), and then counts allocations: the
// upstream answer's buffer must still come from the pool.
func TestSwapBodyKeepsBodyPoolWarm(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 700)
	raw := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + string(body))
	src := bytes.NewReader(raw)
	br := bufio.NewReaderSize(src, 4096)
	// The server's response keeps its buffer between requests and is empty when
	// the handler starts, as fasthttp's server leaves it.
	var out fasthttp.Response
	out.KeepBodyBuffer = true
	cycle := func() {
		out.ResetBody()
		src.Reset(raw)
		br.Reset(src)
		up := fasthttp.AcquireResponse()
		if err := up.Read(br); err != nil {
			t.Fatal(err)
		}
		swapBody(&out, up)
		fasthttp.ReleaseResponse(up)
	}
	for range 50_000 {
		cycle()
	}
	if !bytes.Equal(out.Body(), body) {
		t.Fatalf("body after the hand-off: %d bytes, want %d", len(out.Body()), len(body))
	}
	if n := testing.AllocsPerRun(2000, cycle); n != 0 {
		t.Errorf("%v allocations per answer handed off, want 0", n)
	}
}
