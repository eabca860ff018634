package gateway

import "github.com/valyala/fasthttp"

// expectContinue answers a request's `Expect: 100-continue` (fasthttp.Server's
// ExpectHandler) before its body is sent, and a request whose Content-Length is over
// readLimit, which headerReceived gives the expectation. A Content-Length over the
// live max_body_bytes gets the 413 the handler would answer after reading the body:
// with "100 Continue" the client uploads it all, the gateway closes the connection
// with the upload unread, and the client's kernel often turns the 413 into a reset (2
// of 10 net/http uploads of 8 MiB in a probe). A request whose body's end is unknown
// (unframed) gets its 400 without being invited to send the body. Any other request is
// invited to send its body.
func (s *Server) expectContinue(ctx *fasthttp.RequestCtx) int {
	if unframed(&ctx.Request.Header) {
		closeLingering(ctx)
		s.ownRequest(ctx).fail(ctx, &errTransferCoding)
		return errTransferCoding.status
	}
	rt := s.rt.Load()
	// A chunked body (ContentLength -1) is measured once read, by the handler; with
	// no runtime the handler answers shutting_down.
	if rt == nil || ctx.Request.Header.ContentLength() <= rt.maxBody {
		return fasthttp.StatusContinue
	}
	// fasthttp closes the connection after this answer, saying so, with the body
	// unread: the client may be sending it (one that did not wait for the answer
	// to its expectation, or that sent none), and the lingering close lets it read
	// the 413 rather than a reset.
	closeLingering(ctx)
	s.ownRequest(ctx).fail(ctx, &errTooLarge)
	return errTooLarge.status
}
