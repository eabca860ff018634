package gateway

import (
	"bytes"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/internal/connwrap"
)

// errBareLF refuses a request with a line of its header (its request line, a field
// line, or the empty line that ends it), or of its chunked body's trailer, ended by a
// bare LF rather than CRLF. RFC 9112 2.2 lets a server take a bare LF for a line's
// end or refuse the message; fasthttp ends a header block, and a trailer, only at a
// CRLF CRLF, in it or after it: a request whose lines all end in a bare LF would wait
// for read_timeout, and one with a CRLF CRLF in its body, or in the request behind
// it, would have its header or trailer end where a proxy in front may not see it end.
// The connection is closed after the answer (the listeners' connections read nothing
// past such a line, deadline.Listener's Heads).
var errBareLF = apiError{400, "invalid_request_error", "bad_request", "",
	"A line of the request's header or trailer ends in a bare LF: HTTP/1.1 lines end in CRLF (RFC 9112 2.2)."}

// bareLiner is a connection that tells whether a line of the header or trailer of its
// request number r ended in a bare LF, when it followed that request
// (deadline.Listener's Heads).
type bareLiner interface {
	BareLF(r int) (bare, known bool)
}

// bareLF reports whether a line of the header of the request ctx carries, or of its
// chunked body's trailer as far as it was read, ended in a bare LF: as its connection
// saw it come, or, on a connection that does not follow its requests (a test's), in
// the header block fasthttp kept (RawHeaders), which lacks the request line (fasthttp
// keeps its method, target and version, not how it ended) and the trailer. The
// listeners' connections follow every request fasthttp serves on them: they stop
// following only at a request fasthttp refuses, or after which the connection
// closes. A connection is asked by the request's number: one the client pipelined
// ahead of a refused request, read in the same read, is served. The handler asks
// before it routes the request, and again where the read of a chunked body fails
// (readBody): a trailer that came after the header ends the connection's reads at
// its bare LF.
func bareLF(ctx *fasthttp.RequestCtx) bool {
	if c, ok := connwrap.Under[bareLiner](ctx.Conn()); ok {
		if bare, known := c.BareLF(requestNumber(ctx)); known {
			return bare
		}
	}
	return bareLineEnd(ctx.Request.Header.RawHeaders())
}

// unreadBareLF reports whether the request the admin server could not read on ctx's
// connection (its ErrorHandler's) had a line of its header or trailer ended by a bare
// LF. A read that meets the line fails with the connection's deadline.ErrBareLF
// (unreadable), but for a trailer of nothing but a bare LF, which fasthttp reads as a
// chunked body's end cut short and fails with its own broken-chunk error, not
// wrapping the connection's. fasthttp numbers ctx's request (ConnRequestNum) only
// once it has read it: the one it failed on is the one after.
func unreadBareLF(ctx *fasthttp.RequestCtx) bool {
	c, ok := connwrap.Under[bareLiner](ctx.Conn())
	if !ok {
		return false
	}
	bare, _ := c.BareLF(int(ctx.ConnRequestNum()) + 1)
	return bare
}

// requestNumber is the number of ctx's request among those its connection carried:
// counted by headerReceived on the API listener, whose connections fasthttp serves
// anew after each stream; on the admin listener's, fasthttp's own count.
func requestNumber(ctx *fasthttp.RequestCtx) int {
	if ac, ok := connwrap.Under[*arrivalConn](ctx.Conn()); ok {
		return ac.requests
	}
	return int(ctx.ConnRequestNum())
}

// bareLineEnd reports whether a line of raw, a header block as it came, ends in a
// bare LF.
func bareLineEnd(raw []byte) bool {
	for i := 0; i < len(raw); {
		j := bytes.IndexByte(raw[i:], '\n')
		if j < 0 {
			return false
		}
		if i += j; i == 0 || raw[i-1] != '\r' {
			return true
		}
		i++
	}
	return false
}
