package providers

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/internal/jsonscan"
	"github.com/valyala/fasthttp"
)

const (
	defaultAnthropicVersion = "2023-06-01"
	// defaultAnthropicMaxTokens fits every current Claude model's output limit, so a
	// client that names none is not refused for asking too much.
	defaultAnthropicMaxTokens = 4096
)

// anthropic speaks Anthropic's Messages API, translating OpenAI chat completions to it
// and its answers, errors and event streams back.
type anthropic struct {
	model []byte
	// claude is what the model takes (thinking, sampling, structured outputs).
	claude claudeModel
	// drop are the client's fields never sent (drop_params).
	drop      []string
	key       []byte
	version   []byte
	headers   [][2]string
	maxTokens int64
	timeout   time.Duration
	maxBody   int64
	now       func() time.Time
	// secrets are the key, header and URL query values sent upstream, as openAI's:
	// masked in error answers and error events.
	secrets [][]byte
}

func newAnthropic(c *Config) *anthropic {
	a := &anthropic{
		model:     quoteModel(c.Model),
		claude:    claudeModelOf(c.Model),
		drop:      c.DropParams,
		version:   []byte(c.AnthropicVersion),
		maxTokens: c.MaxTokens,
		timeout:   c.Timeout,
		maxBody:   int64(c.MaxResponseBytes),
		now:       time.Now,
	}
	switch c.Thinking {
	case "budget":
		a.claude.adaptive = false
	case "adaptive":
		a.claude.adaptive = true
	}
	if c.APIKey != "" {
		a.key = []byte(c.APIKey)
		a.secrets = appendCredential(a.secrets, c.APIKey)
	}
	for k, v := range c.Headers {
		a.headers = append(a.headers, [2]string{k, v})
		a.secrets = appendHeaderSecrets(a.secrets, k, v)
	}
	a.secrets = appendEncoded(appendQuerySecrets(a.secrets, c))
	a.claude.temperatureScale = c.ChatTemperatureScale
	return a
}

// ThinkingRoom is what the backend adds to the max_tokens it sends for a chat request
// whose body names none, for the thinking the request asks for (a budget, or an
// effort's room): the token estimate counts it, as the upstream may produce it. It is
// nothing when the body names max_tokens or max_completion_tokens (unless drop_params
// removes them: the members dropped are not read), and nothing when the model's
// default thinking goes disabled, as chatThinking sends it for a forced tool call or
// a tool loop replayed without its thinking blocks. Only Anthropic backends add any.
func (b *Backend) ThinkingRoom(body []byte) int64 {
	a, ok := b.p.(*anthropic)
	if !ok {
		return 0
	}
	// The members the translation reads, as encoding/json reads them: in any case,
	// the last one of a name winning.
	var obj, effort, choice, msgs []byte
	var tools, maxTokens, maxCompletion bool
	nMsgs := 0
	var it jsonscan.Iter
	if it.Reset(body) != nil {
		return 0
	}
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		if len(a.drop) > 0 && namedIn(k, a.drop) {
			// Never sent: the translation does not see it.
			continue
		}
		switch {
		case foldedKey(k, "thinking"):
			obj = v
		case foldedKey(k, "reasoning_effort"):
			effort = v
		case foldedKey(k, "tool_choice"):
			choice = v
		case foldedKey(k, "tools"):
			var arr jsonscan.Array
			tools = false
			if arr.Reset(v) {
				_, tools = arr.Next()
			}
		case foldedKey(k, "max_tokens"):
			maxTokens = !jsonscan.IsNull(v)
		case foldedKey(k, "max_completion_tokens"):
			maxCompletion = !jsonscan.IsNull(v)
		case foldedKey(k, "messages"):
			msgs = v
			nMsgs++
		}
	}
	if maxTokens || maxCompletion {
		return 0
	}
	th, err := requestThinking(obj, effort, choice, tools, a.claude)
	if err != nil {
		return 0
	}
	// chatThinking's tool loop, read only when the default would be sent. messages
	// given twice decode into each other's elements (encoding/json reuses them), which
	// the scan does not follow: the room is counted then, as the upstream may use it.
	if th.byDefault && nMsgs == 1 && endsUnthoughtToolLoop(msgs) {
		return 0
	}
	return th.budget + th.room
}

// endsUnthoughtToolLoop is unthoughtToolLoop read off the raw messages array, as
// encoding/json decodes it into []oaMessage (keys in any case, the last of a name
// winning, a null role changing nothing), in one forward walk without decoding:
// ThinkingRoom runs before every chat request. Each message is walked once, by its
// members: a jsonscan.Array would skip it whole first, a third pass over the prompt
// (105 µs for a 90 KB tool loop against 65 µs). What it says of messages the
// translation cannot decode does not matter: that request is refused.
func endsUnthoughtToolLoop(raw []byte) bool {
	i := jsonscan.SkipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '[' {
		return false
	}
	i++
	// The assistant turn so far: whether its messages call tools and carry thinking
	// that is sent. It stays open while only system or developer messages (left out
	// of messages, so the turns either side merge) follow it.
	var calls, thought, open, results bool
	for first := true; ; first = false {
		i = jsonscan.SkipSpace(raw, i)
		if i < len(raw) && raw[i] == ']' {
			break
		}
		if !first {
			if i >= len(raw) || raw[i] != ',' {
				return false
			}
			i = jsonscan.SkipSpace(raw, i+1)
		}
		m, n, ok := readLoopMessage(raw[i:])
		if !ok {
			return false
		}
		i += n
		switch m.role {
		case roleAssistant:
			if !open {
				calls, thought = false, false
			}
			open, results = true, false
			calls = calls || m.calls
			thought = thought || sendsThinking(m.blocks)
		case roleAside:
		case roleTool:
			open, results = false, true
		default:
			open = false
		}
	}
	return results && calls && !thought
}

// loopRole is a message's role as unthoughtToolLoop tells them apart.
type loopRole uint8

const (
	roleOther loopRole = iota
	roleAssistant
	roleTool
	// roleAside is system or developer.
	roleAside
)

// loopMessage is what unthoughtToolLoop reads of a message.
type loopMessage struct {
	role   loopRole
	calls  bool
	blocks []byte
}

// readLoopMessage reads the message b begins with as encoding/json decodes it into an
// oaMessage, and its length; ok is false when it would not decode (not an object, a
// role that is not a string): the translation refuses the request then. A null
// message is a message without role.
func readLoopMessage(b []byte) (m loopMessage, n int, ok bool) {
	if len(b) >= 4 && string(b[:4]) == "null" {
		return m, 4, true
	}
	var it jsonscan.Iter
	if it.Reset(b) != nil {
		return m, 0, false
	}
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		switch {
		case foldedKey(k, "role"):
			switch {
			case jsonscan.IsString(v):
				m.role = roleOf(v)
			case !jsonscan.IsNull(v):
				return m, 0, false
			}
		case foldedKey(k, "tool_calls"):
			var calls jsonscan.Array
			m.calls = false
			if calls.Reset(v) {
				_, m.calls = calls.Next()
			}
		case foldedKey(k, "thinking_blocks"):
			m.blocks = v
		}
	}
	return m, it.End(), it.Err() == nil
}

// roleOf is the role the raw JSON string v names, escapes decoded.
func roleOf(v []byte) loopRole {
	s := v[1 : len(v)-1]
	var buf [64]byte
	if bytes.IndexByte(s, '\\') >= 0 {
		// An escaped ASCII letter takes 6 bytes and the names below 9 letters at
		// most: a longer string is another role, and buf never grows.
		if len(s) > 6*len("developer") {
			return roleOther
		}
		u, ok := jsonscan.AppendUnescape(buf[:0], s)
		if !ok {
			return roleOther
		}
		s = u
	}
	switch string(s) {
	case "assistant":
		return roleAssistant
	case "tool":
		return roleTool
	case "system", "developer":
		return roleAside
	}
	return roleOther
}

// foldedKey reports whether the raw key k is name in any case, escapes decoded.
func foldedKey(k []byte, name string) bool {
	if len(k) == len(name) && strings.EqualFold(b2s(k), name) {
		return true
	}
	if bytes.IndexByte(k, '\\') < 0 {
		// A key of another length matches only through Unicode folding
		// (encoding/json's: "thinKing" with the Kelvin sign is thinking).
		return len(k) != len(name) && !isASCII(k) && strings.EqualFold(b2s(k), name)
	}
	var buf [64]byte
	u, ok := jsonscan.AppendUnescape(buf[:0], k)
	return ok && strings.EqualFold(b2s(u), name)
}

// isASCII reports whether b holds only ASCII bytes.
func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// anthropicURLs points a target's chat operation at {base}/messages; Anthropic has no
// other operation the gateway serves.
func anthropicURLs(t *Target) {
	for k := range t.uris {
		t.uris[k].Reset()
	}
	t.setURL(Chat, operationURL(t.URL, "/messages"))
	t.setURL(Messages, operationURL(t.URL, "/messages"))
	t.setURL(CountTokens, operationURL(t.URL, "/messages/count_tokens"))
}

// UnsupportedError is ErrUnsupported naming the backend's API and the operation, in
// words a client can act on (errors.Is(err, ErrUnsupported) holds).
type UnsupportedError struct {
	// API names the backend's API, such as "Anthropic Messages".
	API string
	// Kind is the operation the request asked for.
	Kind Kind
	// Detail, when set, is the whole message: what of the operation the backend
	// lacks (a Responses API call continuing a stored response, on a backend that
	// serves the API through chat completions and stores none).
	Detail string
	// Param names the request's member the backend cannot serve; empty for the
	// operation itself (the model the client named).
	Param string
}

// Error is meant for the client: it says what the backend lacks and what to call instead.
func (e *UnsupportedError) Error() string {
	if e.Detail != "" {
		return e.Detail
	}
	switch e.Kind {
	case Embeddings:
		return "The model is served by the " + e.API + " API, which has no embeddings; use a model served by an embeddings backend."
	case Completions:
		return "The model is served by the " + e.API + " API, which has no legacy completions; call /v1/chat/completions instead."
	case Responses:
		return "The model is served by the " + e.API + " API, which has no Responses API; call /v1/chat/completions instead."
	case Rerank:
		return "The model is served by the " + e.API + " API, which has no rerank; use a model served by a rerank backend."
	case Score:
		return "The model is served by the " + e.API + " API, which has no score API; use a model served by a rerank backend."
	case Messages:
		return "The model is served by the " + e.API + " API, which has no Messages API; call /v1/chat/completions instead."
	case Tokenize, Detokenize:
		return "The model is served by the " + e.API + " API, which has no tokenizer API (vLLM's /tokenize and /detokenize)."
	case Transcription, Translation:
		return "The model is served by the " + e.API + " API, which has no audio API; use a model served by a transcriptions backend."
	}
	return "The model is served by the " + e.API + " API, which does not support this operation."
}

// Unwrap makes the error match ErrUnsupported.
func (e *UnsupportedError) Unwrap() error { return ErrUnsupported }

var (
	errAnthropicEmbeddings  = &UnsupportedError{API: "Anthropic Messages", Kind: Embeddings}
	errAnthropicCompletions = &UnsupportedError{API: "Anthropic Messages", Kind: Completions}
	errAnthropicResponses   = &UnsupportedError{API: "Anthropic Messages", Kind: Responses}
	errAnthropicRerank      = &UnsupportedError{API: "Anthropic Messages", Kind: Rerank}
	errAnthropicScore       = &UnsupportedError{API: "Anthropic Messages", Kind: Score}
	// Azure's deployment URLs have no Responses API; its v1 API
	// ({endpoint}/openai/v1) has, as an openai backend.
	errAzureResponses = &UnsupportedError{API: "Azure OpenAI deployments", Kind: Responses}
	// Neither has vLLM's tokenizer API.
	errAnthropicTokenize = &UnsupportedError{API: "Anthropic Messages", Kind: Tokenize}
	errAnthropicAudio    = &UnsupportedError{API: "Anthropic Messages", Kind: Transcription}
	errAzureTokenize     = &UnsupportedError{API: "Azure OpenAI deployments", Kind: Tokenize}
)

// errRefusedRequest is a chat request the Messages API cannot express, refused
// before a target is leased; its 400 is written to the answer.
var errRefusedRequest = &RequestError{Status: 400}

var (
	strXAPIKey          = []byte("x-api-key")
	strAnthropicVersion = []byte("anthropic-version")
	strInvalidRequest   = []byte("invalid_request_error")
)

// prepare implements preparer: the chat call in the Messages API's form.
func (a *anthropic) prepare(dst []byte, call *Call, out *fasthttp.Response) ([]byte, error) {
	switch call.Kind {
	case Chat:
	case Messages, CountTokens:
		// The client's own Messages API request: sent as it came but for its model.
		start := len(dst)
		dst = appendBody(dst, call, a.model, false)
		if len(a.drop) > 0 {
			dst = dst[:start+len(dropFields(dst[start:], a.drop))]
		}
		return dst, nil
	case Embeddings:
		return dst, errAnthropicEmbeddings
	case Responses:
		return dst, errAnthropicResponses
	case Rerank:
		return dst, errAnthropicRerank
	case Score:
		return dst, errAnthropicScore
	case Tokenize, Detokenize:
		return dst, errAnthropicTokenize
	case Transcription, Translation:
		return dst, errAnthropicAudio
	default:
		return dst, errAnthropicCompletions
	}
	src := call.Body
	if len(a.drop) > 0 {
		buf := bodyPool.Get().(*[]byte)
		defer putBody(buf)
		*buf = dropFields(append((*buf)[:0], src...), a.drop)
		src = *buf
	}
	body, rerr := appendAnthropicRequest(dst, src, a.model, a.maxTokens, a.claude, call.Stream)
	if rerr != nil {
		writeOpenAIError(out, 400, strInvalidRequest, nil, rerr.param, []byte(rerr.msg))
		return body, errRefusedRequest
	}
	return body, nil
}

// authorize sets on h the credentials and headers every request to the upstream
// carries: its key, anthropic-version and the backend's headers (healthAuthorizer).
func (a *anthropic) authorize(h *fasthttp.RequestHeader) {
	if a.key != nil {
		h.SetBytesKV(strXAPIKey, a.key)
	}
	h.SetBytesKV(strAnthropicVersion, a.version)
	for _, kv := range a.headers {
		setHeader(h, kv[0], kv[1])
	}
}

// Send implements Provider; the body is call.prepared, which prepare wrote.
func (a *anthropic) Send(t *Target, call *Call, out *fasthttp.Response, res *Result) error {
	if call.Kind.Anthropic() {
		return a.sendMessages(t, call, out, res)
	}
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	copyForwardHeaders(&req.Header, call)
	req.Header.SetMethodBytes(strPost)
	t.setRequestURL(req, Chat)
	req.Header.SetContentTypeBytes(strJSON)
	req.Header.SetBytesKV(strAcceptEncoding, strIdentity)
	if a.key != nil {
		req.Header.SetBytesKV(strXAPIKey, a.key)
	}
	// In place of every anthropic-version line the client sent (see setHeader).
	req.Header.DelBytes(strAnthropicVersion)
	req.Header.SetBytesKV(strAnthropicVersion, a.version)
	for _, h := range a.headers {
		setHeader(&req.Header, h[0], h[1])
	}
	req.SetBodyRaw(call.prepared)

	up, err := roundTrip(t, req, call, res, a.timeout)
	if err != nil {
		return err
	}
	status := up.StatusCode()
	if status < 200 || status > 299 {
		defer endAttempt(t, up)
		if !isErrorStatus(status) {
			return notAnswer(status)
		}
		return a.passError(up, out, status, call.Hold)
	}
	created := a.now().Unix()
	if call.Stream {
		if err := notStreamed(t, up); err != nil {
			return err
		}
		s := acquireAnthropicStream()
		s.r.reset(up, t, up.BodyStream(), false)
		s.r.secrets, s.created = a.secrets, created
		// The first events are read here, before the gateway's own watch of the
		// stream begins: the call's client is watched meanwhile, as while the
		// header was awaited.
		c := upstreamOf(up.LocalAddr())
		watched := c != nil && call.Client != nil && !c.ticking()
		if watched {
			c.watch(call, time.Time{})
		}
		err := s.prime()
		if watched {
			c.unwatch()
			call.unwatchClient()
		}
		if err != nil {
			_ = s.Close()
			var f *streamFailure
			if errors.As(err, &f) {
				return &UpstreamError{Status: writeAnthropicError(out, 0, []byte(f.typ), maskAll([]byte(f.msg), a.secrets))}
			}
			return err
		}
		res.Stream = s
		out.SetStatusCode(status)
		return nil
	}
	defer endAttempt(t, up)
	if coded(up.Header.ContentEncoding()) {
		if err := decodeBody(up, a.maxBody, call.Hold); err != nil {
			return err
		}
	}
	b := out.SwapBody(nil)
	b, ok := appendChatCompletion(b[:0], up.Body(), created, &res.Usage, res)
	if !ok {
		setAnswer(out, b[:0])
		return ErrBadResponse
	}
	setAnswer(out, b)
	out.SetStatusCode(status)
	out.Header.SetContentTypeBytes(strJSON)
	return nil
}

// passError translates an Anthropic error answer into OpenAI's shape with the matching
// status, reading a streamed body in full as the other providers' passError does: up
// to the backend's max_response_bytes and as hold allows. A body over either is not
// cut to fit, which would lose its message (or pass on a part of it as the whole):
// the answer is invalid, ErrAnswerTooLarge, or has no room, ErrAnswerNoRoom, as a
// buffered one is.
func (a *anthropic) passError(up, out *fasthttp.Response, status int, hold AnswerHold) error {
	var body []byte
	if up.StreamBody && up.BodyStream() != nil {
		// Not up.Body(), which would read the stream whole, however long.
		var err error
		if body, err = readStreamed(up, a.maxBody, hold); err != nil {
			return err
		}
	} else {
		body = up.Body()
		if enc := up.Header.ContentEncoding(); coded(enc) {
			var err error
			if body, err = uncodedHeld(enc, body, a.maxBody, hold); err != nil {
				return err
			}
		}
	}
	status = translateAnthropicError(out, body, status, a.secrets)
	return &UpstreamError{Status: status, RetryAfter: upstreamRetryAfter(&up.Header), Retry: retryHint(&up.Header)}
}

// anthropicErrors maps Anthropic's error types onto OpenAI's type and code, and the
// status each comes with (for an error event, which has none of its own).
var anthropicErrors = [...]struct {
	from, typ, code string
	status          int
}{
	{"invalid_request_error", "invalid_request_error", "", 400},
	{"authentication_error", "authentication_error", "invalid_api_key", 401},
	{"billing_error", "insufficient_quota", "insufficient_quota", 402},
	{"permission_error", "permission_error", "", 403},
	{"not_found_error", "invalid_request_error", "not_found", 404},
	{"request_too_large", "invalid_request_error", "request_too_large", 413},
	{"rate_limit_error", "rate_limit_exceeded", "rate_limit_exceeded", 429},
	{"api_error", "server_error", "", 500},
	{"timeout_error", "server_error", "timeout", 504},
	{"overloaded_error", "server_error", "overloaded", 529},
}

// translateAnthropicError writes OpenAI's error body for Anthropic's
// {"type":"error","error":{"type","message"}}, with any of secrets the message quotes
// masked, and returns the status to answer with.
func translateAnthropicError(out *fasthttp.Response, body []byte, status int, secrets [][]byte) int {
	var typ, msg []byte
	if e, ok := jsonscan.Field(body, "error"); ok {
		var it jsonscan.Iter
		if it.Reset(e) == nil {
			for {
				k, v, ok := it.Next()
				if !ok {
					break
				}
				switch string(k) {
				case "type":
					if jsonscan.IsString(v) {
						typ = v[1 : len(v)-1]
					}
				case "message":
					if m, ok := jsonscan.AppendUnquote(nil, v); ok {
						msg = m
					}
				}
			}
		}
	}
	return writeAnthropicError(out, status, typ, maskAll(msg, secrets))
}

// writeAnthropicError writes an Anthropic error of type typ in OpenAI's shape. 529
// (overloaded) becomes 503: OpenAI clients know the one and not the other, and both are
// retried. status 0 takes the type's own.
func writeAnthropicError(out *fasthttp.Response, status int, typ, msg []byte) int {
	oaTyp, code, param := []byte(nil), []byte(nil), ""
	for _, m := range anthropicErrors {
		if string(typ) == m.from {
			oaTyp = []byte(m.typ)
			if m.code != "" {
				code = []byte(m.code)
			}
			if status == 0 {
				status = m.status
			}
			break
		}
	}
	if status == 0 {
		status = 500
	}
	if status == 529 {
		status = 503
	}
	if code == nil && string(typ) == "invalid_request_error" && contextTooLong(msg) {
		// OpenAI's own answer names messages as the param. Its words go first:
		// clients that read the message alone (LangChain.js's ChatOpenAI looks for
		// "maximum context length", as OpenAI's says it; the openai Node SDK's
		// error message carries no code) know the refusal by them.
		code, param = strContextLengthExceeded, "messages"
		m := make([]byte, 0, len(strContextLengthPrefix)+len(msg))
		msg = append(append(m, strContextLengthPrefix...), msg...)
	}
	if oaTyp == nil {
		oaTyp = []byte("server_error")
		if status < 500 {
			oaTyp = strInvalidRequest
		}
		if len(typ) > 0 {
			code = typ
		}
	}
	if len(msg) == 0 {
		msg = []byte("The upstream model server answered " + strconv.Itoa(status) + " " + fasthttp.StatusMessage(status) + ".")
	}
	writeOpenAIError(out, status, oaTyp, code, param, msg)
	return status
}

var (
	strContextLengthExceeded = []byte("context_length_exceeded")
	// strContextLengthPrefix opens an Anthropic context-window refusal's message for
	// OpenAI's clients, in OpenAI's words.
	strContextLengthPrefix = []byte("This model's maximum context length was exceeded: ")
	strPromptTooLong       = []byte("prompt is too long")
	strExceedContextLimit  = []byte("exceed context limit")
)

// contextTooLong reports whether an invalid_request_error's message says the prompt
// does not fit the model's context window: "prompt is too long: 209353 tokens >
// 200000 maximum", or, with max_tokens counted, "input length and `max_tokens` exceed
// context limit: 188240 + 21333 > 200000, ...". OpenAI's clients (and frameworks that
// trim history on it) recognise that error by its code, context_length_exceeded.
func contextTooLong(msg []byte) bool {
	return bytes.HasPrefix(msg, strPromptTooLong) || bytes.Contains(msg, strExceedContextLimit)
}

// writeOpenAIError writes {"error":{"message","type","param","code"}} into out.
func writeOpenAIError(out *fasthttp.Response, status int, typ, code []byte, param string, msg []byte) {
	out.SetStatusCode(status)
	out.Header.SetContentTypeBytes(strJSON)
	b := out.SwapBody(nil)[:0]
	b = append(b, `{"error":{"message":`...)
	b = jsonscan.AppendQuote(b, b2s(msg))
	b = append(b, `,"type":`...)
	b = jsonscan.AppendQuote(b, b2s(typ))
	b = append(b, `,"param":`...)
	if param == "" {
		b = append(b, "null"...)
	} else {
		b = jsonscan.AppendQuote(b, param)
	}
	b = append(b, `,"code":`...)
	if len(code) == 0 {
		b = append(b, "null"...)
	} else {
		b = jsonscan.AppendQuote(b, b2s(code))
	}
	setAnswer(out, append(b, "}}"...))
}

func (c *Config) validateAnthropic() []error {
	var errs []error
	if c.Provider != "anthropic" {
		if c.AnthropicVersion != "" {
			errs = append(errs, fieldErr("anthropic_version", "applies only to provider anthropic"))
		}
		if c.MaxTokens != 0 {
			errs = append(errs, fieldErr("max_tokens", "applies only to provider anthropic"))
		}
		if c.Thinking != "" {
			errs = append(errs, fieldErr("thinking", "applies only to provider anthropic"))
		}
		return errs
	}
	switch c.Thinking {
	case "", "auto", "budget", "adaptive":
	default:
		errs = append(errs, fieldErr("thinking", "must be auto, budget or adaptive"))
	}
	if c.AnthropicVersion != "" && !isToken(c.AnthropicVersion) {
		errs = append(errs, fieldErr("anthropic_version", "may hold only letters, digits, '-', '_' and '.' (for example 2023-06-01)"))
	}
	if c.MaxTokens < 0 {
		errs = append(errs, fieldErr("max_tokens", "must not be negative"))
	}
	return errs
}
