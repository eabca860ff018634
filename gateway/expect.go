package gateway

import (
	"time"

	"github.com/valyala/fasthttp"
)

// expectContinue answers a request's `Expect: 100-continue` (fasthttp.Server's
// ExpectHandler) before its body is sent, and a request whose Content-Length is over
// readLimit, which headerReceived gives the expectation. RFC 9110 10.1.1: the client
// asks whether the request will be taken, from its headers alone; what the handler
// would refuse from the headers before reading the body is refused now, with the
// answer it would give, and the body never invited:
//   - a header line ended by a bare LF (bareLF): 400;
//   - a body whose end is unknown (unframed): 400;
//   - a Content-Length over the live max_body_bytes: 413. With "100 Continue" the
//     client uploads it all, the gateway closes the connection with the upload
//     unread, and the client's kernel often turns the 413 into a reset (2 of 10
//     net/http uploads of 8 MiB in a probe);
//   - for a POST API call (serveCall), in serveCall's order: a header name that is
//     no token (400), a Content-Encoding (415), and, with auth.mode keys, a missing,
//     wrong, expired or doubled key (401, 400): curl sends the expectation for any
//     body over 1 MiB, and a client with an expired key would upload it all for its
//     401;
//   - then, for such a call, a Content-Length the request bodies held leave no room
//     for (server.max_buffered_bytes): 503 overloaded.
//
// Any other request is invited to send its body.
func (s *Server) expectContinue(ctx *fasthttp.RequestCtx) int {
	h := &ctx.Request.Header
	if bareLF(ctx) {
		return s.refuseHeaders(ctx, &errBareLF)
	}
	if unframed(h) {
		return s.refuseHeaders(ctx, &errTransferCoding)
	}
	rt := s.rt.Load()
	// A chunked body (ContentLength -1) is measured once read, by the handler; with
	// no runtime the handler answers shutting_down.
	switch {
	case rt == nil:
		return fasthttp.StatusContinue
	case h.ContentLength() > rt.maxBody:
		return s.refuseHeaders(ctx, &errTooLarge)
	case !ctx.IsPost() || !callRoute(ctx.Path()):
		return fasthttp.StatusContinue
	case !headerNamesValid(h.RawHeaders()):
		return s.refuseHeaders(ctx, &errHeaderName)
	case !identityCoded(h):
		ctx.Response.Header.SetBytesKV(hdrAcceptEncoding, strIdentity)
		return s.refuseHeaders(ctx, &errContentEncoding)
	case !rt.authKeys:
		return s.bodyRoom(ctx, rt)
	}
	// A key expired when the header arrived (as the handler judges it: r.start).
	arrived := time.Now()
	if a := arrivalOf(ctx.Conn()); a != nil {
		arrived = a.at
	}
	k, e := authenticate(rt, h, s.keyClock(arrived))
	if e == nil {
		return s.bodyRoom(ctx, rt)
	}
	closeLingering(ctx)
	r := s.ownRequest(ctx)
	if r.rt != nil {
		// The handler's own auth, which marks the refusal on its span (and sets an
		// expired key's challenge).
		if re := r.auth(ctx); re != nil {
			e, k = re, nil
		}
	}
	if k != nil {
		k.expiry.challenge(&ctx.Response.Header, e)
	}
	r.fail(ctx, e)
	return e.status
}

// bodyRoom invites an API call's body, or refuses it 503 overloaded when its
// Content-Length, over 64 KiB, would take the request bodies and answers held past
// server.max_buffered_bytes as they are now (holdBody would refuse it as it
// arrived or once read, the upload wasted): read, it holds its buffer, grown to the
// Content-Length, and the copy sent upstream, twice its length. A body alone is
// always invited.
func (s *Server) bodyRoom(ctx *fasthttp.RequestCtx, rt *runtime) int {
	n := ctx.Request.Header.ContentLength()
	if held := s.buffered(); n > maxPooledBuffer && held > 0 && held+int64(readHold(n, n)) > rt.maxBuffered {
		closeLingering(ctx)
		r := s.ownRequest(ctx)
		r.fail(ctx, r.overloaded(ctx))
		return errOverloaded.status
	}
	return fasthttp.StatusContinue
}

// refuseHeaders answers a request from its headers with e and records it. fasthttp
// closes the connection after this answer, saying so, with the body unread: the
// client may be sending it (one that did not wait for the answer to its expectation,
// or that sent none), and the lingering close lets it read the answer rather than a
// reset.
func (s *Server) refuseHeaders(ctx *fasthttp.RequestCtx, e *apiError) int {
	closeLingering(ctx)
	s.ownRequest(ctx).fail(ctx, e)
	return e.status
}

// callRoute reports whether path is an API call's (serveCall): chat, completions,
// embeddings, responses, rerank, score, messages, count_tokens, tokenize, detokenize,
// the audio API or an MLflow invocation.
func callRoute(path []byte) bool {
	switch ownRoute(path) {
	case routeChat, routeCompletions, routeEmbeddings, routeResponses, routeRerank, routeRerankV2, routeRerankRoot, routeScore,
		routeScoreRoot, routeMessages, routeCountTokens, routeTokenize, routeDetokenize, routeTranscriptions, routeTranslations,
		routeInvocations:
		return true
	}
	return false
}
