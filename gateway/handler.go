package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"math"
	"math/bits"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cespare/xxhash/v2"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/tollgate/tollgate/internal/connwrap"
	"github.com/tollgate/tollgate/internal/deadline"
	"github.com/tollgate/tollgate/internal/hangup"
	"github.com/tollgate/tollgate/internal/jsonscan"
	"github.com/tollgate/tollgate/limiter"
	"github.com/tollgate/tollgate/metrics"
	"github.com/tollgate/tollgate/providers"
	"github.com/tollgate/tollgate/router"
	"github.com/tollgate/tollgate/tracing"
)

var (
	hdrRequestID = []byte("X-Request-Id")
	// hdrAnthropicRequestID is the Messages API's request-id (setHeaders).
	hdrAnthropicRequestID = []byte("Request-Id")
	hdrBackend            = []byte("X-Tollgate-Backend")
	hdrVariant            = []byte("X-Tollgate-Variant")
	hdrAuthz              = []byte("Authorization")
	hdrAPIKey             = []byte("Api-Key")
	hdrXAPIKey            = []byte("X-Api-Key")
	hdrCacheCtl           = []byte("Cache-Control")
	hdrRetryAfter         = []byte("Retry-After")
	strNoCache            = []byte("no-cache")
	strBearer             = []byte("Bearer ")
	strSSE                = []byte("text/event-stream")
	strDataPrefix         = []byte("data: ")
	strEventPrefix        = []byte("event: ")
	// strErrorEvent begins a Messages API stream's error event.
	strErrorEvent = []byte("event: error\ndata: ")
	// strRespErrorEvent begins a Responses API stream's error event, its sequence
	// number next.
	strRespErrorEvent = []byte("event: error\ndata: {\"type\":\"error\",\"sequence_number\":")
	strEventEnd       = []byte("\n\n")
	strDoneEvent      = []byte("data: [DONE]\n\n")
	strKeepAlive      = []byte(": keep-alive\n\n")
	strModelsJSON     = []byte("application/json")
)

// request is the per-request state of the pipeline, pooled and reset on release. For a
// stream it lives on after the handler returns, as the response body reader.
type request struct {
	s *Server
	// client is the address per: ip limits count and the access log shows (the peer,
	// or behind trusted proxies the client X-Forwarded-For names); it views ipBuf.
	client []byte
	ipBuf  [16]byte
	// ipSubj is the client's address as per: ip limits count it (subjectIP).
	ipSubj [16]byte
	// tenantIP is that address written out, a fair queue's tenant (Tenant).
	tenantIP [48]byte
	ipText   [48]byte
	rt       *runtime
	start    time.Time
	// answered is when the answer was complete; zero until then (answeredAt).
	answered time.Time
	ep       *endpoint
	key      *clientKey
	plan     router.Plan
	// pin is the target a Responses call's previous_response_id names (untag), and
	// pinTargets the plan's targets reordered for it (pinPlan).
	pin        respTarget
	pinTargets []router.Target
	// ctxTargets are the context fallbacks a context-window refusal sent the request
	// on to (toContextFallbacks), ctxPhase set once it did.
	ctxTargets []router.Target
	ctxPhase   bool
	// tag is the response ID tag of the target that answered a Responses call, and
	// prevTag the one its previous_response_id came with (untag).
	tag, prevTag []byte
	// sentTag holds the tag a previous_response_id came with, signature and all,
	// when the gateway does not sign (its signature, made before, is kept as sent).
	sentTag [respSignedLen]byte
	be      *providers.Backend
	// series is the metrics route the request is recorded on once a backend was tried.
	series *metrics.Route
	begun  bool

	f    fields
	body []byte
	// bodyHeld is what the request's body takes against server.max_buffered_bytes
	// (holdBody): the capacity of bodyBuf while it is read, then with the length of
	// the upstream's copy (and of spliceBuf once an invocation's body is spliced into
	// it); 0 for none.
	bodyHeld int
	// ansHeld is what the answer in the request's response takes against
	// server.max_buffered_bytes (HoldAnswer, holdAnswerBody): its buffer while an
	// upstream's answer is read whole, then the body the client is to get, until
	// that is handed to fasthttp to write (finish); 0 for none. keptHeld is what
	// kept's body takes (keepAnswer): an upstream's error answer moved there while
	// the next backend is tried.
	ansHeld, keptHeld int
	// bodyBuf holds the body read from the client (readBody), spliceBuf an MLflow
	// invocation's body with its model spliced in (invocationBody), nameBuf an
	// endpoint name read from the request's path (pathName).
	bodyBuf   []byte
	spliceBuf []byte
	nameBuf   []byte
	call      providers.Call
	res       providers.Result
	ev        providers.Event

	reqID     []byte
	modelName []byte
	// userBuf holds the end user's string unescaped, when it has escapes (user).
	userBuf  []byte
	backend  string
	variant  string
	status   int
	attempts int
	// queued is the time the request's attempts waited in backends' queues.
	queued  time.Duration
	usage   providers.Usage
	ttft    time.Duration
	errKind string
	// soFar is the usage a stream reported before its end (providers.Event.SoFar,
	// or a choice's own usage, whose prompt is the request's), outBytes the size of
	// the generated text its events carried (an answer's without usage: its
	// providers.Result.OutputBytes); a stream cut before its usage came is settled
	// with them (streamedUsage, answeredUsage), usageEst then set when the counts are
	// the gateway's estimate rather than the upstream's.
	soFar    providers.Usage
	outBytes int64
	usageEst bool
	// estTokens is the token estimate the limits were charged at admission, 0 when
	// none was.
	estTokens int64
	// streamAttempt counts a stream's attempt when the stream ends, by how it
	// ended; streamErr is how the upstream failed it, when it did.
	streamAttempt *metrics.Attempt
	streamErr     metrics.StreamError
	// upFailed is set when the upstream failed the stream; failStatus is the
	// error status answered instead of the stream when that happened before its
	// header went out.
	upFailed   bool
	failStatus int
	// gotEvent is set once the stream has given an event.
	gotEvent bool
	// respSeq is the sequence number after the last Responses API event relayed:
	// the events count from 0, one each, natively and through the bridge.
	respSeq int64
	// abandoned is set when the client hung up while the upstream worked on the
	// request, which the provider then aborted (providers.ErrClientLeftUpstream).
	abandoned bool

	// obsRoute is the plan route of the last attempt, for the router's gates.
	obsRoute int
	// hintHolds is set while the last attempt went to the backend a repeat of the
	// request reaches first: the plan's first, or the first context fallback that
	// backend's context-window refusal sent the request on to. Only that upstream's
	// x-should-retry speaks for the request (passUpstreamError).
	hintHolds bool
	// kept is the last upstream error answer while a fallback is tried (keepAnswer);
	// nil until a request needs one.
	kept *fasthttp.Response

	subj    limiter.Subject
	ticket  limiter.Ticket
	limited bool

	// limitErr is a 429's error, errMsg its message, limitName the name of the limit
	// that refused it and refused the refusal: the request's own, not the heap's
	// (takeLimits).
	limitErr  apiError
	errMsg    []byte
	limitName []byte
	refused   *limiter.Refused

	// cacheRes is what the endpoint's answer cache did for the request (cache.go),
	// cacheNone without one; cacheLook is set when the request is to be looked up
	// in it, cacheFill while its answer is to be kept.
	cacheRes             cacheResult
	cacheLook, cacheFill bool
	// cacheGen is the cache's purge count when the request was looked up;
	// cacheStoreGen, for a Redis store, the endpoint's generation its lookup read
	// plus one (0: not looked up), which its answer is kept under or not at all.
	cacheGen, cacheStoreGen uint64
	// cacheEntry is the entry a lookup found (its answer served once the limits
	// admit the request), cacheAge its age then.
	cacheEntry *cacheEntry
	cacheAge   time.Duration
	// cacheRoute is the backend of the route the request was planned on: its entries
	// are apart from those of the endpoint's other routes (cacheOwner).
	cacheRoute string
	// cacheVersion is the client's anthropic-version, part of the cache's key; it
	// views the request's header.
	cacheVersion []byte

	// hang watches the client's connection while the request waits: in a backend's
	// queue (the call's Client) and before a retry (pause).
	hang clientWatch

	// tctx carries the request's trace; span is the server span and aspan the
	// upstream attempt's, kept open while a stream runs, with sent, when that
	// attempt was sent, and ans, what its chunks say of the answer.
	tctx  context.Context
	span  trace.Span
	aspan trace.Span
	sent  time.Time
	ans   tracing.Answer
	// anthropicAPI is set for a Messages API call: its errors, the gateway's own
	// and a stream's, are written in that API's shape.
	anthropicAPI bool
	traceBuf     [32]byte
	// sentReq records on a recording attempt span the request its provider sends
	// (the call's Sent, for the attempt only).
	sentReq tracing.SentRequest
	// clientTrace is the trace ID of the client's traceparent, read with tracing
	// off (clientTraced), when no span context holds it.
	clientTrace  [16]byte
	clientTraced bool

	// stream state: out holds what the relay has not written yet: the response
	// header (its first outHead bytes) until the first write, then chunkRoom bytes
	// of room for a chunk header, then the events.
	stream   providers.Events
	out      []byte
	outHead  int
	finished bool
	hideUse  bool
	// werr is the error a write to the client from waitFn or silentFn (upstreamWait
	// and upstreamSilent, bound once per pooled request) met.
	werr     error
	waitFn   func() error
	silentFn func() error

	// a hijacked stream's connection (stream.go); hijackFn is serveHijacked, bound
	// once per pooled request.
	conn     net.Conn
	keepConn bool
	chunked  bool
	// timedWrites is set when conn is not the gateway's own (tests that drive the
	// handler): each of the stream's writes then gets a write deadline of its own
	// (writeClient), where the gateway's connection bounds them itself.
	timedWrites bool
	hijackFn    fasthttp.HijackHandler
	peek        [1]byte // the first byte buffered behind a stream's request, if any

	// The client watch of a detached stream (stream.go): watchFn is watchClient and
	// watchDone its end, both made once per pooled request; gone is set when it saw
	// the client leave, watchN is the bytes it read (the next request's first byte
	// in peek).
	watchFn   func()
	watchDone chan struct{}
	watchStop atomic.Bool
	gone      atomic.Bool
	watchN    int
}

var requestPool = sync.Pool{New: func() any {
	return &request{reqID: make([]byte, 0, 64), out: make([]byte, 0, 1024)}
}}

func (s *Server) acquireRequest() *request {
	r := requestPool.Get().(*request)
	r.s = s
	if r.hijackFn == nil {
		r.hijackFn = r.serveHijacked
		r.waitFn = r.upstreamWait
		r.silentFn = r.upstreamSilent
		r.watchFn = r.watchClient
		r.watchDone = make(chan struct{}, 1)
	}
	return r
}

// maxPooledBuffer is the largest buffer a request keeps when it goes back to the pool:
// one big event or body should not pin its memory to every later request.
const maxPooledBuffer = 64 << 10

// pooled returns b emptied, or nil when it is over maxPooledBuffer.
func pooled(b []byte) []byte {
	if cap(b) > maxPooledBuffer {
		return nil
	}
	return b[:0]
}

func (r *request) release() {
	rt := r.rt
	r.dropBodyHold()
	r.setAnswerHolds(0, 0)
	if r.kept != nil {
		fasthttp.ReleaseResponse(r.kept)
	}
	*r = request{reqID: pooled(r.reqID), modelName: pooled(r.modelName), userBuf: pooled(r.userBuf), out: pooled(r.out), errMsg: pooled(r.errMsg), limitName: pooled(r.limitName),
		bodyBuf: pooled(r.bodyBuf), spliceBuf: pooled(r.spliceBuf), nameBuf: pooled(r.nameBuf), pinTargets: r.pinTargets[:0], ctxTargets: r.ctxTargets[:0], hijackFn: r.hijackFn, waitFn: r.waitFn, silentFn: r.silentFn, watchFn: r.watchFn, watchDone: r.watchDone,
		hang: clientWatch{w: r.hang.w}}
	requestPool.Put(r)
	if rt != nil {
		rt.release()
	}
}

// serveAPI is the request path: parse, authenticate, plan, send, answer, record.
func (s *Server) serveAPI(ctx *fasthttp.RequestCtx) {
	s.handling.Add(1)
	s.route(ctx)
	if s.draining.Load() {
		// A request read on a connection open when the drain began (kept alive by a
		// proxy, a TLS handshake under way) is served, and its connection closed
		// after the answer: the client's next request opens a connection, refused
		// here (the listener is closed), which proxies and clients retry elsewhere.
		// fasthttp says so too while its shutdown runs, not once shutdown_grace
		// has run out. A stream says it itself (hijackStream), and its connection
		// closes at once when the grace runs out (cutStreams). An answer's close
		// lingers: a request the client pipelined behind it is not served (HTTP/1.1
		// has the client resend it), and closing over its unread bytes would send
		// a reset, which can discard the answer before the client reads it.
		if ctx.Hijacked() {
			ctx.SetConnectionClose()
		} else {
			closeLingering(ctx)
		}
	}
	s.leaveBody(ctx)
	s.handling.Add(-1)
}

// route answers the request by its path.
func (s *Server) route(ctx *fasthttp.RequestCtx) {
	if bareLF(ctx) {
		// A line of its trailer, read along with its header, ended in a bare LF
		// (or of a header block fasthttp kept, on a connection that does not
		// follow its requests): nothing of it is served, and what follows is not
		// read.
		closeLingering(ctx)
		s.ownRequest(ctx).fail(ctx, &errBareLF)
		return
	}
	if !headerNamesValid(ctx.Request.Header.RawHeaders()) {
		// fasthttp takes a name with a space in it (only the other bytes outside
		// a token are refused) and closes the connection after the request.
		ctx.SetConnectionClose()
		s.ownRequest(ctx).fail(ctx, &errHeaderName)
		return
	}
	if unframed(&ctx.Request.Header) {
		// Where its body ends is unknown: what follows the header may be the
		// body or the next request, and is neither read nor served.
		closeLingering(ctx)
		s.ownRequest(ctx).fail(ctx, &errTransferCoding)
		return
	}
	var kind providers.Kind
	switch string(ctx.Path()) {
	case "/v1/chat/completions":
		kind = providers.Chat
	case "/v1/completions":
		kind = providers.Completions
	case "/v1/embeddings":
		kind = providers.Embeddings
	case "/v1/responses":
		kind = providers.Responses
	case "/v1/rerank", "/v2/rerank", "/rerank":
		// vLLM serves its rerank API at all three (Jina's shape, Cohere's v2 path).
		kind = providers.Rerank
	case "/score", "/v1/score":
		// vLLM's score API, served by rerank endpoints.
		kind = providers.Score
	case "/v1/messages":
		// Anthropic's Messages API, served by chat endpoints.
		kind = providers.Messages
	case "/v1/messages/count_tokens":
		kind = providers.CountTokens
	case "/tokenize":
		// vLLM's tokenizer API, at its root: served by endpoints of any type.
		kind = providers.Tokenize
	case "/detokenize":
		kind = providers.Detokenize
	case "/v1/audio/transcriptions":
		// OpenAI's audio API, served by transcriptions endpoints.
		kind = providers.Transcription
	case "/v1/audio/translations":
		kind = providers.Translation
	case "/v1/models":
		s.serveModels(ctx)
		return
	default:
		if id, ok := bytes.CutPrefix(ctx.Path(), prefixModels); ok && len(id) > 0 {
			s.serveModel(ctx, id)
			return
		}
		if rest, ok := bytes.CutPrefix(ctx.Path(), prefixResponses); ok && len(rest) > 0 {
			s.serveResponse(ctx, rest)
			return
		}
		s.serveOther(ctx)
		return
	}
	s.serveCall(ctx, kind, nil)
}

// serveCall runs one API call. invocation names the endpoint of an MLflow-style call,
// whose body has no model (kind is then the endpoint's).
func (s *Server) serveCall(ctx *fasthttp.RequestCtx, kind providers.Kind, invocation []byte) {
	if !ctx.IsPost() {
		s.ownRequest(ctx).fail(ctx, methodNotAllowed(ctx, strPost))
		return
	}
	r := s.acquireRequest()
	r.arrive(ctx)
	// Its errors in the Messages API's shape, as its client's SDK reads them.
	r.anthropicAPI = kind.Anthropic()
	if !s.bind(r) {
		r.setClient(ctx)
		r.fail(ctx, &errShuttingDown)
		return
	}
	r.setClient(ctx)
	route := routeInvocations
	switch {
	case invocation != nil:
	case kind == providers.Rerank || kind == providers.Score:
		// One kind, several paths.
		route = ownRoute(ctx.Path())
	default:
		route = kindRoutes[kind]
	}
	r.startSpan(ctx, serverSpecs[methodPost][route])
	// A body whose Content-Length is over the limit is refused before a byte of it
	// is kept. One over readLimit comes here only over HTTP/1.0: headerReceived has
	// any other answered as an expectation (expectContinue).
	if ctx.Request.Header.ContentLength() > r.rt.maxBody {
		dropBody(ctx, readLimit(r.rt.maxBody))
		r.fail(ctx, &errTooLarge)
		return
	}
	if !identityCoded(&ctx.Request.Header) {
		// RFC 9110 15.5.16 and RFC 7694 3: Accept-Encoding names the codings taken,
		// so that a client retries uncompressed.
		ctx.Response.Header.SetBytesKV(hdrAcceptEncoding, strIdentity)
		r.fail(ctx, &errContentEncoding)
		return
	}
	// The key first, as OpenAI checks it: a client without a valid key learns
	// nothing from the gateway, not even what is wrong with its body, and the
	// gateway keeps none of its body (leaveBody drops it).
	if e := r.auth(ctx); e != nil {
		r.fail(ctx, e)
		return
	}
	if invocation != nil {
		// Then the name, then the body: a name that exists answers as one that
		// does not, to a client without a key and to a key that may not use it,
		// so that endpoint names cannot be listed by probing.
		if raw, ok := invocationName(ctx.URI().PathOriginal()); ok {
			invocation = r.pathName(raw)
		}
		ep := r.rt.endpoint(invocation)
		if ep == nil || r.key != nil && !r.key.allowed[ep.idx] {
			e := modelNotFound(invocation)
			r.fail(ctx, &e)
			return
		}
		kind = ep.kind
		if kind.Form() {
			// MLflow's invocations take JSON: an audio call goes to its own route.
			r.fail(ctx, &errInvocationAudio)
			return
		}
	}
	if e := r.readBody(ctx); e != nil {
		if e == &errShuttingDown {
			r.cutOff(ctx)
			return
		}
		r.fail(ctx, e)
		return
	}
	if invocation != nil {
		var e *apiError
		if cap(r.spliceBuf) == 0 {
			r.spliceBuf = getBodyBuf()
		}
		if r.spliceBuf, e = invocationBody(r.spliceBuf[:0], invocation, r.body); e != nil {
			r.fail(ctx, e)
			return
		}
		// The spliced copy is a body buffer too, held beside the one read, and it is
		// what the upstream's copy is made of (readBody).
		if !r.holdBody(cap(r.bodyBuf) + readHold(cap(r.spliceBuf), len(r.spliceBuf))) {
			r.spliceBuf = pooled(r.spliceBuf)
			r.fail(ctx, r.overloaded(ctx))
			return
		}
		r.body = r.spliceBuf
	}
	if e := r.run(ctx, kind, invocation != nil); e != nil {
		switch {
		case e == &errShuttingDown && s.cut.Load():
			r.cutOff(ctx)
		case e == &errClientHungUp:
			r.hangUp(ctx)
		default:
			r.fail(ctx, e)
		}
		return
	}
	if r.stream != nil {
		ctx.Response.Header.SetContentTypeBytes(strSSE)
		ctx.Response.Header.SetBytesKV(hdrCacheCtl, strNoCache)
		r.setCacheHeader(&ctx.Response.Header)
		r.hijackStream(ctx)
		return
	}
	if r.cacheFill {
		r.fillCache(ctx)
	}
	r.finish(ctx, ctx.Response.StatusCode())
}

// identityCoded reports whether the request body comes without a content coding: no
// Content-Encoding, or only "identity". The gateway scans and splices the body as JSON
// and does not decode gzip and the like. Every Content-Encoding line is read, as one
// list (RFC 9110): an empty first line, which ContentEncoding alone would report as
// none, may come before a gzip one.
func identityCoded(h *fasthttp.RequestHeader) bool {
	for _, v := range h.PeekAll(fasthttp.HeaderContentEncoding) {
		for len(v) > 0 {
			c := v
			if i := bytes.IndexByte(v, ','); i >= 0 {
				c, v = v[:i], v[i+1:]
			} else {
				v = nil
			}
			if c = bytes.Trim(c, " \t"); len(c) > 0 && !bytes.EqualFold(c, strIdentity) {
				return false
			}
		}
	}
	return true
}

var (
	strIdentity       = []byte("identity")
	hdrAcceptEncoding = []byte("Accept-Encoding")
)

// bodyChunk is the least a request body buffer is grown to: fasthttp's own first read
// of a body (its prefetch) is up to 8 KiB, and most bodies fit in it.
const bodyChunk = 8 << 10

// readBody reads the request's body into r.body, the Content-Length already checked
// against max_body_bytes. fasthttp hands the handler the body as a stream
// (StreamRequestBody), having read up to 8 KiB of it; the rest is read here into a
// buffer that grows as bytes arrive, doubling, so that a client costs the gateway
// about what it sent, not what its Content-Length announces: fasthttp reading a whole
// body itself allocates its announced size before a byte of it is read, and a client
// that sends headers alone then holds max_body_bytes for read_timeout. A chunked body
// is measured as it is read; one over the limit is refused with the rest of it
// dropped (dropBody).
func (r *request) readBody(ctx *fasthttp.RequestCtx) *apiError {
	maxBody := r.rt.maxBody
	rs := ctx.RequestBodyStream()
	if rs == nil {
		// A body set whole: a request without one, or a context built by a test.
		r.body = ctx.Request.Body()
		if len(r.body) > maxBody {
			return &errTooLarge
		}
		return nil
	}
	// bound is the most the buffer needs: the Content-Length, or for a chunked
	// body one byte over the limit, which tells that it is over.
	bound := ctx.Request.Header.ContentLength()
	if bound < 0 {
		bound = maxBody
		if bound < math.MaxInt {
			bound++
		}
	}
	b := r.bodyBuf[:0]
	if cap(b) == 0 {
		// The request's buffer left with a stream: take one another stream gave back.
		b = getBodyBuf()
	}
	// Listed for the shutdown's cut once the body is not all read ahead of the
	// handler, so that a body that came whole costs no listing.
	defer r.hang.leaveBody()
	for len(b) <= maxBody {
		if len(b) == cap(b) {
			if len(b) >= bound {
				break
			}
			n := bodyCap(cap(b), bound)
			if !r.holdBody(n) {
				// The rest is dropped, as a 413's is.
				e := r.refuseBody(ctx, b)
				dropBody(ctx, readLimit(maxBody)-len(b))
				return e
			}
			b = growBody(b, n)
		}
		n, err := rs.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF && !bodyCut(ctx, len(b)) {
			break
		}
		if err == nil && !r.hang.body && len(b) != bound && !r.hang.joinBody(ctx.Conn(), r.s, ctx.ConnID()) {
			// The cut has run: the rest would be awaited past it.
			err = errBodyCut
		}
		if err != nil {
			// A client that stalled, a broken chunk, or a body cut short by the
			// client's close (fasthttp's stream reports that as the body's end):
			// where the next request would begin is unknown, and fasthttp closes
			// the connection. A stall inside a chunk comes wrapped in a broken
			// chunk; the connection knows it timed out.
			r.bodyBuf = b
			ctx.SetConnectionClose()
			if r.s.cut.Load() {
				// shutdown_grace ran out while the body arrived (cutWaits).
				closeLingering(ctx)
				return &errShuttingDown
			}
			if bareLF(ctx) {
				// A line of the chunked body's trailer ended in a bare LF: the
				// connection read nothing past it.
				closeLingering(ctx)
				return &errBareLF
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || readEnd(ctx) == deadline.ReadTimedOut {
				return &errReadTimeout
			}
			return &errUnreadable
		}
	}
	r.bodyBuf = b
	if len(b) > maxBody {
		dropBody(ctx, readLimit(maxBody)-len(b))
		return &errTooLarge
	}
	// Read to its end: leaveBody has nothing left to drop.
	_ = ctx.Request.CloseBodyStream()
	// The provider sends the upstream a copy of the body (its model rewritten, or
	// translated), held as long as the request: a body over 64 KiB counts it too.
	if len(b) > maxPooledBuffer && !r.holdBody(readHold(cap(b), len(b))) {
		return r.refuseBody(ctx, b)
	}
	r.body = b
	return nil
}

// errBodyCut ends the read of a body the shutdown's cut found still arriving.
var errBodyCut = errors.New("shutdown_grace ran out while the request's body arrived")

// bodyCut reports whether a request body whose stream ended after n bytes was cut
// short: fewer bytes than its Content-Length, or, chunked, its connection closed by
// the client (the stream ends there as at the last chunk; a whole body's last chunk
// is read before any end of the connection). Such a body was never whole: it is not
// sent upstream (RFC 9112 6.3, 7.1).
func bodyCut(ctx *fasthttp.RequestCtx, n int) bool {
	if cl := ctx.Request.Header.ContentLength(); cl >= 0 {
		return n < cl
	}
	return readEnd(ctx) == deadline.ReadEOF
}

// readEnd is how the reads of the client's connection ended (deadline.Conn's
// ReadEnd), 0 while they go on or where the connection cannot tell.
func readEnd(ctx *fasthttp.RequestCtx) int {
	if c, ok := connwrap.Under[interface{ ReadEnd() int }](ctx.Conn()); ok {
		return c.ReadEnd()
	}
	return 0
}

// growBody returns b with more room, twice its capacity (at least bodyChunk), but no
// more than bound (bodyChunk at least, since the buffer goes back to the pool).
func growBody(b []byte, n int) []byte {
	nb := make([]byte, len(b), n)
	copy(nb, b)
	return nb
}

// bodyCap is the capacity a body buffer of capacity c grows to: twice it, at least
// bodyChunk, rounded up to a power of two, at most bound (the body's Content-Length,
// or one byte over the limit). A buffer taken from the pool may have any capacity up
// to maxPooledBuffer; rounding makes what a body holds against max_buffered_bytes
// depend on the bytes that came alone, not on the buffer it started in.
func bodyCap(c, bound int) int {
	n := max(2*c, bodyChunk)
	n = 1 << bits.Len(uint(n-1))
	return min(n, max(bound, bodyChunk))
}

// holdBody counts a body buffer of capacity n against server.max_buffered_bytes in
// place of the one it replaces, and reports false, counting nothing, when that would
// take the bytes every request holds (bodies and answers, buffered) past it. Only
// buffers over maxPooledBuffer count: smaller ones are the request's own pooled
// buffers, bounded by the requests in flight, and their bodies touch no shared
// counter.
func (r *request) holdBody(n int) bool {
	if n <= maxPooledBuffer {
		return true
	}
	// A body alone is always taken (the bound is at least max_body_bytes, but a
	// chunked body's buffer may be one byte over that).
	d := int64(n - r.bodyHeld)
	if t := r.s.bodyBytes.Add(d) + r.s.answerBytes.Load(); t > r.rt.maxBuffered && t != int64(n+r.ansHeld) {
		r.s.bodyBytes.Add(-d)
		return false
	}
	r.bodyHeld = n
	return true
}

// readHold is what a body read whole into a buffer of capacity c holds against
// server.max_buffered_bytes: the buffer, and the copy of its length n the provider
// sends upstream.
func readHold(c, n int) int { return c + n }

// refuseBody refuses a body, b, that server.max_buffered_bytes has no room for, and
// gives back at once what it held, not once the rest of it has been dropped.
func (r *request) refuseBody(ctx *fasthttp.RequestCtx, b []byte) *apiError {
	r.dropBodyHold()
	r.bodyBuf = pooled(b)
	return r.overloaded(ctx)
}

// overloadWait is the wait a 503 overloaded asks for: the bodies and answers held
// are let go as their requests end, which nothing predicts, so a second, as a
// concurrency cap's 429 says.
const overloadWait = time.Second

// overloaded is 503 overloaded, its wait set on ctx's answer as a limit's 429 has it:
// retry-after, retry-after-ms and x-should-retry (true: the SDKs wait a second out).
func (r *request) overloaded(ctx *fasthttp.RequestCtx) *apiError {
	h := &ctx.Response.Header
	setShouldRetry(h, r.setWait(h, overloadWait))
	return &errOverloaded
}

// dropBodyHold gives back what holdBody counted for the request's body buffer, which
// the request no longer keeps.
func (r *request) dropBodyHold() {
	if r.bodyHeld > 0 {
		r.s.bodyBytes.Add(-int64(r.bodyHeld))
		r.bodyHeld = 0
	}
}

// leaveBody drops the body of a request answered without reading it (a wrong method,
// an unknown path, a missing key, a model listing), up to readLimit, so that the
// connection can carry the client's next request; fasthttp would drop at most 256 KiB
// and close the connection over the rest, and the reset that closing over unread bytes
// sends can discard the answer before the client reads it.
func (s *Server) leaveBody(ctx *fasthttp.RequestCtx) {
	if ctx.RequestBodyStream() == nil {
		// Read to its end (readBody, dropBody), or none.
		return
	}
	if ctx.Response.ConnectionClose() {
		closeLingering(ctx)
		return
	}
	budget := 0
	if rt := s.rt.Load(); rt != nil {
		budget = readLimit(rt.maxBody)
	}
	dropBody(ctx, budget)
}

// dropBuffers are the buffers dropBody reads into.
var dropBuffers = sync.Pool{New: func() any { return new([bodyChunk]byte) }}

// dropBody reads and drops what is left of the request's body, up to budget bytes, so
// that the connection can carry the client's next request: a client that writes its
// whole body before it reads the answer (Python's requests, many others) gets the
// answer, and a connection to use again. A body with more left, or that cannot be
// read, closes the connection, lingering (closeLingering). Dropping costs no memory
// but a buffer from a pool; read_timeout bounds its time.
func dropBody(ctx *fasthttp.RequestCtx, budget int) {
	rs := ctx.RequestBodyStream()
	if rs == nil {
		return
	}
	if ctx.Request.Header.ContentLength() > budget {
		closeLingering(ctx)
		return
	}
	buf := dropBuffers.Get().(*[bodyChunk]byte)
	defer dropBuffers.Put(buf)
	for read := 0; ; {
		n, err := rs.Read(buf[:])
		read += n
		switch {
		case err == io.EOF:
			_ = ctx.Request.CloseBodyStream()
			return
		case err != nil || read > budget:
			closeLingering(ctx)
			return
		}
	}
}

// closeLingering closes the connection after the answer without reading the rest of
// the body: lingering (deadline.Conn's Linger), it reads and drops what the client
// still sends, up to 64 MiB for up to 2 s, so that a client still sending reads the
// answer rather than a reset. The connection is under a *tls.Conn, or after a stream
// under its firstByteConn.
func closeLingering(ctx *fasthttp.RequestCtx) {
	ctx.SetConnectionClose()
	if lc, ok := connwrap.Under[interface{ Linger() }](ctx.Conn()); ok {
		lc.Linger()
	}
	_ = ctx.Request.CloseBodyStream()
}

// errHeaderName refuses a request with a header field whose name is not a token (RFC
// 9110 5.1 and 5.6.2), a space in it for one, as nginx does: the gateway could not
// forward such a line as it came (RFC 9110 2.2: a sender must not generate it), strict
// upstreams (h11, behind vLLM) refuse the whole request over it, and lenient ones may
// read the name otherwise than the gateway did.
var errHeaderName = apiError{400, "invalid_request_error", "bad_request", "",
	"A request header's name is not a valid HTTP field name (RFC 9110 5.1)."}

// tokenBytes marks the bytes of an HTTP token (RFC 9110 5.6.2 tchar).
var tokenBytes = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range []byte("!#$%&'*+-.^_`|~") {
		t[c] = true
	}
	return t
}()

// headerNamesValid reports whether every field name in the header block raw, as it
// came (RequestHeader.RawHeaders), is a token. A line that begins with a space or a
// tab continues the line before it (obs-fold, which fasthttp joins) and names nothing.
// A block fasthttp did not read (a request built by a test) is empty.
func headerNamesValid(raw []byte) bool {
	for len(raw) > 0 {
		i := 0
		for i < len(raw) && tokenBytes[raw[i]] {
			i++
		}
		if i == len(raw) {
			return false
		}
		switch c := raw[i]; {
		case c == ':' && i > 0:
		case i > 0:
			return false
		case c == '\r' || c == '\n':
			return true // the empty line that ends the block
		case c != ' ' && c != '\t':
			return false
		}
		end := bytes.IndexByte(raw[i:], '\n')
		if end < 0 {
			return true
		}
		raw = raw[i+end+1:]
	}
	return true
}

// errTransferCoding refuses a request whose Transfer-Encoding is not chunked: RFC 9112
// 6.3 (4), "the message body length cannot be determined reliably; the server MUST
// respond with the 400 (Bad Request) status code and then close the connection", as
// nginx does (with 501).
var errTransferCoding = apiError{400, "invalid_request_error", "bad_request", "",
	"A request's Transfer-Encoding must be chunked (RFC 9112 6.3): the length of its body cannot be told otherwise."}

// unframed reports whether the request came with a Transfer-Encoding other than
// chunked, which leaves where its body ends unknown. fasthttp refuses every coding
// but chunked and "identity" (no longer a registered coding), and drops the
// identity line from the header: it frames such a request by its Content-Length,
// closing the connection after it, or, with none, reads its body as empty and what
// the client sent as its body as the next request. Only a request fasthttp framed
// so can have the line, and only its raw header block is read for it: one with no
// body length (-2, or 0 once fasthttp read a POST's missing body as empty) or one
// whose connection closes; a chunked one (-1) and one with a Content-Length kept
// alive, the requests of the API, cost two comparisons.
func unframed(h *fasthttp.RequestHeader) bool {
	if cl := h.ContentLength(); cl == -1 || cl > 0 && !h.ConnectionClose() {
		return false
	}
	return transferCoded(h.RawHeaders())
}

// transferCoded reports whether the header block raw, as it came
// (RequestHeader.RawHeaders), has a Transfer-Encoding line whose value is not
// chunked alone (in any case, spaces around it allowed), or one folded onto the
// next line.
func transferCoded(raw []byte) bool {
	folded := false // the line before is a Transfer-Encoding line
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		line = bytes.TrimSuffix(line, strCR)
		if len(line) == 0 {
			return false // the empty line that ends the block
		}
		if line[0] == ' ' || line[0] == '\t' {
			if folded {
				return true
			}
			continue
		}
		name, value, _ := bytes.Cut(line, strColon)
		folded = bytes.EqualFold(name, hdrTransferEncoding)
		if folded && !bytes.EqualFold(bytes.Trim(value, " \t"), strChunked) {
			return true
		}
	}
	return false
}

var (
	hdrTransferEncoding = []byte(fasthttp.HeaderTransferEncoding)
	strChunked          = []byte("chunked")
	strCR               = []byte("\r")
	strColon            = []byte(":")
)

// fail answers the request with e and records it.
func (r *request) fail(ctx *fasthttp.RequestCtx, e *apiError) {
	r.errKind = e.code
	if r.anthropicAPI {
		writeAnthropicError(&ctx.Response, e, r.reqID)
	} else {
		writeError(&ctx.Response, e)
	}
	r.finish(ctx, e.status)
}

// hangUp ends a request whose client hung up while it waited, before any answer
// began: as client_gone (499) in the metrics, the span and the access log, and with
// no answer, since nobody reads it; the connection closes.
func (r *request) hangUp(ctx *fasthttp.RequestCtx) {
	r.errKind = errClientHungUp.code
	ctx.HijackSetNoResponse(true)
	hijack(ctx, closeConn)
	r.finish(ctx, errClientHungUp.status)
}

func closeConn(c net.Conn) { _ = c.Close() }

// cutOff answers a request the shutdown cut while it waited, when shutdown_grace ran
// out (cutWaits): nothing of an answer has gone to its client, so it gets 503
// shutting_down, which the SDKs retry on another replica, and the connection closes.
// The answer is written here rather than by fasthttp once the handler returns: the
// shutdown takes the request for done when its handler returns (handling), and the
// process may exit right after. It is recorded as any error answer is: its estimate
// refunded, its leases given back, its spans ended.
func (r *request) cutOff(ctx *fasthttp.RequestCtx) {
	r.errKind = errShuttingDown.code
	ctx.Response.Reset()
	r.setHeaders(ctx)
	r.setRequestIDHeader(&ctx.Response.Header)
	r.setCacheHeader(&ctx.Response.Header)
	if r.anthropicAPI {
		writeAnthropicError(&ctx.Response, &errShuttingDown, r.reqID)
	} else {
		writeError(&ctx.Response, &errShuttingDown)
	}
	ctx.Response.SetConnectionClose()
	if c := ctx.Conn(); c.SetWriteDeadline(time.Now().Add(cutWait)) == nil {
		_, _ = ctx.Response.WriteTo(c)
	}
	ctx.HijackSetNoResponse(true)
	hijack(ctx, closeConn)
	r.record(errShuttingDown.status)
	r.release()
}

// errCutAtShutdown is the error on the span of an upstream attempt whose answer was
// still awaited when the shutdown cut the wait (cutWaits).
var errCutAtShutdown = errors.New("shutdown_grace ran out while the upstream's answer was awaited")

// ended is the error of a request whose client watch (r.hang) ended its wait: its
// client hung up, or the shutdown cut the wait (cutWaits).
func (r *request) ended() *apiError {
	if r.s.cut.Load() {
		return &errShuttingDown
	}
	return &errClientHungUp
}

// clientWatch is the watch of a request's client connection for a hang-up
// (providers.ClientWatch). It costs nothing until the request has to wait: then the
// connection's socket joins the process's one epoll set (internal/hangup) until the
// wait ends, and the watch joins its server's list (Server.waits), for the shutdown
// to cut the wait as a hang-up would end it (cutWaits).
type clientWatch struct {
	conn net.Conn
	w    hangup.Watch
	// s is the server whose list the watch joins while it runs (the shard of its
	// connection's id); prev and next link it there, under that shard's lock.
	s          *Server
	id         uint64
	prev, next *clientWatch
	// cut is set while a watch started after the shutdown's cut runs: it watches
	// nothing, and its channel (cutNow) has fired already.
	cut bool
	// body is set, under its list's lock, while the watch is listed for the read
	// of the request's body (joinBody), which the cut ends by the connection's read
	// deadline.
	body bool
}

// cutNow is the channel of a watch started once the shutdown has cut the waits: closed,
// it has always fired.
var cutNow = func() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}()

// waitShards is the number of lists Server.waits keeps.
const waitShards = 16

// waitList is one shard of the client watches running, under mu; padded to its own
// cache line.
type waitList struct {
	mu   sync.Mutex
	head *clientWatch
	_    [48]byte
}

// shard is the list the watch joins: by its connection's ID, which spreads the
// connections served at once over the shards.
func (c *clientWatch) shard() *waitList {
	return &c.s.waits[c.id%waitShards]
}

// Watch implements providers.ClientWatch.
func (c *clientWatch) Watch() <-chan struct{} {
	ch := c.w.Start(c.conn)
	if c.s == nil {
		return ch
	}
	if !c.join(false) {
		c.w.Stop()
		c.cut = true
		return cutNow
	}
	return ch
}

// Unwatch implements providers.ClientWatch.
func (c *clientWatch) Unwatch() {
	if c.cut {
		c.cut = false
		return
	}
	if c.s != nil {
		c.leave()
	}
	c.w.Stop()
}

// join lists c in its server's list, for the shutdown's cut, and reports true;
// once the cut has run it lists nothing and reports false. body says what c waits
// for: the rest of the request's body (joinBody), or the upstream (Watch).
func (c *clientWatch) join(body bool) bool {
	l := c.shard()
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.s.cut.Load() {
		return false
	}
	c.body = body
	c.prev, c.next = nil, l.head
	if l.head != nil {
		l.head.prev = c
	}
	l.head = c
	return true
}

// leave takes c off its server's list.
func (c *clientWatch) leave() {
	l := c.shard()
	l.mu.Lock()
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		l.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	}
	c.prev, c.next, c.body = nil, nil, false
	l.mu.Unlock()
}

// joinBody lists the request's connection while the rest of its body is awaited
// (readBody), for the shutdown's cut to end the read: a client still uploading when
// shutdown_grace runs out is answered 503 shutting_down then, rather than holding the
// shutdown until the process exits under it. It reports false once the cut has run.
func (c *clientWatch) joinBody(conn net.Conn, s *Server, id uint64) bool {
	c.conn, c.s, c.id = conn, s, id
	return c.join(true)
}

// leaveBody takes the connection off the list once its body's read is over.
func (c *clientWatch) leaveBody() {
	if c.body {
		c.leave()
	}
}

// cutWaits ends the waits of the client watches running as their clients hanging up
// would: it shuts the read side of each one's connection, which the watch sees as the
// client's half-close (internal/hangup), while its write side stays open for the
// answer (cutOff). A watch started after this fires at once. A body still arriving
// (joinBody) has its read ended by its deadline instead. cut is set before.
func (s *Server) cutWaits() {
	for i := range s.waits {
		l := &s.waits[i]
		l.mu.Lock()
		for c := l.head; c != nil; c = c.next {
			if c.body {
				// A body's read ends as at read_timeout, the connection left whole:
				// the client, still sending, is answered and its close lingers.
				_ = c.conn.SetReadDeadline(cutReadAt)
				continue
			}
			if cr, ok := connwrap.Under[interface{ CloseRead() error }](c.conn); ok {
				_ = cr.CloseRead()
			}
		}
		l.mu.Unlock()
	}
}

// cutReadAt is the read deadline the cut gives a connection whose body is awaited:
// one long past, so that the read ends at once.
var cutReadAt = time.Unix(1, 0)

// ownRequest starts a request the gateway answers itself, outside the API pipeline (a
// model listing, an unknown path, a wrong method, a request it could not read), with
// the pipeline's bookkeeping: its request ID, client address and server span from its
// header's arrival (arrival) where the connection kept it, else now, and,
// once it is answered (fail, or finish with the status set), its metrics (endpoint
// "unknown"), span end and access log line. Its runtime is nil, and it has no span,
// once shutdown_grace has run out (bind).
func (s *Server) ownRequest(ctx *fasthttp.RequestCtx) *request {
	r := s.acquireRequest()
	// As its header arrived: fasthttp has reset it when the first bytes of the body
	// could not be read (serveParseError).
	r.arrive(ctx)
	route := ownRoute(ctx.Path())
	// The model listings answer Anthropic's SDKs, known by their anthropic-version,
	// in that API's shapes (models_anthropic.go), their errors included.
	r.anthropicAPI = route == routeMessages || route == routeCountTokens ||
		(route == routeModels || route == routeModel) && anthropicClient(&ctx.Request.Header)
	if s.bind(r) {
		r.startSpan(ctx, serverSpecs[ownMethod(ctx.Method())][route])
	}
	r.setClient(ctx)
	return r
}

// startSpan starts the request's server span at its arrival, continuing the client's
// trace.
func (r *request) startSpan(ctx *fasthttp.RequestCtx, spec *tracing.Spec) {
	if !r.rt.tr.Enabled() {
		// The gateway takes no part in the trace: the access log names the
		// client's, read from its traceparent alone (the tracestate, like the
		// traceparent, goes upstream as sent).
		r.clientTrace, r.clientTraced = tracing.ClientTraceID(&ctx.Request.Header)
		r.tctx = context.Background()
	} else {
		r.tctx = tracing.Extract(context.Background(), &ctx.Request.Header)
	}
	r.tctx, r.span = r.rt.tr.StartAt(r.tctx, spec, r.start)
	tracing.SetServerRequest(r.span, ctx.IsTLS(), ctx.Method(), ctx.Path(), ctx.URI().QueryString())
}

// Routes of the requests, as their server spans name them (http.route, the
// template); routeNone is a path the gateway has no route for, whose span the HTTP
// conventions name by its method alone. MLflow's /gateway/{name}/invocations is
// named as the route it is an alias of.
const (
	routeNone = iota
	routeModels
	routeModel
	routeChat
	routeCompletions
	routeEmbeddings
	routeResponses
	routeResponse
	routeRerank
	routeRerankV2
	routeRerankRoot
	routeScore
	routeScoreRoot
	routeMessages
	routeCountTokens
	routeTokenize
	routeDetokenize
	routeTranscriptions
	routeTranslations
	routeResponseCancel
	routeResponseItems
	routeInvocations
	routeMLflowList
	routeMLflowOne
	nRoutes
)

var ownRoutes = [nRoutes]string{
	routeModels:         "/v1/models",
	routeModel:          "/v1/models/{model}",
	routeChat:           "/v1/chat/completions",
	routeCompletions:    "/v1/completions",
	routeEmbeddings:     "/v1/embeddings",
	routeResponses:      "/v1/responses",
	routeResponse:       "/v1/responses/{response_id}",
	routeRerank:         "/v1/rerank",
	routeRerankV2:       "/v2/rerank",
	routeRerankRoot:     "/rerank",
	routeScore:          "/v1/score",
	routeScoreRoot:      "/score",
	routeMessages:       "/v1/messages",
	routeCountTokens:    "/v1/messages/count_tokens",
	routeTokenize:       "/tokenize",
	routeDetokenize:     "/detokenize",
	routeTranscriptions: "/v1/audio/transcriptions",
	routeTranslations:   "/v1/audio/translations",
	routeResponseCancel: "/v1/responses/{response_id}/cancel",
	routeResponseItems:  "/v1/responses/{response_id}/input_items",
	routeInvocations:    "/endpoints/{name}/invocations",
	routeMLflowList:     "/api/2.0/endpoints/",
	routeMLflowOne:      "/api/2.0/endpoints/{name}",
}

// otherMethod is the index in serverSpecs of any method the HTTP conventions do not
// know (_OTHER), after tracing.KnownMethods.
const otherMethod = len(tracing.KnownMethods)

// kindRoutes are the routes of the API calls, by kind.
var kindRoutes = [...]int{providers.Chat: routeChat, providers.Completions: routeCompletions, providers.Embeddings: routeEmbeddings,
	providers.Responses: routeResponses, providers.Rerank: routeRerank, providers.Score: routeScore, providers.Messages: routeMessages,
	providers.CountTokens: routeCountTokens, providers.Tokenize: routeTokenize, providers.Detokenize: routeDetokenize,
	providers.Transcription: routeTranscriptions, providers.Translation: routeTranslations}

// methodPost is POST's index in serverSpecs, the method of every API call.
var methodPost = ownMethod(strPost)

// serverSpecs are the server spans of every request, by method and route, built once
// so that starting one builds nothing.
var serverSpecs = func() (t [otherMethod + 1][nRoutes]*tracing.Spec) {
	for m, method := range append(tracing.KnownMethods[:], "") {
		for rt, route := range ownRoutes {
			t[m][rt] = tracing.ServerSpec(method, route)
		}
	}
	return t
}()

// ownMethod is the index of method in serverSpecs.
func ownMethod(method []byte) int {
	for i, m := range tracing.KnownMethods {
		if string(method) == m {
			return i
		}
	}
	return otherMethod
}

// ownRoute is the route of path, as serveAPI and serveOther match it.
func ownRoute(path []byte) int {
	switch string(path) {
	case "/v1/models":
		return routeModels
	case "/v1/chat/completions":
		return routeChat
	case "/v1/completions":
		return routeCompletions
	case "/v1/embeddings":
		return routeEmbeddings
	case "/v1/responses":
		return routeResponses
	case "/v1/rerank":
		return routeRerank
	case "/v2/rerank":
		return routeRerankV2
	case "/rerank":
		return routeRerankRoot
	case "/v1/score":
		return routeScore
	case "/score":
		return routeScoreRoot
	case "/v1/messages":
		return routeMessages
	case "/v1/messages/count_tokens":
		return routeCountTokens
	case "/tokenize":
		return routeTokenize
	case "/detokenize":
		return routeDetokenize
	case "/v1/audio/transcriptions":
		return routeTranscriptions
	case "/v1/audio/translations":
		return routeTranslations
	case "/api/2.0/endpoints", "/api/2.0/endpoints/":
		return routeMLflowList
	}
	if id, ok := bytes.CutPrefix(path, prefixModels); ok && len(id) > 0 {
		return routeModel
	}
	if bytes.HasPrefix(path, prefixResponses) {
		return responseRoute(path)
	}
	if bytes.HasPrefix(path, prefixAPIList) {
		return routeMLflowOne
	}
	if _, ok := invocationName(path); ok {
		return routeInvocations
	}
	return routeNone
}

// methodNotAllowed is the 405 answer, with the Allow header naming the methods the
// path takes.
func methodNotAllowed(ctx *fasthttp.RequestCtx, allow []byte) *apiError {
	ctx.Response.Header.SetBytesKV(hdrAllow, allow)
	return &errMethod
}

var (
	hdrAllow         = []byte("Allow")
	strPost          = []byte("POST")
	strGetHead       = []byte("GET, HEAD")
	strPutPostDelete = []byte("PUT, POST, DELETE")
)

// auth checks the client's key when keys are on, and notes it in r.key: also an
// expired key, refused, so that its refusal counts under its name.
func (r *request) auth(ctx *fasthttp.RequestCtx) *apiError {
	rt := r.rt
	if !rt.authKeys {
		return nil
	}
	_, as := rt.tr.Start(r.tctx, tracing.SpecAuth)
	var e *apiError
	// Expiry is judged at the request's arrival, a clock reading it has already.
	r.key, e = authenticate(rt, &ctx.Request.Header, r.s.keyClock(r.start))
	if e != nil {
		if r.key != nil {
			// An expired key: its challenge, set before the answer is written.
			r.key.expiry.challenge(&ctx.Response.Header, e)
		}
		tracing.RecordRefusal(as, e.code)
	}
	as.End()
	return e
}

// bind pins the request to the live runtime: while the gateway drains too, for a
// request that came on a connection open when the drain began (serveAPI closes it
// after the answer), but not once shutdown_grace has run out (cutOpen) or the
// gateway has stopped.
func (s *Server) bind(r *request) bool {
	if s.cut.Load() {
		return false
	}
	r.rt = s.hold()
	return r.rt != nil
}

// hold is the running runtime, acquired (to be released by its holder): one a reload
// retires between its load and its acquire is passed over for its successor. Nil
// when there is none (the gateway stopped) or reloads outran four tries.
func (s *Server) hold() *runtime {
	for range 4 {
		rt := s.rt.Load()
		if rt == nil {
			return nil
		}
		if rt.acquire() {
			return rt
		}
	}
	return nil
}

// run serves the call once its client is authenticated and its body read; invoked is
// set for an MLflow invocation (POST /endpoints/{name}/invocations).
func (r *request) run(ctx *fasthttp.RequestCtx, kind providers.Kind, invoked bool) *apiError {
	rt := r.rt
	body := r.body
	if kind.Form() {
		if e := r.scanAudio(ctx); e != nil {
			return e
		}
	} else {
		if e := scanBody(body, &r.f); e != nil {
			return e
		}
		raw := body[r.f.model[0]:r.f.model[1]]
		var ok bool
		if r.modelName, ok = jsonscan.AppendUnquote(r.modelName[:0], raw); !ok {
			return &errModelType
		}
	}
	ep := rt.endpoint(r.modelName)
	if ep == nil || (r.key != nil && !r.key.allowed[ep.idx]) {
		e := modelNotFound(r.modelName)
		return &e
	}
	r.ep = ep
	if ep.cache != nil {
		// Until the request is looked up in it (cacheDecide, serveCached).
		r.cacheRes = cacheBypass
	}
	if ep.scoreAttrs != nil && (kind == providers.Score && ep.kind == providers.Rerank || kind == providers.Translation && ep.kind == providers.Transcription) {
		ep.scoreAttrs.Annotate(r.span)
	} else {
		ep.attrs.Annotate(r.span)
	}
	ep.m.Begin()
	r.begun = true
	if ep.kind != kind.Endpoint() && !kind.AnyEndpoint() {
		e := wrongType(r.modelName, ep.kind)
		return &e
	}
	if kind.Anthropic() {
		r.f.messagesAPI(body)
	}
	if kind == providers.Responses {
		if e := r.untag(); e != nil {
			return e
		}
		body = r.body
		r.f.maxTokens, r.f.capNamed = r.f.maxOutput, r.f.outputNamed
	}
	r.forwardRequestID(&ctx.Request.Header)
	r.call = providers.Call{
		Kind:          kind,
		Body:          body,
		Model:         r.f.model,
		StreamOptions: r.f.streamOptions,
		CacheKey:      r.f.cacheKey,
		Stream:        r.f.stream && kind.Generates(),
		IncludeUsage:  r.f.includeUsage,
		MaxTokens:     r.f.maxTokens,
		Choices:       r.f.streamChoices(kind),
		Header:        &ctx.Request.Header,
		Client:        &r.hang,
		Tenants:       r,
		Hold:          r,
		// MLflow streams completions in its own chunk form.
		DeltaText: invoked,
	}
	r.hang.conn, r.hang.s, r.hang.id = ctx.Conn(), r.s, ctx.ConnID()
	if ep.timeout > 0 {
		r.call.Deadline = r.start.Add(ep.timeout)
	}
	if ep.cache != nil {
		r.cacheDecide(ctx)
	}
	return r.send(ctx)
}

// bearerToken is the token of an Authorization value "Bearer <token>" (the scheme in
// any case, the token trimmed), and whether the value is of that scheme. "Bearer"
// alone is the scheme with no token: `Authorization: Bearer $KEY` with KEY unset, the
// space after it trimmed by the header's parser.
func bearerToken(authz []byte) ([]byte, bool) {
	if bytes.EqualFold(authz, strBearer[:len(strBearer)-1]) {
		return nil, true
	}
	if len(authz) < len(strBearer) || !bytes.EqualFold(authz[:len(strBearer)], strBearer) {
		return nil, false
	}
	return bytes.TrimSpace(authz[len(strBearer):]), true
}

// authenticate finds the client key sent as a bearer token (or in api-key or
// x-api-key, as Azure and Anthropic clients send it). The header it is read from
// must come on one line: two lines are two keys, two identities, of which a proxy in
// front may read the one this would not (Authorization is no list, RFC 9110 5.3 and
// 11.6.2; nginx refuses a second line with 400). A key revoked (POST
// /admin/keys/{name}/revoke), or whose expires_at is not after now, is refused with
// the key itself, which the refusal is then counted and logged under (never the key,
// its name).
func authenticate(rt *runtime, h *fasthttp.RequestHeader, now time.Time) (*clientKey, *apiError) {
	presented, once := keyHeader(h, hdrAuthz)
	bearer := len(presented) > 0
	switch {
	case !once:
		return nil, &errKeyTwice
	case bearer:
		var ok bool
		if presented, ok = bearerToken(presented); !ok {
			return nil, &errNotBearer
		}
	default:
		if presented, once = keyHeader(h, hdrAPIKey); once && len(presented) == 0 {
			presented, once = keyHeader(h, hdrXAPIKey)
		}
		if !once {
			return nil, &errKeyTwice
		}
	}
	if len(presented) == 0 {
		return nil, &errNoKey
	}
	k := rt.lookupKey(presented)
	switch {
	case k != nil && k.revoked():
		// Revoked at run time (key_revoke.go): an atomic load, no lookup.
		return k, revokedRefusal(bearer)
	case k != nil && k.expiry.passed(now):
		return k, k.expiry.refusal(bearer)
	case k != nil:
		return k, nil
	case bearer:
		return nil, &errBadKey
	default:
		return nil, &errBadHeaderKey
	}
}

// keyHeader is the value of the header name, nil without one, and whether it came on
// one line at most. PeekAll reuses the header's slice: no allocation.
func keyHeader(h *fasthttp.RequestHeader, name []byte) ([]byte, bool) {
	switch v := h.PeekAll(b2s(name)); len(v) {
	case 0:
		return nil, true
	case 1:
		return v[0], true
	default:
		return nil, false
	}
}

// stickyKey is what keeps the caller on one variant: a header, the request's end user,
// or the API key's name.
func (r *request) stickyKey(ctx *fasthttp.RequestCtx) []byte {
	st := r.ep.sticky
	if st == nil {
		return nil
	}
	switch st.From {
	case router.StickyHeader:
		return ctx.Request.Header.Peek(st.Name)
	case router.StickyUser:
		return r.user()
	case router.StickyAPIKey:
		if r.key != nil {
			return s2b(r.key.name)
		}
	}
	return nil
}

// user is the request's end user, nil without one: its safety_identifier when that is
// a non-empty string, else its user (fields.endUser), as the string it encodes, so a
// user written with escapes ("jos\u00e9", as Python's json.dumps writes it) or without
// is one sticky key and one per: user bucket.
func (r *request) user() []byte {
	span := r.f.endUser()
	if span[0] < 0 {
		return nil
	}
	raw := r.body[span[0]:span[1]]
	if bytes.IndexByte(raw, '\\') < 0 {
		return raw
	}
	u, ok := jsonscan.AppendUnescape(r.userBuf[:0], raw)
	if !ok {
		return raw
	}
	r.userBuf = u
	return u
}

// Tenant is whose the request is under a backend queue's fairness, as its limits count
// it: the key's name (empty without auth), the end user, the endpoint, the client's
// address (its prefix, with limiter.ipv6_prefix) written out as queue.weights names
// it (10.0.0.1, 2001:db8:1:2::).
func (r *request) Tenant(f providers.Fair) []byte {
	switch f {
	case providers.FairAPIKey:
		if r.key != nil {
			return s2b(r.key.name)
		}
	case providers.FairUser:
		return r.user()
	case providers.FairEndpoint:
		return s2b(r.ep.name)
	case providers.FairIP:
		a, ok := netip.AddrFromSlice(subjectIP(r.client, r.rt.ipv6Bits, &r.ipSubj))
		if !ok {
			return nil
		}
		return a.Unmap().AppendTo(r.tenantIP[:0])
	}
	return nil
}

// send tries the planned route, then its retries, then the fallbacks, all before any
// byte of the answer has gone to the client; a context-window refusal turns it to the
// context fallbacks instead (toContextFallbacks).
func (r *request) send(ctx *fasthttp.RequestCtx) *apiError {
	ep := r.ep
	tr := r.rt.tr
	_, rs := tr.Start(r.tctx, tracing.SpecRoute)
	key := r.stickyKey(ctx)
	ep.routing.Plan(key, r.start, &r.plan)
	if r.pin.b != nil {
		r.pinPlan()
	}
	p := &r.plan
	// The routing span keeps the decision; r.variant is set by the attempt that
	// serves, since a request refused or served by a fallback has no variant.
	if rs.IsRecording() {
		tracing.SetRoute(rs, p.Targets[0].Name, p.Variant, int(p.Weight), xxhash.Sum64(key), p.Sticky)
	}
	rs.End()
	// The cache is looked up before the limits: a hit is a request to them (requests,
	// concurrency) but spends no tokens or dollars, so a spent budget does not refuse
	// it.
	if r.cacheLook || r.cacheFill {
		r.cacheRoute = p.Targets[0].Name
	}
	if r.cacheLook {
		r.cacheEntry, r.cacheAge = r.lookupCache()
	} else if r.cacheFill && r.ep.cache.remote != nil {
		r.remoteGen(r.ep.cache)
	}
	if e := r.takeLimits(ctx); e != nil {
		if r.cacheLook {
			// Refused: neither answered from the cache nor filling it; a lookup that
			// failed (a Redis store) stays counted as the error it was.
			r.cacheEntry, r.cacheFill = nil, false
			if r.cacheRes != cacheError {
				r.cacheRes = cacheBypass
			}
		}
		return e
	}
	if r.cacheEntry != nil {
		if r.ep.cache.still(r.cacheEntry, r.cacheGen) {
			r.serveCached(ctx)
			return nil
		}
		// Purged, retired by a reload or past its ttl while the limits were checked
		// (a slow Redis): asked of the upstream after all, its tokens and cost
		// charged when it settles.
		r.cacheEntry, r.cacheRes = nil, cacheMiss
	}
	total := 1 + p.Retries + len(p.Targets) - 1
	var last error
	for i := 0; i < total; i++ {
		if i > 0 {
			ok, gone := r.backoff(i, last)
			if gone {
				return r.ended()
			}
			if !ok && i <= p.Retries && total > p.Retries+1 {
				// The retry's wait would pass the deadline, or the retry would find
				// no target in service, but the first fallback needs none: go to it
				// at once, as after a Retry-After over the longest wait.
				i = p.Retries + 1
				ok, _ = r.backoff(i, last)
			}
			var ue *providers.UpstreamError
			if !ok {
				if errors.As(last, &ue) {
					// No time left for another attempt (the deadline is near or has
					// passed), or nothing left to make it on: the upstream's answer
					// stands.
					r.passUpstreamError(ctx, ue)
					return nil
				}
				break
			}
			if errors.As(last, &ue) {
				// The next backend may make no attempt (a fallback that cannot
				// take the call, no target in service, every one busy): the
				// upstream's answer must then still be there to pass on.
				r.keepAnswer(&ctx.Response)
			} else {
				// An older upstream answer no longer stands.
				r.dropKept()
			}
			ctx.Response.Reset()
			r.holdAnswerBody(nil)
		}
		if r.s.cut.Load() {
			// shutdown_grace ran out (cutOpen): nothing more goes upstream.
			return &errShuttingDown
		}
		ti := 0
		if i > p.Retries {
			ti = i - p.Retries
		}
		t := &p.Targets[ti]
		b := r.rt.backendList[t.Backend]
		prevBackend, prevVariant, prevBe, prevSeries, prevRoute := r.backend, r.variant, r.be, r.series, r.obsRoute
		prevTarget, prevHint := r.res.Target, r.hintHolds
		if !r.ctxPhase {
			r.hintHolds = ti == 0
		} else if ti > 0 {
			// A later context fallback, reached after the first failed: a repeat
			// goes to that one first.
			r.hintHolds = false
		}
		r.backend = b.Name
		// A fallback serves no route, so it has no variant: the canary's gates
		// count none of its attempts, and a variant's header, series, log line
		// and spans hold only what that route's own backend answered.
		r.variant = ""
		if t.Route >= 0 {
			r.variant = t.Variant
		}
		r.be, r.series = b, ep.seriesFor(p.Route, t.Backend)
		r.attempts++
		r.res = providers.Result{}
		actx, as := tr.Start(r.tctx, r.rt.upstreamSpecs[b][r.call.Kind])
		if tr.Enabled() {
			r.call.Traced = tracing.Inject(actx, &ctx.Request.Header)
			if as.IsRecording() {
				if r.variant != "" {
					as.SetAttributes(tracing.KeyVariant.String(r.variant))
				}
				// gen_ai.request.* say what the model was asked: the provider hands
				// over the body it sends, after drop_params, the backend's defaults
				// and its translation.
				if !r.call.Kind.Form() {
					// An audio call's body is a multipart form, its file binary:
					// neither read for request attributes nor captured.
					r.sentReq.Span = as
					r.call.Sent = &r.sentReq
					tr.CapturePrompt(as, r.call.Body)
				}
			}
		}
		err := b.Send(&r.call, &ctx.Response, &r.res)
		r.holdAnswerBody(&ctx.Response)
		r.queued += r.res.Queued
		r.call.Sent, r.sentReq.Span = nil, nil
		r.obsRoute = t.Route
		if refused := refusedLocally(err); refused || unavailable(err) || (errors.Is(err, providers.ErrUnsupported) && r.res.Sent.IsZero()) {
			// The backend answered without an upstream: it refused the call before
			// leasing a target (a parameter its API cannot express), has no such
			// operation (a Responses call to the Messages API), or had none to
			// lease (every target busy or out of service). No attempt reached an
			// upstream, so none is counted or traced (its span was started to
			// pass traceparent upstream). Another attempt on this
			// backend finds the same: go to the next backend of the plan at once.
			// An operation found missing by asking the upstream (a token count
			// through chat completions, whose server has no tokenizer) is an
			// attempt, counted below, and goes on the same way.
			tracing.Discard(as)
			r.attempts--
			i = max(i, p.Retries)
			if last == nil {
				// The first backend's own answer, until an upstream gives one.
				if errors.Is(err, providers.ErrNoHealthyTarget) {
					// Every replica of the route's backend is out of service:
					// its gates count the request's first attempt there as
					// failed (a canary whose upstream is down is rolled back,
					// not judged on the few trials that reach it); every one
					// busy is the gateway's own limit and counts for nothing.
					ep.routing.ObserveUnserved(t.Route, r.start)
				}
				r.servedByNoRoute(t)
				if refused {
					r.errKind = "invalid_request"
					r.setHeaders(ctx)
					return nil
				}
				last = err
				continue
			}
			// A fallback (or retry) that cannot take the call is skipped: the error
			// of the attempt before it stands (an upstream's answer and its
			// Retry-After, a timeout), as the gateway's own 400 would tell the
			// client not to retry a valid request, and its own 503 to retry at once.
			r.backend, r.variant, r.be, r.series, r.obsRoute = prevBackend, prevVariant, prevBe, prevSeries, prevRoute
			r.res.Target, r.hintHolds = prevTarget, prevHint
			ctx.Response.Reset()
			var ue *providers.UpstreamError
			if errors.As(last, &ue) {
				r.restoreAnswer(&ctx.Response)
				if i == total-1 {
					r.passUpstreamError(ctx, ue)
					return nil
				}
			}
			continue
		}
		if r.res.Target == "" && errors.Is(err, providers.ErrClientGone) {
			// Its client hung up (or the shutdown cut its wait) while the request
			// waited in the backend's queue for a target: as with every target
			// busy, nothing went upstream, so no attempt is counted, observed or
			// traced; the access log's attempts agree with
			// tollgate_upstream_attempts_total and the spans.
			tracing.Discard(as)
			r.attempts--
			return r.ended()
		}
		// The attempt reached an upstream: its outcome, not an earlier answer,
		// is the request's from here on.
		r.dropKept()
		// The shutdown cut the wait for the upstream's answer (cutWaits) and the
		// upstream request was aborted as for a client that hung up: the attempt's
		// outcome is the shutdown's, and the route gets no verdict, as a stream the
		// shutdown cuts before its first token gets none.
		cut := errors.Is(err, providers.ErrClientGone) && r.s.cut.Load()
		if err != nil || r.res.Stream == nil {
			now := time.Now()
			switch {
			case r.res.Judged:
				// The pool's own verdict: the gateway's refusals (a full queue, a
				// deadline spent waiting in it) are not the route's, and the
				// attempt is timed from when it went upstream, not from its wait
				// in the backend's queue: a canary is judged by what its upstream did.
				ep.routing.Observe(t.Route, r.start, now.Sub(r.res.Sent), 0, r.res.Failed)
			case errors.Is(err, providers.ErrClientLeftUpstream) && !r.res.Sent.IsZero() && !cut:
				// Its client gave up while the upstream worked on it: no verdict,
				// but the upstream took at least this long, which the latency gate
				// must see (clients that give up on slow answers would hide them).
				ep.routing.Observe(t.Route, r.start, now.Sub(r.res.Sent), 0, false)
			}
			if err == nil {
				// The answer is complete: what is left is bookkeeping, so its
				// latency ends here and record need not read the clock again.
				r.answered = now
			}
		}
		r.countAttempt(ctx, as, b, err, cut)
		if err == nil {
			// An attempt that answered: a failed one before it is not the
			// request's error.
			r.errKind = ""
			r.usage = r.res.Usage
			r.stream = r.res.Stream
			// A Messages API stream's usage is its own, never asked for on the
			// client's behalf; so is an audio stream's.
			r.hideUse = r.call.Stream && !r.call.IncludeUsage && !r.call.Kind.Anthropic() && !r.call.Kind.Form()
			if r.call.Kind == providers.Responses {
				r.tag = r.tagOf()
			}
			r.setHeaders(ctx)
			if r.stream != nil {
				r.aspan, r.sent = as, r.res.Sent
				r.startAnswer(as)
			} else {
				r.answeredUsage()
				if r.usageKnown() {
					r.setUsage(as)
				}
				if as.IsRecording() {
					r.startAnswer(as)
					r.ans.Body(ctx.Response.Body())
					r.ans.End(as)
					r.setServed(as)
				}
				if r.call.Kind == providers.Responses {
					// After the span read the answer: it names the upstream's ID,
					// as the upstream's own logs do.
					r.tagBody(&ctx.Response)
				}
				as.End()
			}
			return nil
		}
		as.End()
		last = err
		if cut {
			// Nothing was sent to the client: it is answered 503 (cutOff), and
			// its estimate refunded, the upstream's work on it ended.
			return &errShuttingDown
		}
		if errors.Is(err, providers.ErrClientGone) {
			// Its client hung up while the request was queued (nothing went
			// upstream) or while the upstream worked on it (the provider aborted
			// it): nobody waits for a retry or a fallback.
			r.abandoned = errors.Is(err, providers.ErrClientLeftUpstream)
			return &errClientHungUp
		}
		var ue *providers.UpstreamError
		if errors.As(err, &ue) {
			r.errKind = "upstream_" + strconv.Itoa(ue.Status)
			if len(p.ContextTargets) > 0 && r.contextWindowExceeded(ctx) {
				// Too long for this backend's context window: on to the context
				// fallbacks not tried yet, the first with the endpoint's retries,
				// as a route has them, the others one attempt each.
				from := r.ctxPhase
				if !r.toContextFallbacks(ctx, ti) {
					r.passUpstreamError(ctx, ue)
					return nil
				}
				if from {
					// The next context fallback, as the next fallback is reached.
					i = p.Retries + ti
				} else {
					i, total = -1, p.Retries+len(p.Targets)
				}
				continue
			}
			if ue.RetryAfter > maxRetryAfterWait || ue.Retry == providers.RetryNo {
				// The backend asks for a longer pause than the gateway waits, or
				// says the same request would fail again (x-should-retry: false):
				// skip its retries and go to the next backend of the plan, if any.
				i = max(i, p.Retries)
			}
			if !ue.Retryable() && ue.Retry != providers.RetryYes || i == total-1 {
				// A 4xx but 429 is the request's own fault, which another attempt
				// or backend would repeat, unless its upstream says that a retry
				// may succeed (x-should-retry: true, which the SDKs retry whatever
				// the status): then it is retried and falls back as a 5xx is.
				r.passUpstreamError(ctx, ue)
				return nil
			}
			continue
		}
		if errors.Is(err, providers.ErrAnswerNoRoom) {
			// The gateway's own bound: another attempt would have an upstream
			// generate the answer again, to find no more room.
			r.setHeaders(ctx)
			return r.refuseAnswer(ctx)
		}
		if errors.Is(err, providers.ErrUnsupported) {
			// The upstream turned out to lack the operation (a token count on a
			// server without a tokenizer): a retry finds the same, a fallback of
			// another backend may have it, as when the backend knows it lacks it.
			i = max(i, p.Retries)
			continue
		}
		if errors.Is(err, providers.ErrBadResponse) {
			break
		}
	}
	r.setHeaders(ctx)
	if !errors.Is(last, providers.ErrUnsupported) {
		// An operation the backend's API lacks was asked of no upstream: the
		// gateway's own 400, which the access log names, not an upstream's failure.
		r.warnUpstreamFailed(ep.name, r.attempts, last)
	}
	return upstreamFailure(last)
}

// upstreamFailure is the answer to a call whose last attempt failed with last, no
// upstream answer to pass on.
func upstreamFailure(last error) *apiError {
	switch {
	case errors.Is(last, providers.ErrOverloaded):
		return &errUpstreamBusy
	case errors.Is(last, providers.ErrNoHealthyTarget):
		return &errNoTarget
	case errors.Is(last, providers.ErrTimeout):
		return &errUpstreamSlow
	case errors.Is(last, providers.ErrAnswerTooLarge):
		return &errUpstreamTooLarge
	case errors.Is(last, providers.ErrHeaderTooLarge):
		return &errUpstreamHeaderTooLarge
	case errors.Is(last, providers.ErrBadResponse):
		var detail upstreamDetail
		if errors.As(last, &detail) {
			// A JSON error object where a stream's first events belong (read
			// within the attempt, as an Anthropic stream's are): its message tells
			// the client what went wrong, as once the stream has begun.
			e := errUpstreamBad
			e.message = notEventsMessage(detail)
			return &e
		}
		return &errUpstreamBad
	case errors.Is(last, providers.ErrStreamCut) && !errors.Is(last, providers.ErrConnect):
		// The upstream answered, then ended its stream before a byte of it could
		// reach the client (an empty stream): a bad answer, not an unreachable one.
		return &errUpstreamBad
	case errors.Is(last, providers.ErrUnsupported):
		var ue *providers.UnsupportedError
		if errors.As(last, &ue) {
			e := errUnsupportedOp
			e.message = ue.Error()
			if ue.Param != "" {
				e.param = ue.Param
			}
			return &e
		}
		return &errUnsupportedOp
	}
	return &errUpstreamDown
}

// traceID is the request's trace ID in hex, for the access log; it views r.traceBuf.
func (r *request) traceID() string {
	if r.clientTraced {
		return b2s(hex.AppendEncode(r.traceBuf[:0], r.clientTrace[:]))
	}
	if r.tctx == nil {
		return ""
	}
	return b2s(tracing.AppendTraceID(r.tctx, r.traceBuf[:0]))
}

var (
	hdrLimitReq     = []byte("X-Ratelimit-Limit-Requests")
	hdrRemainingReq = []byte("X-Ratelimit-Remaining-Requests")
	hdrResetReq     = []byte("X-Ratelimit-Reset-Requests")
	hdrLimitTok     = []byte("X-Ratelimit-Limit-Tokens")
	hdrRemainingTok = []byte("X-Ratelimit-Remaining-Tokens")
	hdrResetTok     = []byte("X-Ratelimit-Reset-Tokens")
	hdrLimitUSD     = []byte("X-Ratelimit-Limit-Usd")
	hdrRemainingUSD = []byte("X-Ratelimit-Remaining-Usd")
	hdrResetUSD     = []byte("X-Ratelimit-Reset-Usd")
)

var errLimiterDown = apiError{503, "server_error", "ratelimit_unavailable", "", "The rate limit store is unavailable; retry shortly."}

// upstreamDetail is an upstream failure that says what went wrong in the upstream's
// own words (masked): an error event's message, a bare JSON error object's.
type upstreamDetail interface{ UpstreamDetail() string }

// countAttempt counts an attempt on b that ended with err (cut: by the shutdown's
// cut) in tollgate_upstream_attempts_total, a stream's when it ends, by how it ended,
// and records it on its span as.
func (r *request) countAttempt(ctx *fasthttp.RequestCtx, as trace.Span, b *providers.Backend, err error, cut bool) {
	outcome := outcomeOf(err, ctx.Response.StatusCode())
	if cut {
		outcome = metrics.OutcomeShutdown
	} else if err != nil && r.res.Status > 0 && errors.Is(err, providers.ErrUnsupported) {
		// The upstream answered (a 404 for a tokenizer it lacks): the attempt's
		// outcome is its answer's, not an upstream failure.
		outcome = metrics.OutcomeForStatus(r.res.Status)
	}
	if a := r.rt.attempt(b, r.res.Target); err == nil && r.res.Stream != nil {
		// A stream's attempt is counted when it ends, by how it ended.
		r.streamAttempt = a
	} else if a != nil {
		a.Observe(outcome)
	}
	if !as.IsRecording() {
		return
	}
	r.rt.tr.SetTarget(as, r.res.Target)
	tracing.SetAttempt(as, r.attempts, outcome.String())
	// Only an answer has a status: fasthttp reports 200 for a response that never
	// came (a timeout, a refused connection).
	if ue, ok := errors.AsType[*providers.UpstreamError](err); err == nil {
		tracing.SetClientStatus(as, ctx.Response.StatusCode())
	} else if ok && ue.Status > 0 {
		tracing.SetClientStatus(as, ue.Status)
	} else if r.res.Status > 0 {
		// An answer that was no use (a redirect, an HTML page, a body cut short)
		// still came.
		tracing.SetClientStatus(as, r.res.Status)
	}
	switch {
	case cut:
		tracing.RecordError(as, errCutAtShutdown, errShuttingDown.code)
	case errors.Is(err, providers.ErrClientGone):
		tracing.RecordRefusal(as, errClientHungUp.code)
	case err != nil:
		tracing.RecordError(as, err, outcome.String())
	}
}

// startAnswer arms r.ans to read the answer to the attempt whose span is as.
func (r *request) startAnswer(as trace.Span) {
	switch r.call.Kind {
	case providers.Responses:
		r.ans.StartResponses(r.rt.tr, as)
	case providers.Messages, providers.CountTokens:
		r.ans.StartMessages(r.rt.tr, as)
	default:
		r.ans.Start(r.rt.tr, as)
	}
}

// notEventsMessage is the client's message for a stream answered with a JSON error
// object where its events belong.
func notEventsMessage(d upstreamDetail) string {
	return "The upstream model server sent an error instead of stream events (" + d.UpstreamDetail() + ")."
}

// thinkingRoom is the most any planned target's backend (context fallbacks included)
// adds to max_tokens for the thinking a chat request without max_tokens asks for
// (Anthropic's budget or effort; a Responses API call's reasoning.effort through the
// bridge): the estimate counts it, as whichever target serves may produce it.
func (r *request) thinkingRoom() int64 {
	if r.call.Kind != providers.Chat && r.call.Kind != providers.Responses {
		return 0
	}
	var room int64
	for _, ts := range [2][]router.Target{r.plan.Targets, r.plan.ContextTargets} {
		for i := range ts {
			room = max(room, r.rt.backendList[ts[i].Backend].ThinkingRoomFor(r.call.Kind, r.body))
		}
	}
	return room
}

// capDropped reports whether a planned target's backend (context fallbacks included)
// drops (drop_params) every max_tokens the chat or completions request names.
func (r *request) capDropped() bool {
	for _, ts := range [2][]router.Target{r.plan.Targets, r.plan.ContextTargets} {
		for i := range ts {
			if r.rt.backendList[ts[i].Backend].Uncapped(r.call.Kind, r.body) {
				return true
			}
		}
	}
	return false
}

// rerankPairTokens are the tokens a rerank's or score's estimate adds for each pair:
// a cross-encoder's [CLS] and two [SEP], a score template's few more.
const rerankPairTokens = 4

// costEstimate is the most a request of in prompt tokens and out generated ones may
// cost, in nano-dollars rounded up, at the highest prices among the backends its plan
// may reach (the route chosen, the fallbacks and the context fallbacks) and their
// service tiers, so that a fallback to a dearer backend, or an answer in a dearer
// tier, is covered: the prompt at the input price, or at the dearest cache-write price
// when the body marks anything for Anthropic's prompt cache (the whole prompt may be
// written); the output at the output price; and the searches the request bounds its
// web search to (providers.WebSearchBound) at the search price of the backends that
// send it on (not those whose drop_params remove it). Cached-input prices,
// below the input price, are left out: the settlement charges the actual cost.
func (r *request) costEstimate(in, out int64) int64 {
	var d spendPrices
	for _, ts := range [2][]router.Target{r.plan.Targets, r.plan.ContextTargets} {
		for i := range ts {
			b := &r.rt.spend[ts[i].Backend]
			d = spendPrices{input: max(d.input, b.input), output: max(d.output, b.output), write: max(d.write, b.write),
				search: max(d.search, b.searchFor(r.call.Kind)), audio: max(d.audio, b.audio)}
		}
	}
	prompt := d.input
	if d.write > prompt && providers.MarksPromptCache(r.body) {
		// Anthropic writes only what a request marks: an unmarked prompt is never
		// charged the write price, and the body is read only where one is dearer.
		prompt = d.write
	}
	// In nano-dollars: a price per million tokens is a thousandth of the nano-dollars
	// a token, a price per thousand searches a millionth of a search's.
	nano := (float64(in)*prompt + float64(out)*d.output) * (limiter.NanoPerUSD / 1e6)
	if d.search > 0 {
		nano += float64(providers.WebSearchBound(r.call.Kind, r.body)) * d.search * (limiter.NanoPerUSD / 1e3)
	}
	if r.call.Kind.Form() && d.audio > 0 {
		// The audio's length is known only from the answer: its file at 16,000
		// bytes a second (a 128 kbit/s MP3; a WAV is over, a low-rate Opus
		// under), settled at the answer's cost, and never less than a
		// nano-dollar, so that a budget already spent refuses.
		nano += float64(r.f.audioBytes) / audioBytesPerSecond / 60 * d.audio * limiter.NanoPerUSD
		nano = max(nano, 1)
	}
	return limiter.NanoUp(nano)
}

// audioBytesPerSecond is the rate an audio file's length is estimated at.
const audioBytesPerSecond = 16000

// promptEstimate is the prompt's part of the request's token estimate: text at about 4
// bytes a token; images, audio and video at their own rates (promptMedia); a rerank's
// or score's pairs each a few tokens more (the separators a cross-encoder puts between
// query and document). Admission charges it, and a stream cut before its usage came
// is settled with it when the upstream gave no prompt count (streamedUsage).
func (r *request) promptEstimate() int64 {
	text, media := r.f.input(r.call.Kind)
	return text/4 + media + 1 + rerankPairTokens*r.f.pairs(r.call.Kind)
}

// takeLimits charges the request to its limits before any upstream is called: one
// request, and an estimate of its tokens (prompt size plus max_tokens per completion)
// and, for a spend budget (usd), of their cost, that Settle trues up with the real
// usage and cost.
func (r *request) takeLimits(ctx *fasthttp.RequestCtx) *apiError {
	ep := r.ep
	pol := ep.policyFor(r.key)
	if pol == nil || pol.Len() == 0 {
		return nil
	}
	_, ls := r.rt.tr.Start(r.tctx, tracing.SpecLimit)
	r.subj = limiter.Subject{Endpoint: s2b(ep.name), IP: subjectIP(r.client, r.rt.ipv6Bits, &r.ipSubj)}
	if r.key != nil {
		r.subj.APIKey = s2b(r.key.name)
	}
	r.subj.User = r.user()
	// max_tokens bounds each completion; an embeddings call, a rerank or a score
	// generates none, so only its input is charged.
	var est int64
	if c := r.f.completions(r.call.Kind); c > 0 {
		est = r.f.maxTokens
		if !r.f.capNamed || r.capDropped() {
			// No cap reaches some target: the endpoint's default stands in for it, as
			// for a request naming none (a cap above it still counts). A cap of 0 is
			// one: nothing is generated (a chat upstream refuses it, and the refusal
			// is refunded).
			est = max(est, ep.defaultMaxTokens+r.thinkingRoom())
		}
		est *= c
	}
	in := r.promptEstimate()
	amounts := limiter.Amounts{Tokens: est + in}
	if r.cacheEntry != nil || r.call.Kind.Tokenizer() {
		// Answered from the cache, or a token count or conversion, which no model
		// reads: no tokens, no cost.
		amounts.Tokens = 0
	} else if pol.CountsUSD() {
		amounts.NanoUSD = r.costEstimate(in, est)
	}
	err := r.rt.lim.TakeAmounts(context.Background(), pol, &r.subj, amounts, &r.ticket)
	if err == nil {
		r.limited = true
		r.estTokens = amounts.Tokens
		if ls.IsRecording() {
			tracing.SetLimit(ls, r.rt.limitStore, "allowed", "")
		}
		ls.End()
		return nil
	}
	// On the request, not the stack: errors.As takes its address, which would move it
	// to the heap for every refusal.
	if errors.As(err, &r.refused) {
		refused := r.refused
		// The limit's name in the request's buffer: the map looks it up without a
		// string of its own, and only a recorded span keeps one.
		r.limitName = appendLimitName(r.limitName[:0], &refused.Limit)
		name := r.limitName
		if c := ep.rejections[string(name)]; c != nil {
			c.Inc()
		}
		if ls.IsRecording() {
			tracing.SetLimit(ls, r.rt.limitStore, "refused", string(name))
		}
		ls.End()
		r.errKind = "rate_limited"
		h := &ctx.Response.Header
		// Retried by the SDKs when its room comes back within the wait they all
		// take as told (a requests-per-second limit, to the millisecond); not when
		// it comes back later (a spent day budget), where their retries would be
		// refused again or hold the caller for hours.
		setShouldRetry(h, r.setWait(h, refused.RetryAfter))
		r.setLimitHeaders(ctx)
		// The message in the request's own buffer, the error on the request: a client
		// hammering past its limit costs no garbage per refusal.
		m := append(r.errMsg[:0], "Rate limit reached for "...)
		m = append(append(append(m, ep.name...), " on "...), name...)
		if l := &refused.Limit; l.USD > 0 {
			// A spend budget says how much, in dollars, as OpenAI's own spend limits do.
			m = limiter.AppendDollars(append(m, " (a budget of $"...), l.USD)
			m = append(append(append(m, " per "...), l.Window...), ')')
		}
		m = limiter.AppendRetryAfter(append(m, ". Please try again in "...), refused.RetryAfter)
		r.errMsg = append(m, "s."...)
		r.limitErr = apiError{429, "rate_limit_exceeded", "rate_limit_exceeded", "", b2s(r.errMsg)}
		return &r.limitErr
	}
	tracing.SetLimit(ls, r.rt.limitStore, "unavailable", "")
	ls.End()
	r.errKind = "ratelimit_unavailable"
	return &errLimiterDown
}

// setLimitHeaders writes OpenAI's x-ratelimit-* headers from the request's tightest
// buckets.
func (r *request) setLimitHeaders(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	if q := r.ticket.Requests; q.Limit > 0 {
		h.SetCanonical(hdrLimitReq, appendInt(r.out[:0], q.Limit))
		h.SetCanonical(hdrRemainingReq, appendInt(r.out[:0], q.Remaining))
		h.SetCanonical(hdrResetReq, limiter.AppendReset(r.out[:0], q.Reset))
	}
	if q := r.ticket.Tokens; q.Limit > 0 {
		h.SetCanonical(hdrLimitTok, appendInt(r.out[:0], q.Limit))
		h.SetCanonical(hdrRemainingTok, appendInt(r.out[:0], q.Remaining))
		h.SetCanonical(hdrResetTok, limiter.AppendReset(r.out[:0], q.Reset))
	}
	if q := r.ticket.USD; q.Limit > 0 {
		// In dollars, as the limit is written; the buckets count nano-dollars.
		h.SetCanonical(hdrLimitUSD, limiter.AppendUSD(r.out[:0], q.Limit))
		h.SetCanonical(hdrRemainingUSD, limiter.AppendUSD(r.out[:0], q.Remaining))
		h.SetCanonical(hdrResetUSD, limiter.AppendReset(r.out[:0], q.Reset))
	}
}

// servedByNoRoute labels a request that t's backend answered without an upstream (a
// refusal, no target in service, every one busy) as served by no route: no variant in
// its header, series, access log line or server span (the route's gates count only
// its having no target in service, as a failure); x-tollgate-backend still names the
// backend that answered.
func (r *request) servedByNoRoute(t *router.Target) {
	r.variant = ""
	r.series = r.ep.refusedBy(t.Backend)
}

// unavailable reports whether the backend had no target to send the call to: none in
// service, or every one at max_concurrency (its queue full or the wait over) or with
// every connection max_connections allows busy.
func unavailable(err error) bool {
	return errors.Is(err, providers.ErrNoHealthyTarget) || errors.Is(err, providers.ErrOverloaded)
}

// refusedLocally reports whether the backend refused the request before leasing a
// target (its API cannot express it); its answer is already written.
func refusedLocally(err error) bool {
	if err == nil {
		return false
	}
	_, ok := errors.AsType[*providers.RequestError](err)
	return ok
}

// passUpstreamError answers with the upstream's own error response, already in
// ctx.Response, with its wait (Retry-After in whole seconds and retry-after-ms) and
// its x-should-retry where that speaks for the request (hintHolds): a fallback's says
// nothing of the plan's first backend, which the client's retry reaches first and
// whose failure may have passed by then. The answer says x-should-retry: false,
// whatever the upstream said, when the SDKs would retry it but not all wait it out as
// told (setWait), as a limit's 429 does.
func (r *request) passUpstreamError(ctx *fasthttp.RequestCtx, ue *providers.UpstreamError) {
	if r.anthropicAPI {
		// In the Messages API's shape, as its client's SDK reads it: here, after
		// the context fallbacks read the upstream's own (its code, its words).
		providers.AnthropicErrorShape(&ctx.Response, r.reqID)
	}
	r.setHeaders(ctx)
	h := &ctx.Response.Header
	hint := providers.RetryUnsaid
	if r.hintHolds {
		hint = ue.Retry
	}
	retried := hint == providers.RetryYes || hint == providers.RetryUnsaid && sdkRetries(ctx.Response.StatusCode())
	if ue.RetryAfter > 0 && !r.setWait(h, ue.RetryAfter) && retried {
		hint = providers.RetryNo
	}
	switch hint {
	case providers.RetryYes:
		setShouldRetry(h, true)
	case providers.RetryNo:
		setShouldRetry(h, false)
	}
}

// maxRetryAfterWait is the longest upstream Retry-After the gateway waits out before
// retrying the same backend; a longer one goes to the fallbacks or back to the client.
const maxRetryAfterWait = 5 * time.Second

// backoff waits before attempt i: a jittered exponential pause, or the upstream's
// Retry-After when longer, before a retry on the same backend; none before a fallback to
// another backend. ok is false, with no wait, when waiting would pass the deadline or
// the retry would find no target to lease when the wait ends (the failure before it
// ejected the last in service); gone is set when the client hung up during the wait,
// which then ends at once.
func (r *request) backoff(i int, last error) (ok, gone bool) {
	if i > r.plan.Retries {
		// A fallback gets no pause, but no attempt either once the deadline has
		// passed: it could only time out at once, and be counted against a
		// backend that never saw the request.
		return r.call.Deadline.IsZero() || time.Now().Before(r.call.Deadline), false
	}
	d := time.Duration(25<<min(i-1, 5)) * time.Millisecond
	d = d/2 + rand.N(d/2+1)
	var ue *providers.UpstreamError
	if errors.As(last, &ue) && ue.RetryAfter > d {
		d = ue.RetryAfter
	}
	if !r.call.Deadline.IsZero() && time.Now().Add(d).After(r.call.Deadline) {
		return false, false
	}
	if !r.rt.backendList[r.plan.Targets[0].Backend].RetryLeases(d) {
		return false, false
	}
	return true, r.pause(d)
}

// pause waits d, or until the client hangs up, which it reports: a Retry-After may
// hold the request for seconds, and a retry for a client that left is work for
// nobody. Retries are rare, so the timer is not worth pooling.
func (r *request) pause(d time.Duration) (gone bool) {
	left := r.hang.Watch()
	// Unwatched whether or not the connection could be watched: the watch joined
	// the server's list either way (cutWaits).
	defer r.hang.Unwatch()
	if left == nil {
		time.Sleep(d)
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return false
	case <-left:
		return true
	}
}

// outcomeOf classifies an attempt for tollgate_upstream_attempts_total.
func outcomeOf(err error, status int) metrics.Outcome {
	if err == nil {
		return metrics.OutcomeForStatus(status)
	}
	var ue *providers.UpstreamError
	switch {
	case errors.As(err, &ue):
		return metrics.OutcomeForStatus(ue.Status)
	case errors.Is(err, providers.ErrTimeout):
		return metrics.OutcomeTimeout
	case errors.Is(err, providers.ErrConnect):
		return metrics.OutcomeRefused
	case errors.Is(err, providers.ErrClientGone):
		return metrics.OutcomeCanceled
	}
	return metrics.OutcomeError
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func (r *request) setHeaders(ctx *fasthttp.RequestCtx) {
	// The names are canonical already; SetCanonical skips normalising them again
	// and copies the value.
	h := &ctx.Response.Header
	h.SetCanonical(hdrRequestID, r.reqID)
	if r.limited {
		r.setLimitHeaders(ctx)
	}
	if r.backend != "" {
		h.SetCanonical(hdrBackend, s2b(r.backend))
	}
	if r.variant != "" {
		h.SetCanonical(hdrVariant, s2b(r.variant))
	}
}

// arrive starts the request as its header arrived on the API listener (arrival): its
// start, and its ID, a sane client-sent x-request-id or a random one. Elsewhere (an
// in-process connection) it starts now, from the header.
func (r *request) arrive(ctx *fasthttp.RequestCtx) {
	if a := arrivalOf(ctx.Conn()); a != nil {
		r.start = a.at
		r.reqID = a.appendID(r.reqID[:0])
		return
	}
	r.start = time.Now()
	r.reqID = appendRequestID(r.reqID[:0], &ctx.Request.Header)
}

// forwardRequestID makes the request ID the upstreams get the one the client is
// answered with and the access log names, so that a line can be found in an
// upstream's logs (vLLM's --enable-request-id-headers takes it as its own): a client's
// ID the gateway refused, or none, is replaced. A sane ID, sent once, stays as it is.
func (r *request) forwardRequestID(h *fasthttp.RequestHeader) {
	if ids := h.PeekAll(b2s(hdrRequestID)); len(ids) == 1 && bytes.Equal(ids[0], r.reqID) {
		return
	}
	h.DelBytes(hdrRequestID)
	h.SetCanonical(hdrRequestID, r.reqID)
}

// setClient notes the client's address: the peer, or behind the runtime's trusted
// proxies the one X-Forwarded-For (or Forwarded: server.forwarded_header) names, as
// headerReceived worked it out when the header arrived (arrival) on the API listener.
// A request refused unbound (503 shutting_down once shutdown_grace has run out) reads
// the live runtime's list, which stays installed until the gateway stops: it is logged
// with its client, not its load balancer.
func (r *request) setClient(ctx *fasthttp.RequestCtx) {
	if a := arrivalOf(ctx.Conn()); a != nil {
		r.client = r.ipBuf[:copy(r.ipBuf[:], a.client())]
		return
	}
	rt := r.rt
	if rt == nil {
		rt = r.s.rt.Load()
	}
	ip := requestClient(ctx, rt, &r.ipBuf)
	r.client = r.ipBuf[:copy(r.ipBuf[:], ip)]
}

// clientText is the client's address as text for the access log; it views r.ipText.
func (r *request) clientText() string {
	a, ok := netip.AddrFromSlice(r.client)
	if !ok {
		return ""
	}
	return b2s(a.AppendTo(r.ipText[:0]))
}

// appendRequestID appends a sane client-sent x-request-id, or a random one, to dst.
func appendRequestID(dst []byte, h *fasthttp.RequestHeader) []byte {
	if id := h.PeekBytes(hdrRequestID); saneRequestID(id) {
		return append(dst, id...)
	}
	return appendNewRequestID(dst)
}

// maxRequestID is the longest client-sent request ID the gateway keeps.
const maxRequestID = 128

// saneRequestID reports whether a client-sent request ID is one the gateway keeps: 1
// to maxRequestID visible ASCII characters.
func saneRequestID(id []byte) bool {
	return len(id) > 0 && len(id) <= maxRequestID && printable(id)
}

// appendNewRequestID appends a random request ID to dst.
func appendNewRequestID(dst []byte) []byte {
	const hex = "0123456789abcdef"
	for _, v := range [2]uint64{rand.Uint64(), rand.Uint64()} {
		for j := 0; j < 16; j++ {
			dst = append(dst, hex[v>>60])
			v <<= 4
		}
	}
	return dst
}

// ownAnswer gives an answer the gateway makes without a request pipeline (the model
// list, a 404, a 405) its send deadline and its x-request-id, as every answer has.
func ownAnswer(ctx *fasthttp.RequestCtx) {
	sendDeadline(ctx, time.Now(), 0)
	var buf [128]byte
	ctx.Response.Header.SetBytesKV(hdrRequestID, appendRequestID(buf[:0], &ctx.Request.Header))
}

func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

var prefixModels = []byte("/v1/models/")

// pathName is the endpoint name raw, as the path was sent (ctx.URI().PathOriginal())
// holds it where a route has its name (GET /v1/models/{name}, MLflow's
// /endpoints/{name}/invocations and /api/2.0/endpoints/{name}), percent-decoded and
// nothing else: a name is not a path (README: "/ : @ are fine" in one), and the path
// routes are matched on, fasthttp's normalized one, has its "%2F%2F" decoded and then
// collapsed into "/", and its "." and ".." segments resolved, so that "hf://org/model"
// would be looked up as "hf:/org/model". A path as sent that has no name where the
// route has it ("/v1//models/x") leaves the normalized path's name standing. The route
// itself stays the normalized path's: a path whose dot segments leave the route
// ("/v1/models/../admin" is "/v1/admin") is not it, and a name read here reaches only
// the endpoint of that very name, as the caller's key allows.
func (r *request) pathName(raw []byte) []byte {
	r.nameBuf = appendUnescaped(r.nameBuf[:0], raw)
	return r.nameBuf
}

// appendUnescaped appends s to dst with its percent-escapes decoded; a '%' without two
// hex digits after it stays as it is, as fasthttp's own path decoding leaves it.
func appendUnescaped(dst, s []byte) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' && i+2 < len(s) {
			hi, lo := jsonscan.HexDigit(s[i+1]), jsonscan.HexDigit(s[i+2])
			if hi >= 0 && lo >= 0 {
				c = byte(hi<<4 | lo)
				i += 2
			}
		}
		dst = append(dst, c)
	}
	return dst
}

// serveModel answers GET /v1/models/{id}: the endpoint as OpenAI's model object
// (Anthropic's for an Anthropic client), or 404 when there is none or the caller's key
// may not use it.
func (s *Server) serveModel(ctx *fasthttp.RequestCtx, id []byte) {
	r := s.ownRequest(ctx)
	key, e := r.modelsCaller(ctx)
	if e != nil {
		r.fail(ctx, e)
		return
	}
	if raw, ok := bytes.CutPrefix(ctx.URI().PathOriginal(), prefixModels); ok && len(raw) > 0 {
		id = r.pathName(raw)
	}
	ep := r.rt.endpoint(id)
	if ep == nil || key != nil && !key.allowed[ep.idx] {
		e := modelNotFound(id)
		r.fail(ctx, &e)
		return
	}
	ctx.Response.Header.SetContentTypeBytes(strModelsJSON)
	if r.anthropicAPI {
		ctx.Response.SetBodyRaw(r.rt.anthropicModel(id))
		r.finish(ctx, 200)
		return
	}
	// By the name asked for: an alias is a model of its own to the client.
	ctx.Response.SetBodyRaw(r.rt.appendModel(nil, string(id)))
	r.finish(ctx, 200)
}

// serveModels answers GET /v1/models: the endpoints the caller's key may use, as
// OpenAI's list, or as a page of Anthropic's for an Anthropic client.
func (s *Server) serveModels(ctx *fasthttp.RequestCtx) {
	r := s.ownRequest(ctx)
	key, e := r.modelsCaller(ctx)
	if e != nil {
		r.fail(ctx, e)
		return
	}
	if r.anthropicAPI {
		list := r.rt.anthropicAll
		if key != nil {
			list = key.anthropic
		}
		if e := writeAnthropicPage(ctx, list); e != nil {
			r.fail(ctx, e)
			return
		}
		r.finish(ctx, 200)
		return
	}
	body := r.rt.models
	if key != nil {
		body = key.models
	}
	ctx.Response.Header.SetContentTypeBytes(strModelsJSON)
	ctx.Response.SetBodyRaw(body)
	r.finish(ctx, 200)
}

// modelsCaller checks a models request (method, the running config, the client's key
// when keys are on); key is nil without keys.
func (r *request) modelsCaller(ctx *fasthttp.RequestCtx) (key *clientKey, e *apiError) {
	if !ctx.IsGet() && !ctx.IsHead() {
		return nil, methodNotAllowed(ctx, strGetHead)
	}
	if r.rt == nil {
		return nil, &errShuttingDown
	}
	// Through auth, as an API call: a wrong key probing the listings is marked on
	// the trace as one calling the API is.
	if e = r.auth(ctx); e != nil {
		return nil, e
	}
	return r.key, nil
}

func (r *request) nextEvent() {
	err := r.stream.Next(&r.ev)
	if err != nil {
		r.finished = true
		if r.werr != nil {
			// Writing to the client failed while the stream waited: the relay
			// ends with that error.
			return
		}
		if r.gone.Load() {
			// The client hung up and the watch aborted the stream.
			r.werr = errClientGone
			return
		}
		if r.upFailed {
			// The upstream's own error event already went to the client (vLLM's
			// engine failing, its connection then closed without [DONE]): the
			// stream ends there, one error event, counted as upstream_error.
			return
		}
		r.warnStreamFailed(err)
		e := errUpstreamDown
		e.message = "The upstream model server ended the stream early."
		e.code = "upstream_stream_cut"
		r.streamErr = metrics.StreamCut
		var detail upstreamDetail
		switch {
		case errors.Is(err, providers.ErrBadResponse) && errors.As(err, &detail):
			// A JSON error object sent where the events belong: an invalid stream,
			// whose message still tells the client what went wrong.
			e.message = notEventsMessage(detail)
			e.code = "upstream_bad_response"
			r.streamErr = metrics.StreamBadResponse
		case errors.As(err, &detail):
			// An error event of the upstream's own (Anthropic's overloaded_error):
			// what it said goes to the client, as a buffered answer's would.
			e.message = "The upstream model server ended the stream early (" + detail.UpstreamDetail() + ")."
		case errors.Is(err, providers.ErrBadResponse):
			e.message = "The upstream model server sent an invalid stream event."
			e.code = "upstream_bad_response"
			r.streamErr = metrics.StreamBadResponse
		case errors.Is(err, providers.ErrTimeout):
			e.message = "The upstream model server was too slow: the stream was ended at the timeout."
			e.code = "upstream_timeout"
			r.streamErr = metrics.StreamTimeout
		}
		// The access log and the spans name the ending by the code the client's
		// error event and tollgate_stream_errors_total give it: a timeout is a slow
		// upstream, not a dead one.
		r.errKind = e.code
		r.upFailed = true
		if !r.gotEvent && r.outHead > 0 && r.answerInstead(&e) {
			return
		}
		r.out = r.eventBuf()
		if r.anthropicAPI {
			// The Messages API's error event, as Anthropic sends overloaded_error.
			r.out = append(r.out, strErrorEvent...)
			r.out = providers.AppendAnthropicError(r.out, providers.AnthropicErrorType(e.status), e.message, "")
		} else if r.call.Kind == providers.Responses {
			// The API's own error event, as OpenAI sends one mid-stream: clients that
			// read only the API's events (the Vercel AI SDK) take nothing else for
			// an error, and the OpenAI SDKs raise on its error member.
			r.out = strconv.AppendInt(append(r.out, strRespErrorEvent...), r.respSeq, 10)
			r.out = append(appendErrorMember(append(r.out, ','), &e), '}')
		} else {
			r.out = append(r.out, strDataPrefix...)
			r.out = appendError(r.out, &e)
		}
		r.out = append(r.out, strEventEnd...)
		return
	}
	if r.ev.KeepAlive {
		r.out = append(r.eventBuf(), strKeepAlive...)
		return
	}
	r.gotEvent = true
	if r.ev.Done {
		r.finished = true
		if r.call.Kind != providers.Responses && r.call.Kind != providers.Messages && !r.ev.Terminal {
			// A Responses API stream ends with its terminal event, no [DONE]; a
			// Messages API stream with message_stop.
			r.out = append(r.eventBuf(), strDoneEvent...)
		}
		return
	}
	switch {
	case r.ev.HasUsage && (r.ev.UsageOnly || !r.f.continuousUsage):
		// The request's usage: the usage-only chunk's, or without vLLM's
		// continuous_usage_stats a choice chunk's (Gemini's OpenAI endpoint and
		// older llama.cpp servers put it on the last chunk with a choice).
		tier := r.usage.Tier
		r.usage = r.ev.Usage
		r.usage.Tier = tier
	case r.ev.HasUsage && r.f.completions(r.call.Kind) <= 1:
		// With continuous_usage_stats a chunk that carries a choice carries the
		// usage so far, the final one coming in the usage-only chunk; the role
		// chunk's (the prompt's tokens, none generated) too, which is no usage of a
		// stream cut before its first token: that one is refunded.
		r.soFar = r.ev.Usage
	case r.ev.HasUsage:
		// With several completions, a choice's own usage: its prompt is the
		// request's (every choice reads the whole prompt), its output that
		// choice's alone, which is no count of the request's output.
		r.soFar = providers.Usage{Input: r.ev.Usage.Input, CachedInput: r.ev.Usage.CachedInput}
	case r.ev.SoFar:
		r.soFar = r.ev.Usage
	}
	r.outBytes += int64(r.ev.OutputBytes)
	if len(r.ev.Usage.Tier.Bytes()) > 0 {
		// OpenAI names the tier in every chunk: the last one naming it prices the
		// stream, whether or not a chunk with usage comes.
		r.usage.Tier = r.ev.Usage.Tier
	}
	if r.ev.Error && !r.upFailed {
		// The upstream's own error event (vLLM's engine failing mid-stream) goes to
		// the client as it came, and the stream counts as failed even if [DONE]
		// follows: the client got an error, not a completion.
		r.upFailed = true
		r.streamErr = metrics.StreamUpstreamError
		r.errKind = "upstream_error"
	}
	r.ans.Chunk(r.ev.Data)
	if r.ev.Content && r.ttft == 0 {
		r.ttft = time.Since(r.start)
	}
	hide := r.hideUse && r.ev.HasUsage
	if hide && r.ev.UsageOnly {
		// The usage chunk Tollgate asked for on the client's behalf.
		return
	}
	r.out = r.eventBuf()
	if len(r.ev.Name) > 0 {
		r.out = append(append(append(r.out, strEventPrefix...), r.ev.Name...), '\n')
	}
	r.out = append(r.out, strDataPrefix...)
	if r.call.Kind == providers.Responses {
		r.respSeq++
		r.out = r.appendEvent(r.out, r.ev.Data)
	} else if hide {
		// That usage on a chunk with a choice (Gemini's OpenAI endpoint, llama.cpp
		// before its PR #15444): the chunk goes out without it, as the upstream
		// sends it to a client that did not ask.
		r.out = appendWithoutUsage(r.out, r.ev.Data)
	} else {
		r.out = append(r.out, r.ev.Data...)
	}
	r.out = append(r.out, strEventEnd...)
}

// appendWithoutUsage appends chunk, a JSON object, without its usage members. The
// space between members goes; every member kept is copied as it came.
func appendWithoutUsage(dst, chunk []byte) []byte {
	var it jsonscan.Iter
	if it.Reset(chunk) != nil {
		return append(dst, chunk...)
	}
	start, first := len(dst), true
	dst = append(dst, '{')
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		if string(k) == "usage" {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, chunk[it.KeyOffset():it.ValueOffset()+len(v)]...)
	}
	if it.Err() != nil {
		// The provider read the chunk as one object: this cannot happen, but a
		// chunk is never cut short for it.
		return append(dst[:start], chunk...)
	}
	return append(dst, '}')
}

// answerInstead replaces a stream that failed before its first event, while its
// header has not gone out yet (nothing of it reached the client: an empty stream, or
// one cut at once), with the error answer e, as a request that failed before its stream began gets. It
// reports false, leaving out as it was, if the held header cannot be read back.
func (r *request) answerInstead(e *apiError) bool {
	var h fasthttp.ResponseHeader
	if h.Read(bufio.NewReader(bytes.NewReader(r.out[:r.outHead]))) != nil {
		return false
	}
	r.errKind = e.code
	r.failStatus = e.status
	h.SetStatusCode(e.status)
	// The held header's status line says OK: the error's reason phrase instead.
	h.SetStatusMessage(nil)
	h.SetContentTypeBytes(strJSON)
	h.DelBytes(hdrCacheCtl)
	var body []byte
	if r.anthropicAPI {
		body = providers.AppendAnthropicError(nil, providers.AnthropicErrorType(e.status), e.message, b2s(r.reqID))
	} else {
		body = appendError(nil, e)
	}
	h.SetContentLength(len(body))
	r.out = append(h.AppendBytes(r.out[:0]), body...)
	r.outHead = len(r.out)
	return true
}

// endStream ends a stream once it is written, or failed to be because the client
// went away (werr), which aborts the upstream request; it releases r.
func (r *request) endStream(werr error) error {
	err := r.stream.Close()
	status := 200
	// An upstream that failed the stream (cut, timeout, bad event, its own error
	// event) before the client went away or the shutdown cut it decided how the
	// stream ended: its error went to the client, which may have left on reading it
	// (the OpenAI SDKs raise on an error event), and the target's health counts it
	// whatever came after. So do the metrics, the spans, the log and the canary.
	failed := r.upFailed
	shutdownCut := werr != nil && !failed && r.s.cut.Load()
	switch {
	case failed && r.failStatus != 0:
		// The error answer went out instead of the stream (answerInstead).
		status = r.failStatus
	case failed:
		r.series.StreamFailed(r.streamErr)
	case shutdownCut:
		// The gateway closed the connection when shutdown_grace ran out: the client
		// got a 200 and part of the stream.
		r.errKind = "shutdown_cut"
		r.series.StreamFailed(metrics.StreamShutdown)
	case werr != nil:
		r.errKind = "client_gone"
		status = 499
	}
	// Cut (the client gone, the shutdown, the upstream failing) before its usage came
	// (the usage comes last), or ended by an upstream that sends none (stream_usage
	// false, a server that ignores stream_options): a stream that had its first
	// tokens counts what it streamed, for the attempt's span as for the request's
	// settlement. One whose usage came keeps it (streamedUsage leaves it).
	r.streamedUsage()
	// A stream's length follows its output, so the canary judges it by time to first
	// token, and by whether the upstream finished it; one that never had a token, by
	// how long it took to end.
	// Timed from when the attempt went upstream, not from the request's arrival: the
	// retries, Retry-After waits and the backend's queue before it are not this
	// route's latency.
	var ttft time.Duration
	if r.ttft > 0 {
		ttft = max(r.start.Add(r.ttft).Sub(r.sent), 1)
	}
	lat := ttft
	if lat == 0 {
		lat = time.Since(r.sent)
	}
	switch {
	case werr == nil || failed || r.ev.Done:
		// The upstream ended the stream, or failed it before the client went
		// away ([DONE] too when the client went away only after it, which the
		// target's health counts as well).
		r.ep.routing.Observe(r.obsRoute, r.start, lat, ttft, failed)
	case ttft > 0:
		// The client went away: a stream it abandoned has no verdict, as the
		// target's health takes none, but how long its first token took is known.
		r.ep.routing.ObserveTTFT(r.obsRoute, r.start, ttft)
	}
	// The attempt's outcome, for the metric and its span alike.
	outcome := metrics.OutcomeOK
	switch {
	case failed && r.streamErr == metrics.StreamTimeout:
		outcome = metrics.OutcomeTimeout
	case failed:
		outcome = metrics.OutcomeError
	case shutdownCut:
		outcome = metrics.OutcomeShutdown
	case werr != nil:
		outcome = metrics.OutcomeCanceled
	}
	if a := r.streamAttempt; a != nil {
		a.Observe(outcome)
	}
	if as := r.aspan; as != nil {
		if as.IsRecording() {
			if r.ttft > 0 {
				// ttft counts from the request's arrival, as the metric does;
				// the span's time to first chunk counts from the attempt.
				at := r.start.Add(r.ttft)
				tracing.FirstToken(as, at, at.Sub(r.sent))
			}
			r.ans.End(as)
			if r.usageKnown() {
				r.setUsage(as)
			}
			r.setServed(as)
			tracing.SetAttempt(as, r.attempts, outcome.String())
			if r.errKind == "client_gone" {
				tracing.RecordRefusal(as, r.errKind)
			} else if r.errKind != "" {
				tracing.RecordError(as, errors.New(r.errKind), r.errKind)
			}
		}
		as.End()
	}
	r.record(status)
	r.release()
	return err
}

// finish records a request answered within the handler and releases it. An upstream
// answer held against server.max_buffered_bytes stays held until fasthttp has
// written it (holdUntilWritten).
func (r *request) finish(ctx *fasthttp.RequestCtx, status int) {
	sendDeadline(ctx, r.answeredAt(), len(ctx.Response.Body()))
	if r.ansHeld > 0 {
		// What the client gets now: the answer, or an error that replaced it.
		r.holdAnswerBody(&ctx.Response)
		r.holdUntilWritten(&ctx.Response)
	}
	r.setRequestIDHeader(&ctx.Response.Header)
	r.setCacheHeader(&ctx.Response.Header)
	r.record(status)
	r.release()
}

// answeredAt is when the answer was complete: when the attempt that gave it ended, or,
// for an answer the gateway made or a stream, the first time this is asked.
func (r *request) answeredAt() time.Time {
	if r.answered.IsZero() {
		r.answered = time.Now()
	}
	return r.answered
}

// setRequestIDHeader puts the request's ID on a response that does not carry one yet.
func (r *request) setRequestIDHeader(h *fasthttp.ResponseHeader) {
	if len(h.PeekBytes(hdrRequestID)) == 0 {
		h.SetBytesKV(hdrRequestID, r.reqID)
	}
	if r.anthropicAPI && len(h.PeekBytes(hdrAnthropicRequestID)) == 0 {
		// The header Anthropic's answers name their request by, which its SDKs
		// and Claude Code log.
		h.SetCanonical(hdrAnthropicRequestID, r.reqID)
	}
}

// usageKnown reports whether the request has token counts: the upstream's, or the
// gateway's estimate of a stream or an answer without usage (streamedUsage,
// answeredUsage). Providers leave the counts at zero when none came (a stream without
// its usage chunk, an answer without "usage") or when a count in it could not be
// believed; the gateway estimates the first, and the zero left makes record keep the
// limits' estimate or refund it; the GenAI conventions then leave gen_ai.usage.* out
// of the spans rather than report 0 tokens. The answer's service tier is no count.
func (r *request) usageKnown() bool { return r.usage.Counted() }

// setUsage puts the upstream's token counts on a span: gen_ai.usage.input_tokens
// counts the prompt cache's tokens too, which the cache attributes tell apart. The
// gateway's estimate (streamedUsage, answeredUsage) is marked as one.
func (r *request) setUsage(span trace.Span) {
	tracing.SetUsage(span, r.usage.Input, r.usage.Output)
	tracing.SetCacheUsage(span, r.usage.CachedInput, r.usage.CacheWrite)
	if r.usageEst {
		tracing.SetUsageEstimated(span)
	}
}

// setServed puts on a span what the answer says besides its tokens: the service tier
// that served it (openai.response.service_tier, Anthropic's in OpenAI's words) and
// the web searches the upstream ran for it. Neither is a token count: they are
// recorded whether or not the usage is known.
func (r *request) setServed(span trace.Span) {
	tracing.SetServiceTier(span, r.usage.Tier.Bytes())
	tracing.SetWebSearches(span, r.usage.WebSearches)
}

// record settles the request's limits, counts it in the metrics and writes the access
// log line.
func (r *request) record(status int) {
	r.status = status
	s := r.s
	var cost float64
	if r.be != nil {
		// At the prices of the service tier the answer named, when it has them.
		cost = r.be.Pricing.Cost(r.usage)
	}
	if r.limited {
		actual := r.usage.Input + r.usage.Output
		// A spend budget settles at the very cost the cost counter adds.
		spent := limiter.NanoUSD(cost)
		shutdownCut := r.errKind == "shutdown_cut"
		failedEarly := (shutdownCut || r.upFailed) && r.ttft == 0
		if actual == 0 && r.usage.AudioMillis == 0 && r.attempts > 0 && (status < 400 && !failedEarly || status == 499 && (r.ttft > 0 || r.abandoned)) {
			// Answered without a usage count (an audio answer, one whose usage
			// held none to believe, a 200 holding an error object, a background
			// response; other answers without usage count what they answered:
			// answeredUsage), a client that hung up on an audio stream after its
			// first words (priced by the audio's length, which only the usage
			// gives; other streams cut after their first tokens count what they
			// streamed: streamedUsage), or one that hung up while the upstream
			// worked on its request (for how long, nobody will say): the estimate
			// stands. An error answer generated nothing and is
			// refunded, as is a stream the upstream failed (cut, timeout, bad
			// event, its own error event) or the shutdown cut before its first
			// token: its client got an error, not tokens.
			actual, spent = limiter.KeepEstimate, limiter.KeepEstimate
		}
		r.rt.lim.SettleAmounts(&r.ticket, limiter.Amounts{Tokens: actual, NanoUSD: spent})
	}
	latency := r.answeredAt().Sub(r.start)
	series := r.series
	if rt := r.rt; rt != nil {
		if series == nil {
			if r.ep != nil {
				series = r.ep.local
			} else {
				series = rt.unrouted
			}
		}
	} else if live := s.rt.Load(); live != nil {
		// A request refused once shutdown_grace has run out holds no runtime; the live one,
		// still set until the gateway stops, counts it under endpoint "unknown", so
		// that every request with an access log line is counted.
		series = live.unrouted
	}
	if series != nil {
		var tpot time.Duration
		// The completions (n, or a legacy completion's prompts times n or best_of)
		// are generated side by side: the time per token is that of one of them.
		perChoice := r.usage.Output
		if c := r.f.completions(r.call.Kind); c > 1 {
			perChoice /= c
		}
		if r.ttft > 0 && perChoice > 1 && !r.usageEst {
			// Not from an estimate of a cut stream's output: its bytes time no token.
			tpot = (latency - r.ttft) / time.Duration(perChoice-1)
		}
		series.Done(status, latency, r.ttft, tpot, r.usage.Input, r.usage.Output, cost)
		series.CachedInput(r.usage.CachedInput, r.usage.CacheWrite)
		series.WebSearches(r.usage.WebSearches)
		if r.begun {
			r.ep.m.End()
		}
	}
	if k := r.key; k != nil {
		// The key's own counts, for chargeback: what its requests used and cost.
		k.series.Done(r.usage.Input, r.usage.Output, cost)
	}
	r.noteCache()
	if sp := r.span; sp != nil {
		if sp.IsRecording() {
			keyName := ""
			if r.key != nil {
				keyName = r.key.name
			}
			tracing.SetRequestID(sp, r.reqID, keyName)
			// What served the request, as its metrics and access log name it (none
			// there: no attribute here); the routing span keeps the route chosen
			// before any attempt.
			if r.backend != "" {
				sp.SetAttributes(tracing.KeyBackend.String(r.backend))
			}
			if r.variant != "" {
				sp.SetAttributes(tracing.KeyVariant.String(r.variant))
			}
			if r.usageKnown() {
				r.setUsage(sp)
			}
			r.setServed(sp)
			tracing.SetServerStatus(sp, status)
			// A stream the upstream failed after its 200 (cut, or its own error
			// event), or the shutdown cut, is an error of the request too, as its
			// attempt's span is.
			if status >= 500 || r.upFailed && r.errKind != "" || r.errKind == "shutdown_cut" {
				tracing.RecordError(sp, errors.New(r.errKind), r.errKind)
			} else if status >= 400 || r.errKind == errClientHungUp.code {
				// A 4xx, the gateway's own answer or an upstream's passed on, or a
				// client that hung up on its stream: marked with the access log's
				// error type, but no Error status (HTTP conventions: a server's 4xx
				// is no failure of it) and sampled like any request (README, Tracing).
				errType := r.errKind
				if errType == "" {
					errType = strconv.Itoa(status)
				}
				tracing.RecordRefusal(sp, errType)
			}
		}
		sp.End()
	}
	if !s.accessLog.Load() {
		return
	}
	e := accessEntry{
		requestID:    b2s(r.reqID),
		traceID:      r.traceID(),
		backend:      r.backend,
		variant:      r.variant,
		status:       status,
		inputTokens:  r.usage.Input,
		outputTokens: r.usage.Output,
		cachedTokens: r.usage.CachedInput,
		cacheWrites:  r.usage.CacheWrite,
		cost:         cost,
		estimated:    r.usageEst,
		serviceTier:  b2s(r.usage.Tier.Bytes()),
		webSearches:  r.usage.WebSearches,
		audioMillis:  r.usage.AudioMillis,
		queueMS:      float64(r.queued) / 1e6,
		ttftMS:       float64(r.ttft) / 1e6,
		latencyMS:    float64(latency) / 1e6,
		attempts:     r.attempts,
		errKind:      r.errKind,
		cache:        cacheResultNames[r.cacheRes],
	}
	// A request that reached no endpoint is named as its metrics series names it:
	// refused before its model was read, or naming none. So is one no backend
	// served (refused by the gateway: auth, a limit), and one no route served (a
	// fallback's, its backend's refusal, a cache hit): backend and variant "none".
	e.endpoint = metrics.UnknownEndpoint
	if r.ep != nil {
		e.endpoint = r.ep.name
	}
	if e.backend == "" {
		e.backend = metrics.None
	}
	if e.variant == "" {
		e.variant = metrics.None
	}
	if r.key != nil {
		e.key = r.key.name
	}
	e.clientIP = r.clientText()
	// The line is formatted before logAccess returns, so the entry can view the
	// request's own buffers instead of copying them.
	logAccess(s.log, &e)
}

func appendInt(b []byte, v int64) []byte { return strconv.AppendInt(b, v, 10) }

// s2b views s as bytes without copying; the bytes must not be written.
func s2b(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
