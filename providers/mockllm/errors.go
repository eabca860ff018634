package mockllm

import (
	"bytes"
	"strconv"

	"github.com/tollgate/tollgate/internal/jsonscan"
	"github.com/valyala/fasthttp"
)

// badRequest is a request the API refuses with 400; param names the field. vLLM
// answers a body that fails its pydantic model (bad JSON, a missing or mistyped field)
// from its RequestValidationError handler, with type "Bad Request" and no param; serving
// marks the errors raised later, while serving (create_error_response), which keep
// "BadRequestError" and their param.
type badRequest struct {
	msg, param string
	serving    bool
}

var (
	errJSON       = &badRequest{msg: "JSON decode error"}
	errBadModel   = &badRequest{msg: "model: Input should be a valid string", param: "model"}
	errBadStream  = &badRequest{msg: "stream: Input should be a valid boolean", param: "stream"}
	errBadSeed    = &badRequest{msg: "seed: Input should be a valid integer", param: "seed"}
	errBadStop    = &badRequest{msg: "stop: Input should be a valid string or list of strings", param: "stop"}
	errBadOptions = &badRequest{msg: "Stream options can only be defined when `stream=True`.", param: "stream_options"}
	// errOptionsType is pydantic's refusal of a stream_options that is no object.
	errOptionsType = &badRequest{msg: "stream_options: Input should be a valid dictionary or instance of StreamOptions", param: "stream_options"}
	// errSuffix is vLLM's create_completion refusal of suffix, which it never
	// implemented.
	errSuffix = &badRequest{msg: "suffix is not currently supported", serving: true}
)

// errBadMax reports an unusable max_tokens the way vLLM words it.
func errBadMax(param string, raw []byte) *badRequest {
	if _, ok := jsonscan.Int(raw); !ok {
		return &badRequest{msg: param + ": Input should be a valid integer", param: param}
	}
	return &badRequest{msg: param + " must be at least 1, got " + string(raw) + ".", param: param, serving: true}
}

// openAIErrorType names errors as vLLM does, after the OpenAI client's exception classes.
func openAIErrorType(status int) string {
	switch status {
	case 400:
		return "BadRequestError"
	case 401:
		return "AuthenticationError"
	case 403:
		return "PermissionDeniedError"
	case 404:
		return "NotFoundError"
	case 408:
		return "TimeoutError"
	case 409:
		return "ConflictError"
	case 422:
		return "UnprocessableEntityError"
	case 429:
		return "RateLimitError"
	case 501:
		return "NotImplementedError"
	case 503:
		return "ServiceUnavailableError"
	}
	if status >= 500 {
		return "InternalServerError"
	}
	return "BadRequestError"
}

// anthropicErrorType is the error.type Anthropic documents for each status.
func anthropicErrorType(status int) string {
	switch status {
	case 400:
		return "invalid_request_error"
	case 401:
		return "authentication_error"
	case 402:
		return "billing_error"
	case 403:
		return "permission_error"
	case 404:
		return "not_found_error"
	case 413:
		return "request_too_large"
	case 429:
		return "rate_limit_error"
	case 504:
		return "timeout_error"
	case 529:
		return "overloaded_error"
	}
	if status >= 500 {
		return "api_error"
	}
	return "invalid_request_error"
}

// fail writes an error in the server's API shape. vLLM's:
// {"error":{"message","type","param","code"}}, and on its Messages routes what its
// translate_error_response makes of that, {"type":"error","error":{"type","message"}};
// Anthropic's: {"type":"error","error":{"type","message"},"request_id"}.
func (s *Server) fail(ctx *fasthttp.RequestCtx, st *state, status int, msg, param string) {
	s.failTyped(ctx, st, status, openAIErrorType(status), msg, param)
}

// failTyped is fail with the OpenAI error type given.
func (s *Server) failTyped(ctx *fasthttp.RequestCtx, st *state, status int, typ, msg, param string) {
	b := st.out[:0]
	switch {
	case s.anthropic:
		b = append(b, `{"type":"error","error":{"type":"`...)
		b = append(b, anthropicErrorType(status)...)
		b = append(b, `","message":`...)
		b = jsonscan.AppendQuote(b, msg)
		b = append(b, `},"request_id":"`...)
		a, h := s.nextID(0)
		st.setAnthropicID(ctx, a, mix(h^a))
		b = append(b, st.rid...)
		b = append(b, `"}`...)
	case st.route == rMessages || st.route == rCountTokens:
		// vLLM's anthropic/api_router.py translate_error_response: the ErrorResponse's
		// type and message in an AnthropicErrorResponse, its code as the status; the
		// param is dropped.
		b = append(b, `{"type":"error","error":{"type":`...)
		b = jsonscan.AppendQuote(b, typ)
		b = append(b, `,"message":`...)
		b = jsonscan.AppendQuote(b, msg)
		b = append(b, "}}"...)
	default:
		b = appendOpenAIError(b, status, typ, msg, param)
	}
	st.out = b
	s.setJSON(ctx, st, status)
}

// appendOpenAIError appends vLLM's ErrorResponse body.
func appendOpenAIError(b []byte, status int, typ, msg, param string) []byte {
	b = append(b, `{"error":{"message":`...)
	b = jsonscan.AppendQuote(b, msg)
	b = append(b, `,"type":"`...)
	b = append(b, typ...)
	b = append(b, `","param":`...)
	if param == "" {
		b = append(b, "null"...)
	} else {
		b = jsonscan.AppendQuote(b, param)
	}
	b = append(b, `,"code":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	return append(b, "}}"...)
}

// badRequest refuses a request with 400. vLLM answers a body its pydantic model
// refuses from the app's RequestValidationError handler, in the OpenAI shape whatever
// the route (its Messages routes too), and the errors raised while serving from the
// route's handler.
func (s *Server) badRequest(ctx *fasthttp.RequestCtx, st *state, e *badRequest) {
	if e.serving || s.anthropic {
		s.fail(ctx, st, fasthttp.StatusBadRequest, e.msg, e.param)
		return
	}
	st.out = appendOpenAIError(st.out[:0], fasthttp.StatusBadRequest, "Bad Request", e.msg, "")
	s.setJSON(ctx, st, fasthttp.StatusBadRequest)
}

// errContentType is vLLM's validate_json_request refusal, which its generation routes
// run before reading the body.
var errContentType = &badRequest{msg: "Unsupported Media Type: Only 'application/json' is allowed"}

// jsonRequest reports whether the request's media type is application/json, as vLLM's
// validate_json_request requires (a missing Content-Type is refused too).
func jsonRequest(ctx *fasthttp.RequestCtx) bool {
	ct := ctx.Request.Header.ContentType()
	if i := bytes.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return bytes.EqualFold(bytes.TrimSpace(ct), strJSON)
}

// contextTooLong checks a prompt of prompt tokens and a request for maxTokens more
// (0: none asked) against MaxModelLen, in vLLM's words; nil when it fits.
func (s *Server) contextTooLong(prompt int, maxTokens int64) *badRequest {
	m := s.opts.MaxModelLen
	if prompt >= m {
		return &badRequest{serving: true, msg: "This model's maximum context length is " + strconv.Itoa(m) +
			" tokens. However, your request has " + strconv.Itoa(prompt) +
			" input tokens. Please reduce the length of the input messages."}
	}
	if maxTokens > int64(m-prompt) {
		n := strconv.FormatInt(maxTokens, 10)
		return &badRequest{serving: true, msg: "'max_tokens' or 'max_completion_tokens' is too large: " + n +
			". This model's maximum context length is " + strconv.Itoa(m) + " tokens and your request has " +
			strconv.Itoa(prompt) + " input tokens (" + n + " > " + strconv.Itoa(m) + " - " + strconv.Itoa(prompt) + ")."}
	}
	return nil
}

// embeddingTooLong checks an embeddings input of prompt tokens against MaxModelLen, in
// vLLM's words (serving_engine.py _validate_input: an input may fill the context,
// since nothing is generated); nil when it fits.
func (s *Server) embeddingTooLong(prompt int) *badRequest {
	m := s.opts.MaxModelLen
	if prompt <= m {
		return nil
	}
	return &badRequest{serving: true, msg: "This model's maximum context length is " + strconv.Itoa(m) +
		" tokens. However, you requested " + strconv.Itoa(prompt) +
		" tokens in the input for embedding generation. Please reduce the length of the input."}
}

// checkSampling is vLLM's SamplingParams._verify_args for the parameters mockllm
// reads, maxTokens being the request's max_tokens after defaults, then the engine's
// max_logprobs check.
func (st *state) checkSampling(maxTokens int64) *badRequest {
	switch {
	case st.temperature < 0:
		return &badRequest{serving: true, param: "temperature",
			msg: "temperature must be non-negative, got " + string(appendPyFloat(nil, st.temperature)) + "."}
	case !(st.topP > 0 && st.topP <= 1):
		return &badRequest{serving: true, param: "top_p",
			msg: "top_p must be in (0, 1], got " + string(appendPyFloat(nil, st.topP)) + "."}
	case st.minTokens < 0:
		return &badRequest{serving: true, param: "min_tokens",
			msg: "min_tokens must be greater than or equal to 0, got " + strconv.FormatInt(st.minTokens, 10) + "."}
	case st.minTokens > maxTokens:
		return &badRequest{serving: true, param: "min_tokens",
			msg: "min_tokens must be less than or equal to max_tokens=" + strconv.FormatInt(maxTokens, 10) +
				", got " + strconv.FormatInt(st.minTokens, 10) + "."}
	}
	if n := st.topCandidates(); st.logprobs && n > maxLogprobs {
		return &badRequest{serving: true,
			msg: "Requested sample logprobs of " + strconv.Itoa(n) + ", which is greater than max allowed: " + strconv.Itoa(maxLogprobs)}
	}
	return nil
}

// statusFault answers x-mock-status, with x-mock-retry-after as retry-after.
func (s *Server) statusFault(ctx *fasthttp.RequestCtx, st *state) {
	if len(st.hdr.retryAfter) > 0 {
		ctx.Response.Header.SetBytesKV(strRetryAfter, st.hdr.retryAfter)
	}
	s.fail(ctx, st, st.hdr.status, "mockllm: status "+strconv.Itoa(st.hdr.status)+" requested by x-mock-status", "")
}

// injectedError answers the ErrorRate draw.
func (s *Server) injectedError(ctx *fasthttp.RequestCtx, st *state) {
	s.injected.Add(1)
	s.fail(ctx, st, fasthttp.StatusInternalServerError, "mockllm: injected error (error-rate)", "")
}

// unavailable answers requests still waiting for a slot when the server shuts down.
func (s *Server) unavailable(ctx *fasthttp.RequestCtx, st *state) {
	s.fail(ctx, st, fasthttp.StatusServiceUnavailable, "mockllm: shutting down", "")
}

// modelNotFound words the 404 as vLLM (and Anthropic) do.
func (s *Server) modelNotFound(ctx *fasthttp.RequestCtx, st *state, raw []byte) {
	name, _ := appendUnquoted(nil, raw)
	if s.anthropic {
		s.fail(ctx, st, fasthttp.StatusNotFound, "model: "+string(name), "")
		return
	}
	s.fail(ctx, st, fasthttp.StatusNotFound, "The model `"+string(name)+"` does not exist.", "model")
}

// FastAPI's own bodies, which vLLM answers for unknown paths, wrong methods and (from
// its auth middleware) a missing or wrong API key.
var (
	bodyNotFound     = []byte(`{"detail":"Not Found"}`)
	bodyNotAllowed   = []byte(`{"detail":"Method Not Allowed"}`)
	bodyUnauthorized = []byte(`{"error":"Unauthorized"}`)
)

func (s *Server) unauthorized(ctx *fasthttp.RequestCtx, st *state) {
	if s.anthropic {
		msg := "invalid x-api-key"
		if !st.hdr.sawAuth {
			msg = "x-api-key header is required"
		}
		s.fail(ctx, st, fasthttp.StatusUnauthorized, msg, "")
		return
	}
	ctx.SetStatusCode(fasthttp.StatusUnauthorized)
	ctx.Response.Header.SetContentTypeBytes(strJSON)
	ctx.SetBody(bodyUnauthorized)
}

func (s *Server) notFound(ctx *fasthttp.RequestCtx, st *state) {
	if s.anthropic {
		s.fail(ctx, st, fasthttp.StatusNotFound, "Not Found", "")
		return
	}
	ctx.SetStatusCode(fasthttp.StatusNotFound)
	ctx.Response.Header.SetContentTypeBytes(strJSON)
	ctx.SetBody(bodyNotFound)
}

func (s *Server) methodNotAllowed(ctx *fasthttp.RequestCtx, allow []byte) {
	ctx.Response.Header.SetBytesKV(strAllow, allow)
	ctx.SetStatusCode(fasthttp.StatusMethodNotAllowed)
	ctx.Response.Header.SetContentTypeBytes(strJSON)
	if s.anthropic {
		ctx.SetBodyString(`{"type":"error","error":{"type":"invalid_request_error","message":"Method Not Allowed"}}`)
		return
	}
	ctx.SetBody(bodyNotAllowed)
}
