//go:build !race

package gateway

import (
	"bytes"
	"io"
	"strconv"
	"testing"

	"github.com/valyala/fasthttp"
)

// A 503 overloaded costs no garbage of the gateway's: its wait headers are written
// from the request's own buffer (setWait), however many clients a full
// server.max_buffered_bytes refuses. Refused from its headers, the whole request costs
// nothing; refused as or once its body is read, the refusal itself (refuseBody and
// the answer) costs nothing either, beside the body's buffers over 64 KiB, which are
// never pooled, refused or not.
func TestOverloadedAllocs(t *testing.T) {
	s := newServerWith(t, overloadConfig, Options{})
	t.Run("from its headers", func(t *testing.T) {
		raw := []byte("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
			strconv.Itoa(200_000) + "\r\nExpect: 100-continue\r\n\r\n")
		s.bodyBytes.Add(700_000)
		defer s.bodyBytes.Add(-700_000)
		if a := wireAnswer(t, s, raw); !bytes.HasPrefix(a, []byte("HTTP/1.1 503")) || !bytes.Contains(a, []byte("Retry-After-Ms: 1000\r\n")) {
			t.Fatalf("answer %.300q, want 503 overloaded with its wait", a)
		}
		c := &wireConn{}
		for range 3 {
			if err := c.serve(s, raw); err != nil && err != io.EOF {
				t.Fatal(err)
			}
		}
		if n := allocsPerRun(200, func() { _ = c.serve(s, raw) }); n != 0 {
			t.Fatalf("%.1f allocations per refusal, want 0", n)
		}
	})
	t.Run("a body read", func(t *testing.T) {
		r := s.acquireRequest()
		defer r.release()
		var ctx fasthttp.RequestCtx
		b := make([]byte, 0, 1<<10)
		refuse := func() {
			ctx.Response.Reset()
			writeError(&ctx.Response, r.refuseBody(&ctx, b))
		}
		refuse()
		if ctx.Response.StatusCode() != 503 || string(ctx.Response.Header.Peek("Retry-After-Ms")) != "1000" || string(ctx.Response.Header.Peek("X-Should-Retry")) != "true" {
			t.Fatalf("%d %s", ctx.Response.StatusCode(), ctx.Response.Header.Header())
		}
		if n := allocsPerRun(200, refuse); n != 0 {
			t.Fatalf("%.1f allocations per refusal, want 0", n)
		}
	})
}
