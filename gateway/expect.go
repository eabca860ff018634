package gateway

import "github.com/valyala/fasthttp"

// expectContinue answers a request's `Expect: 100-continue` (fasthttp.Server's
// ExpectHandler) before its body is sent. A Content-Length over the live
// max_body_bytes gets the 413 the handler would answer after reading the body: with
// "100 Continue" the client uploads it all, the gateway closes the connection with
// the upload unread, and the client's kernel often turns the 413 into a reset (2 of
// 10 net/http uploads of 8 MiB in a probe). Any other request is invited to send its
// body.
func (s *Server) expectContinue(ctx *fasthttp.RequestCtx) int {
	rt := s.rt.Load()
	// A chunked body (ContentLength -1) is measured once read, by the handler; with
	// no runtime the handler answers shutting_down.
	if rt == nil || ctx.Request.Header.ContentLength() <= rt.maxBody {
		return fasthttp.StatusContinue
	}
	// fasthttp closes the connection after this answer (the client may have begun
	// sending the body anyway); saying so spares the client a failed next request.
	ctx.SetConnectionClose()
	s.ownRequest(ctx).fail(ctx, &errTooLarge)
	return errTooLarge.status
}
