// Package mockllm is a fake LLM inference server that behaves like vLLM's OpenAI
// server (chat, legacy completions, embeddings, rerank and score, audio
// transcriptions and translations, the Anthropic
// Messages API as vLLM's router serves it, models, /tokenize, /detokenize, /version,
// /health, /metrics with vLLM's gauges and latency histograms) or like Anthropic's
// Messages API. Its answers are deterministic for a
// seed and a prompt, its latency (time to first token, time per output token) and
// its faults (error rate, cut streams, per-request x-mock-* headers) are
// configurable.
//
// cmd/mockllm serves it over TCP; the gateway's mock provider runs it in process on an
// in-memory listener. It is also the upstream of every benchmark, so its zero-delay
// path builds responses by appending bytes and allocates nothing per request.
package mockllm

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate/internal/jsonscan"
	"github.com/valyala/fasthttp"
)

// route is a path the server knows; rOther is everything else.
type route uint8

const (
	rChat route = iota
	rCompletions
	rEmbeddings
	rModels
	rMessages
	rCountTokens
	rResponses
	rResponseID
	rInputItems
	rCancel
	rRerank
	rRerankV1
	rRerankV2
	rScore
	rScoreV1
	rTranscribe
	rTranslate
	rHealth
	rMetrics
	rTokenize
	rDetokenize
	rVersion
	rPing
	rLoad
	rOther
	numRoutes
)

var routeNames = [numRoutes]string{
	rChat:        "/v1/chat/completions",
	rCompletions: "/v1/completions",
	rEmbeddings:  "/v1/embeddings",
	rModels:      "/v1/models",
	rMessages:    "/v1/messages",
	rCountTokens: "/v1/messages/count_tokens",
	rResponses:   "/v1/responses",
	rResponseID:  "/v1/responses/{id}",
	rInputItems:  "/v1/responses/{id}/input_items",
	rCancel:      "/v1/responses/{id}/cancel",
	rRerank:      "/rerank",
	rRerankV1:    "/v1/rerank",
	rRerankV2:    "/v2/rerank",
	rScore:       "/score",
	rScoreV1:     "/v1/score",
	rTranscribe:  "/v1/audio/transcriptions",
	rTranslate:   "/v1/audio/translations",
	rHealth:      "/health",
	rMetrics:     "/metrics",
	rTokenize:    "/tokenize",
	rDetokenize:  "/detokenize",
	rVersion:     "/version",
	rPing:        "/ping",
	rLoad:        "/load",
	rOther:       "other",
}

// Server is one fake upstream. It is safe for concurrent use.
type Server struct {
	opts      Options
	anthropic bool
	model     []byte // the served name, unquoted
	modelJSON []byte // the served name as a JSON string
	apiKey    []byte

	srv      *fasthttp.Server
	done     chan struct{}
	doneOnce sync.Once
	states   sync.Pool
	connMu   sync.Mutex
	conns    map[*watchConn]struct{}

	rng atomic.Uint64 // fault draws
	ids atomic.Uint64 // response ids

	running, waiting atomic.Int64
	promptTok        atomic.Int64
	genTok           atomic.Int64
	finished         [3]atomic.Int64 // by finished_reason: stop, length, abort
	injected         atomic.Int64
	cut              atomic.Int64
	routes           [numRoutes]atomic.Int64
	stored           responseStore // the Responses API's stored answers
	ttftHist         histogram
	itlHist          histogram
	e2eHist          histogram

	// The scheduler: free MaxNumSeqs slots and the requests waiting for one, oldest
	// first, linked through their states.
	schedMu sync.Mutex
	free    int
	qHead   *state
	qTail   *state

	lastMu   sync.Mutex
	lastPath []byte
	lastHdr  []byte
	lastBody []byte
	lastSet  bool
}

// New validates opts, fills their defaults and returns a server that is not yet
// listening: call Serve, or mount Handler on a server of your own.
func New(opts Options) (*Server, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{
		opts:      o,
		anthropic: o.API == APIAnthropic,
		model:     []byte(o.Model),
		modelJSON: jsonscan.AppendQuote(nil, o.Model),
		done:      make(chan struct{}),
		conns:     make(map[*watchConn]struct{}),
		free:      o.MaxNumSeqs,
		stored:    newResponseStore(o.ResponsesStore),
	}
	s.ttftHist.init(ttftBuckets)
	s.itlHist.init(itlBuckets)
	s.e2eHist.init(e2eBuckets)
	if o.APIKey != "" {
		s.apiKey = []byte(o.APIKey)
	}
	s.rng.Store(mix(uint64(o.Seed) ^ 0x5eed))
	s.ids.Store(mix(uint64(o.Seed) + golden))
	s.states.New = func() any { return &state{s: s} }
	s.srv = &fasthttp.Server{
		Handler:            s.handle,
		Name:               "mockllm",
		Logger:             quietLogger{},
		MaxRequestBodySize: 64 << 20,
		ReadBufferSize:     16 << 10,
		CloseOnShutdown:    true,
		// Idle keep-alive connections are closed as vLLM's uvicorn closes them, so
		// that clients meet connections the upstream has closed, as they do in
		// production.
		IdleTimeout: o.KeepAliveTimeout,
		// The audio routes read their multipart bodies themselves (audio_form.go),
		// malformed ones included, which fasthttp would refuse before the handler.
		DisablePreParseMultipartForm: true,
	}
	return s, nil
}

// quietLogger drops fasthttp's connection-level messages: a stream cut on purpose is
// reported there as a write error, and it is the expected outcome.
type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}

// Handler serves the API; it may be mounted on any fasthttp server.
func (s *Server) Handler() fasthttp.RequestHandler { return s.handle }

// Serve answers connections from ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.srv.Serve(watchListener{ln, s}) }

// Shutdown stops listening, cuts the simulated delays short so running streams finish
// at once, and waits for open connections to go idle.
func (s *Server) Shutdown() error {
	s.doneOnce.Do(func() { close(s.done) })
	s.wakeConns()
	return s.srv.Shutdown()
}

// Stats is a snapshot of what the server has seen, for tests.
type Stats struct {
	// Requests counts requests by route: "/v1/chat/completions", "/v1/completions",
	// "/v1/embeddings", "/v1/models", "/v1/messages", "/v1/messages/count_tokens",
	// "/v1/responses", "/v1/responses/{id}", "/v1/responses/{id}/input_items",
	// "/v1/responses/{id}/cancel", "/rerank", "/v1/rerank", "/v2/rerank", "/score",
	// "/v1/score", "/v1/audio/transcriptions", "/v1/audio/translations", "/health",
	// "/metrics", "/tokenize", "/detokenize", "/version", "other".
	Requests map[string]int64
	// Running and Waiting are the requests holding and awaiting a MaxNumSeqs slot.
	Running, Waiting int64
	// InjectedErrors counts error-rate, x-mock-status and x-mock-error-after answers;
	// CutStreams the streams closed early on purpose.
	InjectedErrors, CutStreams int64
	// PromptTokens and GenerationTokens are the token counters of /metrics.
	PromptTokens, GenerationTokens int64
	// LastPath, LastHeaders and LastBody describe the last POST received (nil when
	// none was), so tests can check what a proxy forwarded.
	LastPath    string
	LastHeaders http.Header
	LastBody    []byte
}

// Stats returns counters and the last request seen.
func (s *Server) Stats() Stats {
	st := Stats{
		Requests:         make(map[string]int64),
		Running:          s.running.Load(),
		Waiting:          s.waiting.Load(),
		InjectedErrors:   s.injected.Load(),
		CutStreams:       s.cut.Load(),
		PromptTokens:     s.promptTok.Load(),
		GenerationTokens: s.genTok.Load(),
	}
	for r := route(0); r < numRoutes; r++ {
		if n := s.routes[r].Load(); n > 0 {
			st.Requests[routeNames[r]] = n
		}
	}
	s.lastMu.Lock()
	defer s.lastMu.Unlock()
	if !s.lastSet {
		return st
	}
	st.LastPath = string(s.lastPath)
	st.LastBody = bytes.Clone(s.lastBody)
	st.LastHeaders = make(http.Header)
	for line := range bytes.SplitSeq(s.lastHdr, []byte("\r\n")) {
		k, v, ok := bytes.Cut(line, []byte(": "))
		if ok {
			st.LastHeaders.Add(textproto.CanonicalMIMEHeaderKey(string(k)), string(v))
		}
	}
	return st
}

// routeOf maps a path to the route this server's API serves there.
func (s *Server) routeOf(path []byte) route {
	switch string(path) {
	case "/health":
		return rHealth
	case "/ping":
		return rPing
	case "/metrics":
		return rMetrics
	case "/v1/models":
		return rModels
	case "/v1/messages":
		// vLLM's main API server serves the Messages API too
		// (vllm/entrypoints/anthropic/api_router.py), on the OpenAI routes' port.
		return rMessages
	case "/v1/messages/count_tokens":
		return rCountTokens
	}
	if s.anthropic {
		return rOther
	}
	switch string(path) {
	case "/v1/chat/completions":
		return rChat
	case "/v1/completions":
		return rCompletions
	case "/v1/embeddings":
		return rEmbeddings
	case "/tokenize":
		return rTokenize
	case "/detokenize":
		return rDetokenize
	case "/version":
		return rVersion
	case "/load":
		return rLoad
	case "/v1/responses":
		return rResponses
	case "/rerank":
		return rRerank
	case "/v1/rerank":
		return rRerankV1
	case "/v2/rerank":
		return rRerankV2
	case "/score":
		return rScore
	case "/v1/score":
		return rScoreV1
	case "/v1/audio/transcriptions":
		return rTranscribe
	case "/v1/audio/translations":
		return rTranslate
	}
	if id, sub, ok := responsePath(path); ok {
		switch {
		case sub == nil:
			return rResponseID
		case len(id) > 0 && string(sub) == "input_items":
			return rInputItems
		case len(id) > 0 && string(sub) == "cancel":
			return rCancel
		}
	}
	return rOther
}

var (
	strJSON        = []byte("application/json")
	strEventStream = []byte("text/event-stream; charset=utf-8") // Starlette adds the charset to text/* types
	strNoCache     = []byte("no-cache")
	strCacheCtl    = []byte("Cache-Control")
	strSawAuth     = []byte("x-mock-saw-authorization")
	strYes         = []byte("yes")
	strNo          = []byte("no")
	strRetryAfter  = []byte("retry-after")
	strAllow       = []byte("Allow")
	strGET         = []byte("GET")
	strPOST        = []byte("POST")
	strV1          = []byte("/v1")
	strGETPOST     = []byte("GET, POST")
	strGETDELETE   = []byte("GET, DELETE")
	strSpace       = []byte(" ")
	strBearer      = []byte("Bearer")
)

// handle is the whole request path: route, x-mock-* headers (which win over
// everything, so a test gets the fault it asked for), API key, then the route's
// parse, model check, error-rate draw, scheduler slot and answer.
func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	r := s.routeOf(ctx.Path())
	s.routes[r].Add(1)
	switch r {
	case rHealth:
		if !ctx.IsGet() {
			s.methodNotAllowed(ctx, strGET)
		}
		return
	case rPing:
		// SageMaker's health check: /health's answer, to GET and POST.
		if !ctx.IsGet() && !ctx.IsPost() {
			s.methodNotAllowed(ctx, strGETPOST)
		}
		return
	case rLoad:
		if !ctx.IsGet() {
			s.methodNotAllowed(ctx, strGET)
			return
		}
		// vLLM's server_load: the requests it holds, running or waiting.
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		ctx.SetBodyString(`{"server_load":` + strconv.FormatInt(s.running.Load()+s.waiting.Load(), 10) + `}`)
		return
	case rMetrics:
		if !ctx.IsGet() {
			s.methodNotAllowed(ctx, strGET)
			return
		}
		s.writeMetrics(ctx)
		return
	case rVersion:
		// vLLM serves /version, like /health, outside its API key check.
		if !ctx.IsGet() {
			s.methodNotAllowed(ctx, strGET)
			return
		}
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		ctx.SetBody(bodyVersion)
		return
	}

	st := s.states.Get().(*state)
	st.reset()
	st.conn, _ = ctx.Conn().(*watchConn)
	st.route = r
	post := ctx.IsPost()
	st.scanHeaders(&ctx.Request.Header, post)
	if post {
		s.record(ctx, st)
	}
	if st.hdr.delay > 0 {
		s.sleep(st.hdr.delay)
	}
	if st.hdr.sawAuth {
		ctx.Response.Header.SetBytesKV(strSawAuth, strYes)
	} else {
		ctx.Response.Header.SetBytesKV(strSawAuth, strNo)
	}
	switch {
	case st.hdr.status >= 400:
		s.injected.Add(1)
		s.statusFault(ctx, st)
	case st.hdr.garbage:
		s.garbage(ctx)
	case s.apiKey != nil && !st.hdr.authOK && bytes.HasPrefix(ctx.Path(), strV1):
		s.unauthorized(ctx, st)
	case r == rOther:
		s.notFound(ctx, st)
	case r == rModels:
		if !ctx.IsGet() {
			s.methodNotAllowed(ctx, strGET)
		} else {
			s.models(ctx, st)
		}
	case r == rResponseID:
		s.storedResponse(ctx, st)
	case r == rInputItems:
		if !ctx.IsGet() {
			s.methodNotAllowed(ctx, strGET)
		} else {
			s.inputItems(ctx, st)
		}
	case r == rCancel:
		if !post {
			s.methodNotAllowed(ctx, strPOST)
		} else {
			s.cancelResponse(ctx, st)
		}
	case !post:
		s.methodNotAllowed(ctx, strPOST)
	case r == rTranscribe || r == rTranslate:
		// Multipart forms: vLLM runs no validate_json_request on these routes.
		s.audio(ctx, st)
	case !s.anthropic && !jsonRequest(ctx):
		// vLLM's Messages routes run validate_json_request as its OpenAI routes do.
		s.badRequest(ctx, st, errContentType)
	case r == rChat:
		s.chat(ctx, st)
	case r == rCompletions:
		s.completions(ctx, st)
	case r == rEmbeddings:
		s.embeddings(ctx, st)
	case r == rMessages || r == rCountTokens:
		s.messages(ctx, st)
	case r == rResponses:
		s.createResponse(ctx, st)
	case r == rTokenize:
		s.tokenize(ctx, st)
	case r == rDetokenize:
		s.detokenize(ctx, st)
	case r == rRerank || r == rRerankV1 || r == rRerankV2:
		s.rerank(ctx, st)
	case r == rScore || r == rScoreV1:
		s.score(ctx, st)
	}
	if !st.owned {
		s.states.Put(st)
	}
}

// record keeps the request's path, headers and body for Stats. The state's buffers
// are swapped with the server's, so steady traffic copies each body once and
// allocates nothing.
func (s *Server) record(ctx *fasthttp.RequestCtx, st *state) {
	st.recBody = append(st.recBody[:0], ctx.PostBody()...)
	st.recPath = append(st.recPath[:0], ctx.Path()...)
	s.lastMu.Lock()
	s.lastBody, st.recBody = st.recBody, s.lastBody
	s.lastHdr, st.recHdr = st.recHdr, s.lastHdr
	s.lastPath, st.recPath = st.recPath, s.lastPath
	s.lastSet = true
	s.lastMu.Unlock()
}

// sleep waits d, or less when the server shuts down.
func (s *Server) sleep(d time.Duration) {
	if d <= 0 {
		return
	}
	if s.opts.Sleep != nil {
		s.opts.Sleep(d)
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	t := time.NewTimer(d)
	select {
	case <-t.C:
	case <-s.done:
		t.Stop()
	}
}

// chance draws from the seeded fault generator: true with probability p.
func (s *Server) chance(p float64) bool {
	if p <= 0 {
		return false
	}
	x := mix(s.rng.Add(golden))
	return float64(x>>11)/(1<<53) < p
}

// maxRequestIDLen bounds a request id taken as the answer's (the gateway sends at most
// 128 bytes), so that a pooled state's copy stays small.
const maxRequestIDLen = 256

// appendRequestID appends id escaped for the inside of a JSON string when it is 1 to
// maxRequestIDLen printable ASCII bytes, else nothing: the answer then keeps an id of
// its own.
func appendRequestID(dst, id []byte) []byte {
	if len(id) == 0 || len(id) > maxRequestIDLen {
		return dst
	}
	for _, c := range id {
		if c < 0x20 || c > 0x7e {
			return dst
		}
	}
	for _, c := range id {
		if c == '"' || c == '\\' {
			dst = append(dst, '\\')
		}
		dst = append(dst, c)
	}
	return dst
}

// nextID returns two words for a response id: a per-server counter and the prompt.
func (s *Server) nextID(h uint64) (uint64, uint64) {
	return mix(s.ids.Add(1)), h
}

// modelOK reports whether raw (a JSON string, or nil when the request named none or
// null) names the served model. vLLM serves its default model when "model" is absent
// or null (model: Optional[str] = None).
func (s *Server) modelOK(raw []byte, scratch []byte) bool {
	if raw == nil || len(raw) == 2 {
		// Absent, null or "": vLLM serves its default model (not model_name).
		return true
	}
	if bytes.Equal(raw[1:len(raw)-1], s.model) {
		return true
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return false
	}
	dec, ok := appendUnquoted(scratch[:0], raw)
	return ok && bytes.Equal(dec, s.model)
}

// errCut ends a stream on purpose: fasthttp drops the connection when a body writer
// fails, so the client sees the stream end without its terminating chunk.
var errCut = errors.New("mockllm: stream cut on purpose")

// setJSON makes body the response, handing the state's buffer to fasthttp and taking
// its old one back, so no bytes are copied.
func (s *Server) setJSON(ctx *fasthttp.RequestCtx, st *state, status int) {
	ctx.SetStatusCode(status)
	ctx.Response.Header.SetContentTypeBytes(strJSON)
	st.out = ctx.Response.SwapBody(st.out)[:0]
}

// beginStream hands the state to fasthttp as the response body; it is released by
// Close once the body has been written. The status and headers go out at once, before
// the stream takes a scheduler slot, as vLLM returns its StreamingResponse as soon as
// the request is queued in the engine.
func (s *Server) beginStream(ctx *fasthttp.RequestCtx, st *state) {
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.Response.Header.SetContentTypeBytes(strEventStream)
	ctx.Response.Header.SetBytesKV(strCacheCtl, strNoCache)
	ctx.Response.ImmediateHeaderFlush = true
	st.owned = true
	ctx.Response.SetBodyStream(st, -1)
}

// durationHeader reads an x-mock-* duration: a Go duration ("200ms") or plain
// milliseconds ("200").
func durationHeader(v []byte) (time.Duration, bool) {
	if n, err := strconv.Atoi(string(v)); err == nil {
		return time.Duration(n) * time.Millisecond, n >= 0
	}
	d, err := time.ParseDuration(string(v))
	return d, err == nil && d >= 0
}

// overrides are the x-mock-* request headers and what the auth headers said.
type overrides struct {
	status     int
	retryAfter []byte
	delay      time.Duration
	ttft, tpot time.Duration
	hasTTFT    bool
	hasTPOT    bool
	tokens     int
	cutAfter   int
	// errorAfter is x-mock-error-after: a Messages stream (Anthropic's or vLLM's)
	// sends an error event after that many content deltas, -1 for none.
	errorAfter int
	garbage    bool
	// cached and cacheWrite are the prompt tokens the answer says were read from
	// and written to the prompt cache (x-mock-cached-tokens,
	// x-mock-cache-write-tokens), at most the prompt's.
	cached     int
	cacheWrite int
	// tier is the service tier an Anthropic answer says served it
	// (x-mock-service-tier), standard when empty.
	tier []byte
	// toolCalls is x-mock-tool-calls: a chat answer of that many tool calls,
	// interleave streaming them interleaved (toolcalls.go).
	toolCalls  int
	interleave bool
	// toolArgs is x-mock-tool-arguments: the arguments (JSON text) every one of
	// those calls carries instead of {"n":i}; empty for those.
	toolArgs []byte
	// audioOpenAI is x-mock-audio-api: openai, the audio routes answering as
	// OpenAI's API does (audio_openai.go).
	audioOpenAI bool

	sawAuth bool
	authOK  bool
	version bool
	// reqID is true when the request had an X-Request-Id, usable or not: as in
	// vLLM, the header wins over the body's request_id.
	reqID bool
}

// scanHeaders reads every header once: the x-mock-* overrides, the credentials, and,
// for POSTs, a copy of the headers for Stats.
func (st *state) scanHeaders(h *fasthttp.RequestHeader, rec bool) {
	s := st.s
	o := &st.hdr
	var lower [32]byte
	for k, v := range h.All() {
		if rec {
			st.recHdr = append(st.recHdr, k...)
			st.recHdr = append(st.recHdr, ": "...)
			st.recHdr = append(st.recHdr, v...)
			st.recHdr = append(st.recHdr, "\r\n"...)
		}
		if len(k) > len(lower) {
			continue
		}
		for i, c := range k {
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			lower[i] = c
		}
		switch string(lower[:len(k)]) {
		case "authorization":
			o.sawAuth = true
			if !s.anthropic && s.apiKey != nil {
				// As vLLM's AuthenticationMiddleware: the scheme in any case, then
				// the key exactly.
				scheme, token, _ := bytes.Cut(v, strSpace)
				o.authOK = bytes.EqualFold(scheme, strBearer) && subtle.ConstantTimeCompare(token, s.apiKey) == 1
			}
		case "x-api-key":
			if s.anthropic {
				o.sawAuth = true
				if s.apiKey != nil {
					o.authOK = subtle.ConstantTimeCompare(v, s.apiKey) == 1
				}
			}
		case "anthropic-version":
			o.version = len(v) > 0
		case "x-request-id":
			// vLLM's _base_request_id: the first X-Request-Id is the request's id,
			// which names the answer (chatcmpl-ID). Copied: a stream outlives the
			// request.
			if !o.reqID {
				o.reqID = true
				st.reqID = appendRequestID(st.reqID[:0], v)
			}
		case "x-mock-status":
			if n, err := strconv.Atoi(string(v)); err == nil && n >= 100 && n <= 999 {
				o.status = n
			}
		case "x-mock-retry-after":
			o.retryAfter = append(o.retryAfter[:0], v...)
		case "x-mock-delay":
			o.delay, _ = durationHeader(v)
		case "x-mock-ttft":
			o.ttft, o.hasTTFT = durationHeader(v)
		case "x-mock-tpot":
			o.tpot, o.hasTPOT = durationHeader(v)
		case "x-mock-tokens":
			if n, err := strconv.Atoi(string(v)); err == nil && n > 0 {
				o.tokens = n
			}
		case "x-mock-cut-after":
			if n, err := strconv.Atoi(string(v)); err == nil && n >= 0 {
				o.cutAfter = n
			}
		case "x-mock-error-after":
			if n, err := strconv.Atoi(string(v)); err == nil && n >= 0 {
				o.errorAfter = n
			}
		case "x-mock-garbage":
			o.garbage = len(v) > 0 && string(v) != "0" && string(v) != "false"
		case "x-mock-cached-tokens":
			if n, err := strconv.Atoi(string(v)); err == nil && n > 0 {
				o.cached = n
			}
		case "x-mock-cache-write-tokens":
			if n, err := strconv.Atoi(string(v)); err == nil && n > 0 {
				o.cacheWrite = n
			}
		case "x-mock-service-tier":
			if tierName(v) {
				o.tier = append(o.tier[:0], v...)
			}
		case "x-mock-audio-api":
			o.audioOpenAI = string(v) == "openai"
		case "x-mock-tool-calls":
			// "N", or "N interleaved".
			num, mode, _ := bytes.Cut(v, strSpace)
			if n, err := strconv.Atoi(string(num)); err == nil && n > 0 && n <= maxToolCalls &&
				(len(mode) == 0 || string(mode) == "interleaved") {
				o.toolCalls, o.interleave = n, len(mode) > 0
			}
		case "x-mock-tool-arguments":
			o.toolArgs = append(o.toolArgs[:0], v...)
		}
	}
}

// tierName reports whether v can name a service tier in usage.service_tier as it is:
// 1 to 32 lowercase letters, digits and underscores (the API's standard, priority,
// batch).
func tierName(v []byte) bool {
	if len(v) == 0 || len(v) > 32 {
		return false
	}
	for _, c := range v {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

// cacheCounts splits a request's prompt tokens as a prompt cache would have served
// them: read from the cache, written to it (the x-mock-* headers, cut to what the
// prompt has, reads first) and the rest.
func (st *state) cacheCounts(prompt int) (read, written, rest int) {
	read = min(st.hdr.cached, prompt)
	written = min(st.hdr.cacheWrite, prompt-read)
	return read, written, prompt - read - written
}

// ttft and tpot are the request's latencies: the x-mock-* headers, else the options.
func (st *state) ttft() time.Duration {
	if st.hdr.hasTTFT {
		return st.hdr.ttft
	}
	return st.s.opts.TTFT
}

func (st *state) tpot() time.Duration {
	if st.hdr.hasTPOT {
		return st.hdr.tpot
	}
	return st.s.opts.TPOT
}

// generationDelay is how long a non-streamed answer of steps tokens takes.
func (st *state) generationDelay(steps int) time.Duration {
	if steps <= 0 {
		return st.ttft()
	}
	return st.ttft() + time.Duration(steps-1)*st.tpot()
}

// cutPoint decides, before a stream starts, after how many content chunks it is cut:
// x-mock-cut-after (at most all of them: the stream then ends before its usage and
// [DONE]),
// else half-way for the DisconnectRate draw, else never (-1).
func (st *state) cutPoint(content int) int {
	if st.hdr.cutAfter >= 0 {
		return min(st.hdr.cutAfter, content)
	}
	if st.s.chance(st.s.opts.DisconnectRate) {
		return content / 2
	}
	return -1
}

var garbageBody = []byte("<html><body><h1>502 Bad Gateway</h1>mockllm: x-mock-garbage</body></html>\n")

var garbageStream = []byte("data: {\"id\": this is not json\n\ndata: [DONE]\n\n")

// garbage answers 200 with a body the client cannot parse: HTML for a plain request,
// an SSE event whose data is not JSON for a streaming one.
func (s *Server) garbage(ctx *fasthttp.RequestCtx) {
	ctx.SetStatusCode(fasthttp.StatusOK)
	if v, ok := jsonscan.Field(ctx.PostBody(), "stream"); ok {
		if b, _ := jsonscan.Bool(v); b {
			ctx.Response.Header.SetContentTypeBytes(strEventStream)
			ctx.SetBody(garbageStream)
			return
		}
	}
	ctx.Response.Header.SetContentTypeBytes(strJSON)
	ctx.SetBody(garbageBody)
}
