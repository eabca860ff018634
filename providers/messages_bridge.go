package providers

import (
	"bytes"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tollgate/tollgate/internal/jsonscan"
	"github.com/valyala/fasthttp"
)

// The Messages API bridge serves Anthropic's Messages API (POST /v1/messages) on a
// backend that has none (OpenAI's API, Azure OpenAI, TGI, older vLLM), as the
// Responses API bridge (bridge.go) serves that API: the call goes up as a chat
// completions call, through the backend's own Send (its pool, retries, drop_params,
// usage and pricing apply as to any chat call), and the chat answer comes back as a
// message, or a stream of the Messages API's events. Thinking blocks in the history
// are left out (a chat API takes no signed thinking back), and what chat cannot
// express (documents, Anthropic's server tools, MCP servers, containers) is refused
// naming the member, in the Messages API's error shape.

// The values of a backend's messages_api.
const (
	// MessagesNative sends a Messages API call to the upstream's own /messages.
	MessagesNative = "native"
	// MessagesChat serves it through the upstream's chat completions API.
	MessagesChat = "chat"
)

func (c *Config) validateMessagesAPI() []error {
	var errs []error
	switch c.MessagesAPI {
	case "":
	case MessagesNative:
		if c.Provider == "azure" {
			errs = append(errs, fieldErr("messages_api", "must be chat for provider azure: deployment URLs have no Messages API (leave it out)"))
		}
	case MessagesChat:
		switch c.Provider {
		case "anthropic":
			errs = append(errs, fieldErr("messages_api", "must be native for provider anthropic, which serves the Messages API itself (leave it out)"))
		case "mock":
			errs = append(errs, fieldErr("messages_api", "must be native for provider mock, which serves the Messages API itself (leave it out)"))
		}
	default:
		errs = append(errs, fieldErr("messages_api", "must be native or chat"))
	}
	if v := c.StreamUsageContinuous; v != nil {
		switch {
		case !messagesViaChat(c):
			errs = append(errs, fieldErr("stream_usage_continuous",
				"applies only to a backend that serves the Messages API through chat completions (messages_api: chat, or provider azure)"))
		case *v && c.StreamUsage != nil && !*c.StreamUsage:
			errs = append(errs, fieldErr("stream_usage_continuous",
				"needs stream_usage: continuous_usage_stats comes with include_usage, which stream_usage: false does not send"))
		case *v && c.azureUsageOff():
			errs = append(errs, fieldErr("stream_usage_continuous",
				"needs stream_usage: continuous_usage_stats comes with include_usage, which api_version "+c.APIVersion+
					" does not send unless stream_usage is true (stream_options came with "+azureStreamOptionsSince+"-preview)"))
		}
	}
	return errs
}

// streamUsageContinuous reports whether a Messages API stream served through chat
// completions asks for usage on every chunk (continuous_usage_stats): by default on
// openai backends, whose servers behind the bridge are mostly vLLM and SGLang, which
// take it, but for OpenAI's own API (a base_url or a target on api.openai.com or a
// regional host of it); not on azure: those refuse members they do not know.
func (c *Config) streamUsageContinuous() bool {
	if c.StreamUsageContinuous != nil {
		return *c.StreamUsageContinuous
	}
	if c.Provider != "openai" || onOpenAI(c.BaseURL) {
		return false
	}
	for _, t := range c.Targets {
		if onOpenAI(t) {
			return false
		}
	}
	return true
}

// onOpenAI reports whether base names OpenAI's own API or Azure's, which refuse
// request members they do not know: api.openai.com, or a host under it
// (eu.api.openai.com and us.api.openai.com serve data residency projects, the same
// API), and an Azure OpenAI resource's hosts (its v1 API reached with provider
// openai: *.openai.azure.com, *.cognitiveservices.azure.com, *.services.ai.azure.com).
func onOpenAI(base string) bool {
	u, err := url.Parse(base)
	if err != nil {
		return false
	}
	h := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	if h == "api.openai.com" {
		return true
	}
	for _, s := range [...]string{".api.openai.com", ".openai.azure.com", ".cognitiveservices.azure.com", ".services.ai.azure.com"} {
		if strings.HasSuffix(h, s) {
			return true
		}
	}
	return false
}

// continuousUsageJSON is the stream_options a bridged Messages stream sends where the
// backend takes continuous_usage_stats: usage on every chunk, the first (the role's)
// included, which message_start reads the prompt's tokens from, and the usage chunk.
var continuousUsageJSON = []byte(`{"include_usage":true,"continuous_usage_stats":true}`)

// msgsStreamOptions is the stream_options object a bridged Messages stream on b
// sends, nil for none (stream_usage false); continuous is set when it asks for usage
// on every chunk.
func (b *Backend) msgsStreamOptions() (opts []byte, continuous bool) {
	switch {
	case !b.bridgeUsage:
		return nil, false
	case b.messagesContinuous:
		return continuousUsageJSON, true
	}
	return includeUsageJSON, false
}

// messagesViaChat reports whether a backend of config c serves the Messages API
// through its chat completions API.
func messagesViaChat(c *Config) bool {
	switch c.Provider {
	case "azure":
		return true
	case "openai":
		return c.MessagesAPI == MessagesChat
	}
	return false
}

// A token count on a backend that serves the Messages API through chat completions
// goes to the upstream's tokenizer (vLLM's POST /tokenize, at the server's root), in
// its chat form: the messages and tools the chat call for the same body would carry,
// which the server renders with the model's chat template and counts as its prompt.
// errBridgeCountTokens refuses it on Azure's deployments, which have no tokenizer
// API; errBridgeNoTokenizer where the upstream turns out to have none (OpenAI's API,
// TGI, Ollama).
var (
	errBridgeCountTokens = &UnsupportedError{API: "chat completions", Kind: CountTokens,
		Detail: "This model is served through Azure OpenAI's chat completions API, which has no token count: POST /v1/messages/count_tokens is not supported for it."}
	errBridgeNoTokenizer = &UnsupportedError{API: "chat completions", Kind: CountTokens,
		Detail: "This model is served through a chat completions API whose server has no tokenizer API (vLLM's POST /tokenize, which counts chat messages): POST /v1/messages/count_tokens is not supported for it."}
)

// noTokenizerFor is how long a backend whose upstream was found without a tokenizer
// (errBridgeNoTokenizer) refuses its token counts so without asking it: a client
// such as Claude Code counts before each turn and after large tool results, and
// every count would otherwise cost the upstream a request and the client a round
// trip to learn the same. A reload builds the backend anew, which asks at once
// (the upstream replaced, or vLLM put behind it).
const noTokenizerFor = 60 * time.Second

// tokenizerMissing reports whether b's upstream was found without a tokenizer less
// than noTokenizerFor ago; the clock is read only then.
func (b *Backend) tokenizerMissing() bool {
	until := b.noTokenizerUntil.Load()
	return until != 0 && b.pool.now().UnixNano() < until
}

var strRequestIDHeader = []byte("X-Request-Id")

// bridgeMessages serves a Messages API call on b through its chat completions API.
// call is restored before it returns: the gateway sees its Messages call unchanged.
func (b *Backend) bridgeMessages(call *Call, out *fasthttp.Response, res *Result) error {
	op := Chat
	if call.Kind == CountTokens {
		if b.cfg.Provider == "azure" {
			return errBridgeCountTokens
		}
		op = Tokenize
	}
	src := call.Body
	if len(b.cfg.DropParams) > 0 {
		// Members drop_params names go before the translation reads them (the
		// Messages API's names: stop_sequences, metadata); the chat call drops
		// chat's own names again (top_k, user).
		dropped := bodyPool.Get().(*[]byte)
		defer putBody(dropped)
		*dropped = dropFields(append((*dropped)[:0], src...), b.cfg.DropParams)
		src = *dropped
	}
	buf := bodyPool.Get().(*[]byte)
	streamOpts, continuous := b.msgsStreamOptions()
	var body []byte
	var sp bridgeSpans
	var rerr *requestError
	if op == Tokenize {
		body, sp, rerr = appendMessagesTokenize((*buf)[:0], src, b.bridgeModel(call))
	} else {
		body, sp, rerr = appendMessagesChat((*buf)[:0], src, b.bridgeModel(call), call.Stream, streamOpts)
	}
	*buf = body
	if rerr != nil {
		putBody(buf)
		writeAnthropicRefusal(out, rerr, requestID(call))
		return errRefusedRequest
	}
	if op == Tokenize && b.tokenizerMissing() {
		// Refused as the upstream's answer would have it refused, after the
		// translation, which refuses what it cannot express first either way.
		putBody(buf)
		return errBridgeNoTokenizer
	}
	kind, orig, model, opts, key, usage := call.Kind, call.Body, call.Model, call.StreamOptions, call.CacheKey, call.IncludeUsage
	call.Kind, call.Body, call.messagesBridged = op, body, true
	call.Model, call.StreamOptions, call.CacheKey = sp.model, sp.streamOptions, [2]int{}
	// A stream asks for its usage itself (stream_options), when the backend takes it.
	call.IncludeUsage = call.Stream && streamOpts != nil
	err := b.Send(call, out, res)
	call.Kind, call.Body, call.messagesBridged = kind, orig, false
	call.Model, call.StreamOptions, call.CacheKey, call.IncludeUsage = model, opts, key, usage
	res.IDEnds = IDEnds{}
	if err != nil {
		putBody(buf)
		if op == Tokenize && (noTokenizer(err, out.Body()) || errors.Is(err, errBridgeNoTokenizer)) {
			// Concurrent counts that found it out together store about the same
			// instant: the last store wins.
			b.noTokenizerUntil.Store(b.pool.now().Add(noTokenizerFor).UnixNano())
			return errBridgeNoTokenizer
		}
		if _, refused := errors.AsType[*RequestError](err); refused {
			// A refusal of the chat call, in the Messages API's shape. An upstream's
			// error goes as it came: the gateway shapes it once its context
			// fallbacks have read it.
			AnthropicErrorShape(out, requestID(call))
		}
		return err
	}
	if res.Stream != nil {
		s := msgStreamPool.Get().(*msgStream)
		s.in, s.chat = res.Stream, buf
		s.continuous = continuous
		s.model = append(s.model[:0], b.quotedModel...)
		res.Stream = s
		return nil
	}
	putBody(buf)
	return nil
}

// requestID is the request's ID, as the call sends it upstream (X-Request-Id), for
// the Messages API's error bodies.
func requestID(call *Call) []byte {
	if call.Header == nil {
		return nil
	}
	return call.Header.PeekBytes(strRequestIDHeader)
}

// writeAnthropicRefusal writes a request the bridge cannot translate as the Messages
// API's 400, its message naming the member.
func writeAnthropicRefusal(out *fasthttp.Response, rerr *requestError, requestID []byte) {
	msg := rerr.msg
	if rerr.param != "" {
		msg = rerr.param + ": " + msg
	}
	out.SetStatusCode(400)
	out.Header.SetContentTypeBytes(strJSON)
	setAnswer(out, AppendAnthropicError(out.SwapBody(nil)[:0], "invalid_request_error", msg, string(requestID)))
}

// messagesAnswer turns out's 2xx chat completion into a Messages API message, before
// Send judges the attempt: an answer it cannot read is ErrBadResponse. An answer
// holding an error object (a router's 200 that failed) goes as it came.
func (b *Backend) messagesAnswer(call *Call, out *fasthttp.Response, res *Result) error {
	if out.StatusCode() < 200 || out.StatusCode() > 299 {
		return nil
	}
	if call.Kind == Tokenize {
		return countAnswer(out)
	}
	p := bodyPool.Get().(*[]byte)
	msg, ok := appendMessagesAnswer((*p)[:0], out.Body(), b.quotedModel, &res.Usage)
	if !ok {
		*p = msg
		putBody(p)
		if hasError(out.Body()) {
			// A router's 200 holding a chat error object (OpenRouter's failures):
			// the Messages API has no such answer, and an SDK would read an empty
			// message. It goes as that API's error, 502, its message kept.
			out.SetStatusCode(fasthttp.StatusBadGateway)
			AnthropicErrorShape(out, requestID(call))
			return nil
		}
		return ErrBadResponse
	}
	if cap(msg) > maxPooledBuffer {
		out.SetBodyRaw(msg)
		*p = make([]byte, 0, 4096)
	} else {
		*p = out.SwapBody(msg)[:0]
	}
	putBody(p)
	out.Header.SetContentTypeBytes(strJSON)
	return nil
}

var strInputTokens = []byte(`{"input_tokens":`)

// countAnswer turns out's 2xx tokenize answer ({"count", "max_model_len", "tokens"})
// into the Messages API's token count, {"input_tokens": N}, N its count. An answer
// without a count is another server's tokenizer (llama.cpp's /tokenize answers
// {"tokens": [...]} for a body it does not read): errBridgeNoTokenizer, which says
// nothing of the target's health, as its chat completions may serve well.
func countAnswer(out *fasthttp.Response) error {
	v, _ := jsonscan.Field(out.Body(), "count")
	n, ok := jsonscan.Int(v)
	if !ok || n < 0 {
		return errBridgeNoTokenizer
	}
	out.ResetBody()
	out.AppendBody(strInputTokens)
	var num [24]byte
	out.AppendBody(append(strconv.AppendInt(num[:0], n, 10), '}'))
	out.Header.SetContentTypeBytes(strJSON)
	return nil
}

// noTokenizer reports whether err, a tokenize call's answered with body, is the answer
// of a server without vLLM's tokenizer API: 404 or 405 (no such route: OpenAI's API,
// Ollama), or 422, the refusal of a body FastAPI's or axum's validation could not
// read (TGI's own /tokenize takes {"inputs"}); vLLM answers its refusals 400. vLLM's
// 404 for a model it does not serve (unknownModel) is no such answer: the route is
// there, and another model's counts, or another replica's, would be served.
func noTokenizer(err error, body []byte) bool {
	ue, ok := errors.AsType[*UpstreamError](err)
	if !ok {
		return false
	}
	switch ue.Status {
	case fasthttp.StatusNotFound:
		return !unknownModel(body)
	case fasthttp.StatusMethodNotAllowed, fasthttp.StatusUnprocessableEntity:
		return true
	}
	return false
}

// unknownModel reports whether body, an upstream's 404 as passError wrote it (a flat
// error already in OpenAI's shape), is vLLM's answer for a model it does not serve:
// an error of type NotFoundError (its _check_model). A route that does not exist is
// FastAPI's {"detail":"Not Found"}, or another server's own body.
func unknownModel(body []byte) bool {
	e, ok := jsonscan.Field(body, "error")
	if !ok {
		return false
	}
	typ, _ := jsonscan.Field(e, "type")
	return string(typ) == `"NotFoundError"`
}

// msgsRequest holds the raw members of a Messages API request the bridge reads,
// views of the body; the last member of a name wins. A null member is absent.
type msgsRequest struct {
	maxTokens, messages, system, stop, temperature, topP, topK, metadata, tools, toolChoice []byte
	// outputConfig is output_config, whose format (a JSON schema) goes as chat's
	// response_format; outputFormat the beta's output_format, the same format.
	outputConfig, outputFormat []byte
	// refused is the first member chat cannot express.
	refused string
}

// The refusals of the Messages request translation. Messages name fields, never
// their values.
var (
	errMsgJSON       = badRequest("", "We could not parse the JSON body of your request.")
	errMsgMessages   = badRequest("messages", "messages must be a list of at least one message.")
	errMsgSystem     = badRequest("system", "system must be a string or a list of text blocks.")
	errMsgTools      = badRequest("tools", "tools must be a list of tools.")
	errMsgToolChoice = badRequest("tool_choice", "tool_choice must be an object with type auto, any, tool or none.")
	errMsgChoiceName = badRequest("tool_choice.name", "tool_choice.name is required for type tool.")
	errMsgStop       = badRequest("stop_sequences", "stop_sequences must be a list of strings.")
)

const msgChatNote = ": this model is served through a chat completions API, which cannot express it."

// read reads the members of a Messages API request body.
func (r *msgsRequest) read(body []byte) *requestError {
	var it jsonscan.Iter
	if it.Reset(body) != nil {
		return errMsgJSON
	}
	var buf keyBuf
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		if jsonscan.IsNull(v) {
			v = nil
		}
		switch name := keyName(k, &buf); string(name) {
		case "max_tokens":
			r.maxTokens = v
		case "messages":
			r.messages = v
		case "system":
			r.system = v
		case "stop_sequences":
			r.stop = v
		case "temperature":
			r.temperature = v
		case "top_p":
			r.topP = v
		case "top_k":
			r.topK = v
		case "metadata":
			r.metadata = v
		case "tools":
			r.tools = v
		case "tool_choice":
			r.toolChoice = v
		case "output_config":
			r.outputConfig = v
		case "output_format":
			// The structured-outputs beta's name of output_config.format, which
			// Anthropic still takes (the SDKs' beta messages send it).
			r.outputFormat = v
		case "mcp_servers", "container":
			// Anthropic's own services, which run beside the model: nothing in chat
			// completions stands for them.
			if v != nil && r.refused == "" {
				r.refused = string(name)
			}
		}
		// Left out: model (the chat body's own), stream (call.Stream), thinking (a
		// chat API that thinks does so by itself), service_tier (Anthropic's tiers),
		// context_management (edits of the context Anthropic's server keeps, which
		// Claude Code sends with every request: chat gets the whole history), and
		// any other member.
	}
	if it.Err() != nil || jsonscan.SkipSpace(body, it.End()) != len(body) {
		return errMsgJSON
	}
	return nil
}

// appendMessagesChat appends the chat completions body for the Messages API request
// body: model is the model value it carries, stream whether it streams, opts the
// stream_options object a stream sends (nil: none). A request chat cannot express
// gets a requestError naming the member.
func appendMessagesChat(dst, body, model []byte, stream bool, opts []byte) (out []byte, sp bridgeSpans, rerr *requestError) {
	return appendMessagesRequest(dst, body, model, Chat, stream, opts)
}

// appendMessagesTokenize appends the tokenize request, in vLLM's chat form, for the
// Messages API request body (a count_tokens one): the model, messages and tools of
// the chat body appendMessagesChat writes for it, and add_generation_prompt, as the
// chat call's prompt ends in the template's generation prompt. The body is translated
// whole, so that a count refuses what a call would; the members after tools
// (tool_choice, sampling, response_format, user) are left out, as the tokenize
// request has no place for them and the chat template renders none of them.
func appendMessagesTokenize(dst, body, model []byte) (out []byte, sp bridgeSpans, rerr *requestError) {
	return appendMessagesRequest(dst, body, model, Tokenize, false, nil)
}

var strGenerationPrompt = []byte(`,"add_generation_prompt":true}`)

// appendMessagesRequest appends the body of operation op (Chat, or Tokenize) for the
// Messages API request body.
func appendMessagesRequest(dst, body, model []byte, op Kind, stream bool, opts []byte) (out []byte, sp bridgeSpans, rerr *requestError) {
	start := len(dst)
	sp.streamOptions = [2]int{-1, -1}
	var r msgsRequest
	if rerr = r.read(body); rerr != nil {
		return dst, sp, rerr
	}
	if r.refused != "" {
		return dst, sp, badRequest(r.refused, r.refused+" is not supported"+msgChatNote)
	}
	if len(r.messages) == 0 || r.messages[0] != '[' {
		return dst, sp, errMsgMessages
	}
	dst = append(dst, `{"model":`...)
	sp.model = [2]int{len(dst) - start, len(dst) - start + len(model)}
	dst = append(dst, model...)
	dst = append(dst, `,"messages":[`...)
	w := chatWriter{dst: dst}
	scratch := bodyPool.Get().(*[]byte)
	w.scratch = (*scratch)[:0]
	defer func() {
		*scratch = w.scratch
		putBody(scratch)
	}()
	var a jsonscan.Array
	a.Reset(r.messages)
	lead := systemRun(a)
	if r.system != nil || lead > 0 {
		if rerr = w.system(r.system, a, lead); rerr != nil {
			return w.dst, sp, rerr
		}
	}
	turns := false
	for i := 0; ; i++ {
		m, ok := a.Next()
		if !ok {
			break
		}
		if i < lead {
			continue
		}
		turns = true
		// The system messages right after a user turn fold into it, and those
		// after one (after an assistant turn) into it (chatWriter.fold).
		fold := 0
		if role, _ := jsonscan.Field(m, "role"); !isString(role, "assistant") {
			fold = systemRun(a)
		}
		if rerr = w.message(m, i, a, fold); rerr != nil {
			return w.dst, sp, rerr
		}
		for range fold {
			a.Next()
			i++
		}
	}
	if w.n == 0 || !turns {
		// System messages alone are no conversation.
		return w.dst, sp, errMsgMessages
	}
	dst = append(w.dst, ']')
	hasTools := false
	if r.tools != nil {
		if dst, hasTools, rerr = appendMsgTools(dst, r.tools); rerr != nil {
			return dst, sp, rerr
		}
	}
	prompt := len(dst)
	if r.toolChoice != nil {
		if dst, rerr = appendMsgToolChoice(dst, r.toolChoice, hasTools); rerr != nil {
			return dst, sp, rerr
		}
	}
	// max_tokens: what Azure's api-versions before 2024-09-01 and TGI take; the openai
	// provider renames it for OpenAI's reasoning models.
	dst = appendRawMember(dst, "max_tokens", r.maxTokens)
	if r.stop != nil {
		if r.stop[0] != '[' {
			return dst, sp, errMsgStop
		}
		dst = appendRawMember(dst, "stop", r.stop)
	}
	dst = appendRawMember(dst, "temperature", r.temperature)
	dst = appendRawMember(dst, "top_p", r.topP)
	// top_k is vLLM's and TGI's (OpenAI's API refuses it: drop_params: [top_k]).
	dst = appendRawMember(dst, "top_k", r.topK)
	if dst, rerr = appendMsgFormat(dst, r.outputConfig, r.outputFormat); rerr != nil {
		return dst, sp, rerr
	}
	if r.metadata != nil && r.metadata[0] == '{' {
		if u, _ := jsonscan.Field(r.metadata, "user_id"); jsonscan.IsString(u) {
			dst = appendRawMember(dst, "user", u)
		}
	}
	if op == Tokenize {
		return append(dst[:prompt], strGenerationPrompt...), sp, nil
	}
	if stream {
		dst = append(dst, `,"stream":true`...)
		if opts != nil {
			dst = append(dst, `,"stream_options":`...)
			sp.streamOptions = [2]int{len(dst) - start, len(dst) - start + len(opts)}
			dst = append(dst, opts...)
		}
	}
	return append(dst, '}'), sp, nil
}

// chatWriter writes the chat messages of a Messages API request.
type chatWriter struct {
	dst, scratch []byte
	// n counts the messages written.
	n int
}

func (w *chatWriter) sep() {
	if w.n > 0 {
		w.dst = append(w.dst, ',')
	}
	w.n++
}

// openUserText opens a user message whose content is a string: at is where it begins,
// text where its text does, for closeUserText.
func (w *chatWriter) openUserText() (at, text int) {
	at = len(w.dst)
	w.sep()
	w.dst = append(w.dst, `{"role":"user","content":"`...)
	return at, len(w.dst)
}

// closeUserText ends the message openUserText opened at at, or takes it back out when
// no text came after text.
func (w *chatWriter) closeUserText(at, text int) {
	if len(w.dst) == text {
		w.dst = w.dst[:at]
		w.n--
		return
	}
	w.dst = append(w.dst, `"}`...)
}

// system writes the system prompt: a string, or text blocks joined by a newline,
// then the text of the lead system messages that open messages (a, from its first),
// each after an empty line.
func (w *chatWriter) system(s []byte, a jsonscan.Array, lead int) *requestError {
	at := len(w.dst)
	w.dst = append(w.dst, `{"role":"system","content":"`...)
	text := len(w.dst)
	switch {
	case s == nil:
	case jsonscan.IsString(s):
		w.dst = append(w.dst, s[1:len(s)-1]...)
	default:
		var b jsonscan.Array
		if !b.Reset(s) {
			return errMsgSystem
		}
		n := 0
		for j := 0; ; j++ {
			blk, ok := b.Next()
			if !ok {
				break
			}
			typ, _ := jsonscan.Field(blk, "type")
			t, _ := jsonscan.Field(blk, "text")
			if !isString(typ, "text") || !jsonscan.IsString(t) {
				return badRequest("system["+strconv.Itoa(j)+"]", "system must hold text blocks only.")
			}
			if bytes.HasPrefix(t, strBillingHeader) {
				// Claude Code's billing header, which changes with each request: it
				// would begin every prompt apart, and no upstream prefix cache would
				// hit (vLLM's own Messages API leaves it out too).
				continue
			}
			if n > 0 {
				w.dst = append(w.dst, `\n`...)
			}
			w.dst = append(w.dst, t[1:len(t)-1]...)
			n++
		}
	}
	for i := range lead {
		m, _ := a.Next()
		if rerr := w.systemText(m, i, len(w.dst) > text); rerr != nil {
			return rerr
		}
	}
	if len(w.dst) == text {
		w.dst = w.dst[:at]
		return nil
	}
	// The system prompt is the first message: no separator before it.
	w.dst = append(w.dst, `"}`...)
	w.n++
	return nil
}

// A mid-conversation system message (role "system" in messages: Opus 4.8 and the
// Claude 5 models take them, and Claude Code sends its reminders in them) has no
// place a chat template is sure to take: many render a system message only first, or
// refuse one later. Its text goes where Claude Code puts the same reminders for other
// models, and vLLM's own Messages API folds it: at the end of the user turn it
// follows (the last tool message of a turn of tool results alone, so that no user
// message comes between the tool results and the answer), into the system prompt when
// it opens messages, and as a user message of its own after an assistant turn, as
// the API places one only before an assistant turn or at the end.

// systemRun counts the system messages a holds from where it is.
func systemRun(a jsonscan.Array) int {
	n := 0
	for {
		m, ok := a.Next()
		if !ok {
			return n
		}
		if role, _ := jsonscan.Field(m, "role"); !isString(role, "system") {
			return n
		}
		n++
	}
}

// fold appends the text of the n system messages a holds next (messages i+1 on),
// each after an empty line, to the inside of a JSON string being written; joined
// reports whether that string has text already.
func (w *chatWriter) fold(a jsonscan.Array, n, i int, joined bool) *requestError {
	for k := range n {
		m, _ := a.Next()
		at := len(w.dst)
		if rerr := w.systemText(m, i+1+k, joined); rerr != nil {
			return rerr
		}
		joined = joined || len(w.dst) > at
	}
	return nil
}

// systemText appends the text of system message m (message i), a string or text
// blocks joined by a newline, to the inside of a JSON string, after an empty line
// when joined.
func (w *chatWriter) systemText(m []byte, i int, joined bool) *requestError {
	content, _ := jsonscan.Field(m, "content")
	if jsonscan.IsString(content) {
		if len(content) > 2 {
			if joined {
				w.dst = append(w.dst, `\n\n`...)
			}
			w.dst = append(w.dst, content[1:len(content)-1]...)
		}
		return nil
	}
	var a jsonscan.Array
	if !a.Reset(content) {
		return badRequest(msgField(i, ".content"), "content must be a string or a list of content blocks.")
	}
	n := 0
	for j := 0; ; j++ {
		blk, ok := a.Next()
		if !ok {
			return nil
		}
		typ, _ := jsonscan.Field(blk, "type")
		text, _ := jsonscan.Field(blk, "text")
		if !isString(typ, "text") || !jsonscan.IsString(text) {
			return badRequest(blockField(i, j, ""), "a system message must hold text blocks only.")
		}
		if len(text) == 2 {
			continue
		}
		switch {
		case n > 0:
			w.dst = append(w.dst, `\n`...)
		case joined:
			w.dst = append(w.dst, `\n\n`...)
		}
		w.dst = append(w.dst, text[1:len(text)-1]...)
		n++
	}
}

// Block types of the Messages API's content.
const (
	blkOther = iota
	blkText
	blkImage
	blkToolUse
	blkToolResult
	blkThinking
	blkDocument
)

func blockType(typ []byte) int {
	if !jsonscan.IsString(typ) {
		return blkOther
	}
	switch string(typ[1 : len(typ)-1]) {
	case "text":
		return blkText
	case "image":
		return blkImage
	case "tool_use":
		return blkToolUse
	case "tool_result":
		return blkToolResult
	case "thinking", "redacted_thinking":
		return blkThinking
	case "document":
		return blkDocument
	}
	return blkOther
}

func blockField(i, j int, rest string) string {
	return "messages[" + strconv.Itoa(i) + "].content[" + strconv.Itoa(j) + "]" + rest
}

// imageField names a member of image block messages[i].content[j], or of its
// content[k] (a tool result's) when k is 0 or more.
func imageField(i, j, k int, rest string) string {
	if k >= 0 {
		return blockField(i, j, ".content["+strconv.Itoa(k)+"]"+rest)
	}
	return blockField(i, j, rest)
}

// readAt reads block messages[i].content[j] (read), refusing one that is no object
// or a text block whose text is no string.
func (b *block) readAt(raw []byte, i, j int) *requestError {
	if !b.read(raw) {
		return badRequest(blockField(i, j, ""), "a content block must be an object.")
	}
	if b.typ == blkText && !jsonscan.IsString(b.text) {
		return badRequest(blockField(i, j, ".text"), "text must be a string.")
	}
	return nil
}

// block reads a content block's type and the members the bridge writes.
type block struct {
	typ                           int
	text, source, id, name, input []byte
	toolUseID, content            []byte
}

func (b *block) read(raw []byte) bool {
	*b = block{}
	var it jsonscan.Iter
	if it.Reset(raw) != nil {
		return false
	}
	var buf keyBuf
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		if jsonscan.IsNull(v) {
			continue
		}
		switch string(keyName(k, &buf)) {
		case "type":
			b.typ = blockType(v)
		case "text":
			b.text = v
		case "source":
			b.source = v
		case "id":
			b.id = v
		case "name":
			b.name = v
		case "input":
			b.input = v
		case "tool_use_id":
			b.toolUseID = v
		case "content":
			b.content = v
		}
	}
	return it.Err() == nil
}

// message writes message i: a user turn's tool results as tool messages, in order,
// then the rest of its content as a user message; an assistant turn's text and tool
// calls as one assistant message; a system message (one after an assistant turn) as
// a user message. The fold system messages a holds next join a user or system
// message's text.
func (w *chatWriter) message(m []byte, i int, a jsonscan.Array, fold int) *requestError {
	role, _ := jsonscan.Field(m, "role")
	content, _ := jsonscan.Field(m, "content")
	if isString(role, "system") {
		at, text := w.openUserText()
		if rerr := w.systemText(m, i, false); rerr != nil {
			return rerr
		}
		if rerr := w.fold(a, fold, i, len(w.dst) > text); rerr != nil {
			return rerr
		}
		w.closeUserText(at, text)
		return nil
	}
	user := isString(role, "user")
	if !user && !isString(role, "assistant") {
		return badRequest(msgField(i, ".role"), "role must be user, assistant or system.")
	}
	if jsonscan.IsString(content) {
		w.sep()
		w.dst = append(w.dst, `{"role":`...)
		w.dst = append(w.dst, role...)
		w.dst = append(w.dst, `,"content":`...)
		if fold == 0 {
			w.dst = append(append(w.dst, content...), '}')
			return nil
		}
		w.dst = append(w.dst, content[:len(content)-1]...)
		if rerr := w.fold(a, fold, i, len(content) > 2); rerr != nil {
			return rerr
		}
		w.dst = append(w.dst, `"}`...)
		return nil
	}
	var blocks jsonscan.Array
	if !blocks.Reset(content) {
		return badRequest(msgField(i, ".content"), "content must be a string or a list of content blocks.")
	}
	if user {
		return w.user(content, i, a, fold)
	}
	return w.assistant(content, i)
}

// user writes a user turn of blocks, the fold system messages sys holds next at its
// end.
func (w *chatWriter) user(content []byte, i int, sys jsonscan.Array, fold int) *requestError {
	var a jsonscan.Array
	var b block
	texts, images, resultImages, results := 0, 0, 0, 0
	a.Reset(content)
	for j := 0; ; j++ {
		raw, ok := a.Next()
		if !ok {
			break
		}
		if rerr := b.readAt(raw, i, j); rerr != nil {
			return rerr
		}
		switch b.typ {
		case blkText:
			texts++
		case blkImage:
			images++
		case blkToolResult:
			n, rerr := w.toolResult(&b, i, j)
			if rerr != nil {
				return rerr
			}
			resultImages += n
			results++
		case blkThinking:
		case blkDocument:
			return badRequest(blockField(i, j, ""), "document blocks are not supported"+msgChatNote)
		case blkToolUse:
			return badRequest(blockField(i, j, ""), "tool_use blocks belong to assistant messages.")
		default:
			return badRequest(blockField(i, j, ".type"), "this content block type is not supported"+msgChatNote)
		}
	}
	if texts+images+resultImages == 0 {
		if fold == 0 {
			return nil
		}
		if results > 0 {
			// Tool results alone: the system text ends the last tool message's, and
			// no user message comes between the results and the answer.
			joined := !bytes.HasSuffix(w.dst, strEmptyToolContent)
			w.dst = w.dst[:len(w.dst)-2]
			if rerr := w.fold(sys, fold, i, joined); rerr != nil {
				return rerr
			}
			w.dst = append(w.dst, `"}`...)
			return nil
		}
		at, text := w.openUserText()
		if rerr := w.fold(sys, fold, i, false); rerr != nil {
			return rerr
		}
		w.closeUserText(at, text)
		return nil
	}
	w.sep()
	w.dst = append(w.dst, `{"role":"user","content":`...)
	parts := texts+images+resultImages > 1 || images+resultImages > 0
	if parts {
		w.dst = append(w.dst, '[')
	}
	a.Reset(content)
	n := 0
	// lastText is set while the last part written is a text part: the system
	// messages folded into the turn join its text rather than add a part, as some
	// chat templates join text parts without a separator.
	lastText := false
	for j := 0; ; j++ {
		raw, ok := a.Next()
		if !ok {
			break
		}
		b.read(raw)
		switch b.typ {
		case blkText:
			if !parts {
				if fold == 0 {
					w.dst = append(w.dst, b.text...)
					continue
				}
				w.dst = append(w.dst, b.text[:len(b.text)-1]...)
				if rerr := w.fold(sys, fold, i, len(b.text) > 2); rerr != nil {
					return rerr
				}
				w.dst = append(w.dst, '"')
				fold = 0
				continue
			}
			if n > 0 {
				w.dst = append(w.dst, ',')
			}
			n++
			w.dst = append(w.dst, `{"type":"text","text":`...)
			w.dst = append(append(w.dst, b.text...), '}')
			lastText = true
		case blkImage:
			if n > 0 {
				w.dst = append(w.dst, ',')
			}
			n++
			lastText = false
			if rerr := w.image(b.source, i, j, -1); rerr != nil {
				return rerr
			}
		case blkToolResult:
			// The images a tool result holds, which a chat tool message cannot:
			// they open the user message that follows the tool messages.
			var r jsonscan.Array
			if jsonscan.IsString(b.content) || !r.Reset(b.content) {
				continue
			}
			for k := 0; ; k++ {
				part, ok := r.Next()
				if !ok {
					break
				}
				if typ, _ := jsonscan.Field(part, "type"); !isString(typ, "image") {
					continue
				}
				if n > 0 {
					w.dst = append(w.dst, ',')
				}
				n++
				lastText = false
				src, _ := jsonscan.Field(part, "source")
				if rerr := w.image(src, i, j, k); rerr != nil {
					return rerr
				}
			}
		}
	}
	if parts {
		if fold > 0 {
			if rerr := w.foldPart(sys, fold, i, lastText); rerr != nil {
				return rerr
			}
		}
		w.dst = append(w.dst, ']')
	}
	w.dst = append(w.dst, '}')
	return nil
}

// strEmptyToolContent ends a tool message whose content is empty.
var strEmptyToolContent = []byte(`:""}`)

// foldPart appends the text of the fold system messages sys holds next to a user
// message's content parts: to the last part's text when lastText (it is a text part),
// else as a text part of its own.
func (w *chatWriter) foldPart(sys jsonscan.Array, fold, i int, lastText bool) *requestError {
	if lastText {
		// The last part ends with its text's closing quote and brace.
		joined := !bytes.HasSuffix(w.dst, strEmptyTextPart)
		w.dst = w.dst[:len(w.dst)-2]
		if rerr := w.fold(sys, fold, i, joined); rerr != nil {
			return rerr
		}
		w.dst = append(w.dst, `"}`...)
		return nil
	}
	at := len(w.dst)
	w.dst = append(w.dst, `,{"type":"text","text":"`...)
	text := len(w.dst)
	if rerr := w.fold(sys, fold, i, false); rerr != nil {
		return rerr
	}
	if len(w.dst) == text {
		w.dst = w.dst[:at]
		return nil
	}
	w.dst = append(w.dst, `"}`...)
	return nil
}

// strEmptyTextPart ends a text part whose text is empty.
var strEmptyTextPart = []byte(`"text":""}`)

// image writes an image block's source as an image_url part: a base64 source as a
// data: URL, a url source as its URL.
// The block is messages[i].content[j], or a tool result's content[k] in it when k is
// 0 or more (imageField).
func (w *chatWriter) image(src []byte, i, j, k int) *requestError {
	typ, _ := jsonscan.Field(src, "type")
	switch {
	case isString(typ, "base64"):
		mt, _ := jsonscan.Field(src, "media_type")
		data, _ := jsonscan.Field(src, "data")
		if !jsonscan.IsString(mt) || !jsonscan.IsString(data) {
			return badRequest(imageField(i, j, k, ".source"), "a base64 image source needs media_type and data strings.")
		}
		w.dst = append(w.dst, `{"type":"image_url","image_url":{"url":"data:`...)
		w.dst = append(w.dst, mt[1:len(mt)-1]...)
		w.dst = append(w.dst, `;base64,`...)
		w.dst = append(w.dst, data[1:len(data)-1]...)
		w.dst = append(w.dst, `"}}`...)
	case isString(typ, "url"):
		u, _ := jsonscan.Field(src, "url")
		if !jsonscan.IsString(u) {
			return badRequest(imageField(i, j, k, ".source.url"), "a url image source needs a url string.")
		}
		w.dst = append(w.dst, `{"type":"image_url","image_url":{"url":`...)
		w.dst = append(append(w.dst, u...), `}}`...)
	default:
		return badRequest(imageField(i, j, k, ".source.type"), "an image source must be base64 or url"+msgChatNote)
	}
	return nil
}

// toolResult writes a tool_result block as a tool message: its content a string, or
// its text blocks (and tool_reference blocks as the tools they load) joined; images
// reports how many image blocks it holds, which the user message after the tool
// messages carries (a chat tool message holds text only).
func (w *chatWriter) toolResult(b *block, i, j int) (images int, rerr *requestError) {
	if !jsonscan.IsString(b.toolUseID) {
		return 0, badRequest(blockField(i, j, ".tool_use_id"), "tool_use_id must be a string.")
	}
	w.sep()
	w.dst = append(w.dst, `{"role":"tool","tool_call_id":`...)
	w.dst = append(w.dst, b.toolUseID...)
	w.dst = append(w.dst, `,"content":`...)
	switch {
	case b.content == nil:
		w.dst = append(w.dst, `""`...)
	case jsonscan.IsString(b.content):
		w.dst = append(w.dst, b.content...)
	default:
		var a jsonscan.Array
		if !a.Reset(b.content) {
			return 0, badRequest(blockField(i, j, ".content"), "content must be a string or a list of text and image blocks.")
		}
		w.dst = append(w.dst, '"')
		texts := 0
		for k := 0; ; k++ {
			raw, ok := a.Next()
			if !ok {
				break
			}
			typ, _ := jsonscan.Field(raw, "type")
			if isString(typ, "image") {
				if src, _ := jsonscan.Field(raw, "source"); len(src) == 0 || src[0] != '{' {
					return 0, badRequest(blockField(i, j, ".content["+strconv.Itoa(k)+"].source"), "an image block needs a source object.")
				}
				images++
				continue
			}
			if isString(typ, "tool_reference") {
				// Claude Code's tool search answers with references to the deferred
				// tools it loads, which Anthropic's API expands into their
				// definitions: a chat model has them in tools already, and is told
				// which are loaded.
				name, _ := jsonscan.Field(raw, "tool_name")
				if !jsonscan.IsString(name) {
					return 0, badRequest(blockField(i, j, ".content["+strconv.Itoa(k)+"].tool_name"), "a tool_reference block needs a tool_name string.")
				}
				if texts > 0 {
					w.dst = append(w.dst, `\n`...)
				}
				texts++
				w.dst = append(w.dst, "Tool loaded: "...)
				w.dst = append(w.dst, name[1:len(name)-1]...)
				continue
			}
			text, _ := jsonscan.Field(raw, "text")
			if !isString(typ, "text") || !jsonscan.IsString(text) {
				return 0, badRequest(blockField(i, j, ".content["+strconv.Itoa(k)+"]"), "a tool result must hold text, image and tool_reference blocks only"+msgChatNote)
			}
			if texts > 0 {
				w.dst = append(w.dst, `\n`...)
			}
			texts++
			w.dst = append(w.dst, text[1:len(text)-1]...)
		}
		w.dst = append(w.dst, '"')
	}
	w.dst = append(w.dst, '}')
	return images, nil
}

// assistant writes an assistant turn of blocks: its text joined, its tool_use blocks
// as tool_calls (arguments: the input, compact, as a JSON string).
func (w *chatWriter) assistant(content []byte, i int) *requestError {
	var a jsonscan.Array
	var b block
	w.sep()
	w.dst = append(w.dst, `{"role":"assistant","content":"`...)
	text := len(w.dst)
	calls := 0
	a.Reset(content)
	for j := 0; ; j++ {
		raw, ok := a.Next()
		if !ok {
			break
		}
		if rerr := b.readAt(raw, i, j); rerr != nil {
			return rerr
		}
		switch b.typ {
		case blkText:
			w.dst = append(w.dst, b.text[1:len(b.text)-1]...)
		case blkToolUse:
			if !jsonscan.IsString(b.id) || !jsonscan.IsString(b.name) {
				return badRequest(blockField(i, j, ""), "a tool_use block needs id and name strings.")
			}
			if b.input != nil && b.input[0] != '{' {
				return badRequest(blockField(i, j, ".input"), "input must be an object.")
			}
			calls++
		case blkThinking:
		case blkDocument, blkImage, blkToolResult:
			return badRequest(blockField(i, j, ""), "this block is not supported in an assistant message"+msgChatNote)
		default:
			return badRequest(blockField(i, j, ".type"), "this content block type is not supported"+msgChatNote)
		}
	}
	if calls > 0 && len(w.dst) == text {
		// Tool calls alone: content null, as OpenAI writes such a message.
		w.dst = append(w.dst[:text-1], "null"...)
	} else {
		w.dst = append(w.dst, '"')
	}
	if calls > 0 {
		w.dst = append(w.dst, `,"tool_calls":[`...)
		a.Reset(content)
		n := 0
		for {
			raw, ok := a.Next()
			if !ok {
				break
			}
			if b.read(raw); b.typ != blkToolUse {
				continue
			}
			if n > 0 {
				w.dst = append(w.dst, ',')
			}
			n++
			w.dst = append(w.dst, `{"id":`...)
			w.dst = append(w.dst, b.id...)
			w.dst = append(w.dst, `,"type":"function","function":{"name":`...)
			w.dst = append(w.dst, b.name...)
			w.dst = append(w.dst, `,"arguments":`...)
			if b.input == nil {
				w.dst = append(w.dst, `"{}"`...)
			} else {
				w.scratch = jsonscan.AppendCompact(w.scratch[:0], b.input)
				w.dst = jsonscan.AppendQuote(w.dst, b2s(w.scratch))
			}
			w.dst = append(w.dst, `}}`...)
		}
		w.dst = append(w.dst, ']')
	}
	w.dst = append(w.dst, '}')
	return nil
}

// appendMsgFormat appends output_config's format (or the beta's output_format,
// when output_config names none), a JSON schema the answer's text must follow (the
// Anthropic SDKs' structured outputs), as chat's response_format json_schema; its
// other members (effort) are left out. It goes without strict: OpenAI's strict mode
// refuses schemas Anthropic takes (an optional property), and vLLM holds its output to
// the schema either way. A format of another type is refused.
func appendMsgFormat(dst, oc, beta []byte) ([]byte, *requestError) {
	var f []byte
	param := "output_config.format"
	if len(oc) > 0 && oc[0] == '{' {
		f, _ = jsonscan.Field(oc, "format")
	}
	if (len(f) == 0 || jsonscan.IsNull(f)) && len(beta) > 0 {
		f, param = beta, "output_format"
	}
	if len(f) == 0 || jsonscan.IsNull(f) {
		return dst, nil
	}
	typ, _ := jsonscan.Field(f, "type")
	schema, _ := jsonscan.Field(f, "schema")
	if !isString(typ, "json_schema") || len(schema) == 0 || schema[0] != '{' {
		return dst, badRequest(param, param+" must be a json_schema with a schema object.")
	}
	dst = append(dst, `,"response_format":{"type":"json_schema","json_schema":{"name":"output","schema":`...)
	dst = append(dst, schema...)
	return append(dst, `}}`...), nil
}

// appendMsgTools appends tools as chat function tools; has reports whether there was
// one. Anthropic's server tools (a type other than custom) are refused.
func appendMsgTools(dst, tools []byte) (out []byte, has bool, rerr *requestError) {
	var a jsonscan.Array
	if !a.Reset(tools) {
		return dst, false, errMsgTools
	}
	at := len(dst)
	dst = append(dst, `,"tools":[`...)
	for i := 0; ; i++ {
		t, ok := a.Next()
		if !ok {
			break
		}
		var typ, name, desc, schema, strict []byte
		var it jsonscan.Iter
		if it.Reset(t) != nil {
			return dst, false, badRequest(toolField(i, ""), "a tool must be an object.")
		}
		for {
			k, v, ok := it.Next()
			if !ok {
				break
			}
			if jsonscan.IsNull(v) {
				continue
			}
			switch string(k) {
			case "type":
				typ = v
			case "name":
				name = v
			case "description":
				desc = v
			case "input_schema":
				schema = v
			case "strict":
				strict = v
			}
		}
		if typ != nil && !isString(typ, "custom") {
			return dst, false, badRequest(toolField(i, ""), "Anthropic's server tools (web search, code execution, bash, text editor, computer use …) are not supported"+msgChatNote)
		}
		if !jsonscan.IsString(name) {
			return dst, false, badRequest(toolField(i, ".name"), "name must be a string.")
		}
		if has {
			dst = append(dst, ',')
		}
		has = true
		dst = append(dst, `{"type":"function","function":{"name":`...)
		dst = append(dst, name...)
		if jsonscan.IsString(desc) {
			dst = append(dst, `,"description":`...)
			dst = append(dst, desc...)
		}
		dst = append(dst, `,"parameters":`...)
		if len(schema) > 0 && schema[0] == '{' {
			dst = append(dst, schema...)
		} else {
			dst = append(dst, strEmptySchema...)
		}
		if string(strict) == "true" {
			// Anthropic's strict tool use: chat's strict function, the client's
			// schema held to it (OpenAI's rules for such schemas are the client's
			// to meet, as Anthropic's are).
			dst = append(dst, `,"strict":true`...)
		}
		dst = append(dst, `}}`...)
	}
	if !has {
		// An empty list: no tools member (OpenAI refuses "tools": []).
		return dst[:at], false, nil
	}
	return append(dst, ']'), true, nil
}

// appendMsgToolChoice appends tool_choice in chat's form, and parallel_tool_calls
// false for disable_parallel_tool_use. Without tools, only the latter goes: chat
// refuses a tool_choice without tools.
func appendMsgToolChoice(dst, tc []byte, hasTools bool) ([]byte, *requestError) {
	if tc[0] != '{' {
		return dst, errMsgToolChoice
	}
	typ, _ := jsonscan.Field(tc, "type")
	var choice string
	switch {
	case isString(typ, "auto"):
		choice = `"auto"`
	case isString(typ, "any"):
		choice = `"required"`
	case isString(typ, "none"):
		choice = `"none"`
	case isString(typ, "tool"):
		name, _ := jsonscan.Field(tc, "name")
		if !jsonscan.IsString(name) {
			return dst, errMsgChoiceName
		}
		if hasTools {
			dst = append(dst, `,"tool_choice":{"type":"function","function":{"name":`...)
			dst = append(append(dst, name...), `}}`...)
		}
	default:
		return dst, errMsgToolChoice
	}
	if hasTools && choice != "" {
		dst = append(append(dst, `,"tool_choice":`...), choice...)
	}
	if v, _ := jsonscan.Field(tc, "disable_parallel_tool_use"); hasTools && string(v) == "true" {
		dst = append(dst, `,"parallel_tool_calls":false`...)
	}
	return dst, nil
}

// stopReason is the Messages API's stop_reason for a chat finish_reason (raw JSON).
func stopReason(finish []byte) string {
	switch string(finish) {
	case `"length"`:
		return "max_tokens"
	case `"tool_calls"`, `"function_call"`:
		return "tool_use"
	case `"content_filter"`:
		return "refusal"
	}
	return "end_turn"
}

// stopSequence is the stop sequence that ended a chat answer of finish_reason finish
// (raw JSON), a JSON string, or nil: vLLM's stop_reason (stopStr) names the stop
// string matched, which the Messages API answers as stop_reason stop_sequence and its
// stop_sequence. OpenAI's API names none: such an answer stays end_turn.
func stopSequence(finish, stopStr []byte) []byte {
	if string(finish) != `"stop"` || !jsonscan.IsString(stopStr) || len(stopStr) <= 2 {
		return nil
	}
	return stopStr
}

// calledStop is stop for an answer that called tools (called): tool_use where the
// chat answer said it stopped (OpenAI's finish_reason is stop when tool_choice forced
// a function), as Anthropic's answer that calls tools says, so that a client's tool
// loop runs them.
func calledStop(stop string, called bool) string {
	if called && stop == "end_turn" {
		return "tool_use"
	}
	return stop
}

// appendMsgUsage appends the Messages API's usage for u: input without the prompt
// cache's reads, which come apart.
func appendMsgUsage(dst []byte, u *Usage) []byte {
	cached := min(max(u.CachedInput, 0), max(u.Input, 0))
	dst = append(dst, `{"input_tokens":`...)
	dst = strconv.AppendInt(dst, max(u.Input, 0)-cached, 10)
	dst = append(dst, `,"cache_read_input_tokens":`...)
	dst = strconv.AppendInt(dst, cached, 10)
	dst = append(dst, `,"output_tokens":`...)
	dst = strconv.AppendInt(dst, max(u.Output, 0), 10)
	return append(dst, '}')
}

// appendMessagesAnswer appends the Messages API message for the chat completion
// chat; u is its usage as the chat call read it, model the backend's model (a raw
// JSON string). ok is false when chat is no chat completion.
func appendMessagesAnswer(dst, chat, model []byte, u *Usage) ([]byte, bool) {
	var c chatAnswer
	if !c.read(chat) {
		return dst, false
	}
	dst = append(dst, `{"id":"`...)
	dst = appendItemID(dst, "msg_")
	dst = append(dst, `","type":"message","role":"assistant","model":`...)
	dst = append(dst, model...)
	dst = append(dst, `,"content":[`...)
	n := 0
	text := c.content
	refused := !nonEmpty(text) && nonEmpty(c.refusal)
	if refused {
		// The model declined (chat's message.refusal): its words as the text, and
		// stop_reason refusal, as Anthropic's answer says it (no cache keeps it).
		text = c.refusal
	}
	if nonEmpty(text) {
		dst = append(dst, `{"type":"text","text":`...)
		dst = append(append(dst, text...), '}')
		n++
	}
	var a jsonscan.Array
	calls := 0
	if a.Reset(c.calls) {
		for {
			call, ok := a.Next()
			if !ok {
				break
			}
			id, _ := jsonscan.Field(call, "id")
			fn, _ := jsonscan.Field(call, "function")
			var name, args []byte
			if len(fn) > 0 && fn[0] == '{' {
				name, _ = jsonscan.Field(fn, "name")
				args, _ = jsonscan.Field(fn, "arguments")
			}
			if n > 0 {
				dst = append(dst, ',')
			}
			n++
			calls++
			dst = append(dst, `{"type":"tool_use","id":`...)
			if nonEmpty(id) {
				dst = append(dst, id...)
			} else {
				dst = append(appendItemID(append(dst, '"'), "toolu_"), '"')
			}
			dst = append(dst, `,"name":`...)
			if jsonscan.IsString(name) {
				dst = append(dst, name...)
			} else {
				dst = append(dst, strEmptyString...)
			}
			dst = append(dst, `,"input":`...)
			dst = appendToolInput(dst, args)
			dst = append(dst, '}')
		}
	}
	dst = append(dst, `],"stop_reason":"`...)
	stop := calledStop(stopReason(c.finish), calls > 0)
	seq := stopSequence(c.finish, c.stopStr)
	switch {
	case refused:
		stop = "refusal"
	case stop == "end_turn" && seq != nil:
		stop = "stop_sequence"
	default:
		seq = nil
	}
	dst = append(dst, stop...)
	dst = appendStopSeq(append(dst, `","stop_sequence":`...), seq)
	dst = append(dst, `,"usage":`...)
	dst = appendMsgUsage(dst, u)
	return append(dst, '}'), true
}

// appendStopSeq appends a message's stop_sequence: seq, a JSON string, or null.
func appendStopSeq(dst, seq []byte) []byte {
	if seq == nil {
		return append(dst, "null"...)
	}
	return append(dst, seq...)
}

// appendToolInput appends a tool call's arguments (a raw JSON string) as a tool_use
// block's input: the object they hold, or {} for arguments that are none.
func appendToolInput(dst, args []byte) []byte {
	if !jsonscan.IsString(args) {
		return append(dst, strEmptyObject...)
	}
	at := len(dst)
	dst, ok := jsonscan.AppendUnquote(dst, args)
	if v := dst[at:]; !ok || !jsonscan.Valid(v) || v[jsonscan.SkipSpace(v, 0)] != '{' {
		return append(dst[:at], strEmptyObject...)
	}
	return dst
}

// The names of the events a bridged Messages stream yields.
var (
	evMsgStart   = []byte("message_start")
	evBlockStart = []byte("content_block_start")
	evBlockDelta = []byte("content_block_delta")
	evBlockStop  = []byte("content_block_stop")
	evMsgDelta   = []byte("message_delta")
	evMsgStop    = []byte("message_stop")
	evMsgError   = []byte("error")
)

// Blocks a bridged Messages stream has open.
const (
	openNone = iota
	openText
	openTool
)

// msgStream is a chat completions stream read as a Messages API stream: each chat
// chunk becomes zero or more events, each yielded by one Next, written into one
// reused buffer (relayQueue). One content block is open at a time: text, or a tool
// call, which chat streams one after the other.
type msgStream struct {
	relayQueue
	model []byte
	stop  string
	// stopSeq is the stop sequence that ended the answer (stopSequence), copied
	// from its chunk, or empty.
	stopSeq []byte
	// refused is set once a chunk carried the model's refusal (delta.refusal).
	refused  bool
	usage    Usage
	hasUsage bool
	// blocks counts the content blocks begun; open is the kind of the last, when
	// open, tool its chat tool call index.
	blocks     int
	open       int
	tool       int64
	toolsBegun []int64
	// held are the tool calls begun while another was open, as a server that
	// interleaves parallel calls' pieces (0, 1, 0, 1) streams them: the Messages
	// API's blocks come one after the other, so each is written whole, in order,
	// when the open one closes (flushHeld).
	held []heldCall
	// openArgs are the arguments of the tool call open so far, joined as heldCall's
	// are: a call that begins while they are a whole JSON value closes it (a server
	// streaming calls one after the other), else it is held.
	openArgs []byte
	// unnamed is set while the tool call open has no name yet (its first delta named
	// none: some servers send the id and the first arguments before the name): its
	// block is not begun, its pieces wait in openArgs and its id in openID until the
	// name comes or it ends (startUnnamed).
	unnamed bool
	openID  []byte
	scratch []byte
}

// heldCall is a tool call held back while another is open: its index, its id and
// name (raw JSON strings, or empty; the name set when it comes after the id), and
// its arguments so far, the pieces' strings joined without their quotes (each piece
// a whole JSON string, so no escape is cut).
type heldCall struct {
	n        int64
	id, name []byte
	args     []byte
}

var msgStreamPool = sync.Pool{New: func() any { return &msgStream{relayQueue: relayQueue{pend: make([]byte, 0, 1024)}} }}

// Close implements Events.
func (s *msgStream) Close() error {
	err := s.closeInner()
	s.reset()
	msgStreamPool.Put(s)
	return err
}

// reset readies s for the pool; a buffer one long stream grew goes with it, the
// buffers of the calls it held too (flushHeld keeps them for the next).
func (s *msgStream) reset() {
	s.relayQueue.reset()
	held := s.held[:cap(s.held)]
	for i := range held {
		h := &held[i]
		h.id, h.name, h.args = trimBuf(h.id), trimBuf(h.name), trimBuf(h.args)
	}
	*s = msgStream{relayQueue: s.relayQueue, model: trimBuf(s.model), scratch: trimBuf(s.scratch), stopSeq: trimBuf(s.stopSeq),
		toolsBegun: s.toolsBegun[:0], held: s.held[:0], openArgs: trimBuf(s.openArgs), openID: trimBuf(s.openID)}
	if cap(s.held) > maxOpenCalls {
		s.held = nil
	}
	if cap(s.toolsBegun) > maxOpenCalls {
		s.toolsBegun = nil
	}
}

// Next implements Events.
func (s *msgStream) Next(ev *Event) error { return s.pull(ev, s) }

// streamUsage implements relay: message_delta carries the usage.
func (s *msgStream) streamUsage() (Usage, bool) { return s.usage, s.hasUsage }

// begin implements relay: message_start, once, at the first chunk (Azure's prompt
// filter chunk aside), whose usage, when it has one (the usage on every chunk the
// stream asked for: vLLM's role chunk carries the prompt's tokens), is the
// message's so far, as message_delta writes the final one; else it says 0 tokens.
func (s *msgStream) begin() {
	if s.begun {
		return
	}
	s.begun = true
	s.pend = append(s.pend, `{"type":"message_start","message":{"id":"`...)
	s.pend = appendItemID(s.pend, "msg_")
	s.pend = append(s.pend, `","type":"message","role":"assistant","model":`...)
	s.pend = append(s.pend, s.model...)
	s.pend = append(s.pend, `,"content":[],"stop_reason":null,"stop_sequence":null,"usage":`...)
	if s.hasUsage {
		s.pend = appendMsgUsage(s.pend, &s.usage)
	} else {
		s.pend = append(s.pend, `{"input_tokens":0,"output_tokens":0}`...)
	}
	s.pend = append(s.pend, `}}`...)
	s.mark(evMsgStart, false)
}

// closeBlock writes content_block_stop for the block open, if any (a tool call
// still waiting for its name begun first, without one: startUnnamed), then the
// tool calls held back while it was open that are ready (flushHeld).
func (s *msgStream) closeBlock() {
	if s.open == openNone {
		return
	}
	if s.unnamed {
		s.startUnnamed(nil)
	}
	s.open = openNone
	s.pend = append(s.pend, `{"type":"content_block_stop","index":`...)
	s.pend = strconv.AppendInt(s.pend, int64(s.blocks-1), 10)
	s.pend = append(s.pend, '}')
	s.mark(evBlockStop, false)
	s.flushHeld(flushReady)
}

// How far flushHeld writes the tool calls held: up to the first not ready (its
// arguments not a whole JSON value yet, or no name yet: its pieces or its name may
// still come), up to the first not done (its arguments not whole: a call begins
// after them, so one without a name goes out without it), or all.
const (
	flushReady = iota
	flushDone
	flushAll
)

// flushHeld writes the tool calls held back as whole tool_use blocks, in the order
// they began: each its start, its arguments in one input_json_delta, its stop; as
// far as until says, the rest staying held. A piece that comes for one written is
// errToolReopened, as for any call closed.
func (s *msgStream) flushHeld(until int) {
	w := 0
	for w < len(s.held) {
		h := &s.held[w]
		if until == flushReady && !nonEmpty(h.name) {
			break
		}
		if until != flushAll {
			var whole bool
			if s.scratch, whole = wholeJSON(s.scratch[:0], h.args); !whole {
				break
			}
		}
		s.toolsBegun = append(s.toolsBegun, h.n)
		s.startTool(h.n, h.id, h.name)
		if len(h.args) > 0 {
			s.scratch = append(append(append(s.scratch[:0], '"'), h.args...), '"')
			s.delta("input_json_delta", "partial_json", s.scratch)
		}
		s.open = openNone
		s.pend = append(s.pend, `{"type":"content_block_stop","index":`...)
		s.pend = strconv.AppendInt(s.pend, int64(s.blocks-1), 10)
		s.pend = append(s.pend, '}')
		s.mark(evBlockStop, false)
		w++
	}
	if w == 0 {
		return
	}
	// Those written go; their buffers are kept for the next (cleared, not freed).
	done := len(s.held) - w
	for i := range w {
		s.held[i].id, s.held[i].name, s.held[i].args = s.held[i].id[:0], s.held[i].name[:0], s.held[i].args[:0]
	}
	for i := range done {
		s.held[i], s.held[w+i] = s.held[w+i], s.held[i]
	}
	s.held = s.held[:done]
}

// beginTool begins chat tool call n as the block open, id and name its raw JSON
// strings: its tool_use block at once when it has a name, else once the name comes
// (or it ends: startUnnamed), the block open before it closed now either way.
func (s *msgStream) beginTool(n int64, id, name []byte) {
	s.toolsBegun = append(s.toolsBegun, n)
	s.openArgs = s.openArgs[:0]
	if nonEmpty(name) {
		s.startTool(n, id, name)
		return
	}
	s.closeBlock()
	s.open, s.tool, s.unnamed = openTool, n, true
	s.openID = append(s.openID[:0], id...)
}

// startUnnamed begins the block of the tool call open that waited for its name,
// name (nil when it ends without one): its start, then the pieces of its arguments
// that came so far in one input_json_delta.
func (s *msgStream) startUnnamed(name []byte) {
	s.unnamed, s.open = false, openNone
	s.startTool(s.tool, s.openID, name)
	if len(s.openArgs) > 0 {
		s.scratch = append(append(append(s.scratch[:0], '"'), s.openArgs...), '"')
		s.delta("input_json_delta", "partial_json", s.scratch)
	}
}

// startTool begins a tool_use block for chat tool call n, id and name its raw JSON
// strings (an id made up when empty, an empty name when none).
func (s *msgStream) startTool(n int64, id, name []byte) {
	s.openBlock(openTool)
	s.tool = n
	s.pend = append(s.pend, `{"type":"tool_use","id":`...)
	if nonEmpty(id) {
		s.pend = append(s.pend, id...)
	} else {
		s.pend = append(appendItemID(append(s.pend, '"'), "toolu_"), '"')
	}
	s.pend = append(s.pend, `,"name":`...)
	if jsonscan.IsString(name) {
		s.pend = append(s.pend, name...)
	} else {
		s.pend = append(s.pend, strEmptyString...)
	}
	s.pend = append(s.pend, `,"input":{}}}`...)
	s.mark(evBlockStart, true)
}

// heldAt is the index in s.held of chat tool call n, or -1.
func (s *msgStream) heldAt(n int64) int {
	for i := range s.held {
		if s.held[i].n == n {
			return i
		}
	}
	return -1
}

// openBlock closes the block open and begins one of kind k: content_block_start's
// head, the block itself for the caller to write.
func (s *msgStream) openBlock(k int) {
	s.closeBlock()
	if k != openTool && len(s.held) > 0 {
		// Text after tool calls (rare): the calls held go first.
		s.flushHeld(flushAll)
	}
	s.open = k
	s.pend = append(s.pend, `{"type":"content_block_start","index":`...)
	s.pend = strconv.AppendInt(s.pend, int64(s.blocks), 10)
	s.pend = append(s.pend, `,"content_block":`...)
	s.blocks++
}

// delta writes a content_block_delta of the block open: typ its delta's type, key
// and v (a raw JSON string) its piece.
func (s *msgStream) delta(typ, key string, v []byte) {
	s.pend = append(s.pend, `{"type":"content_block_delta","index":`...)
	s.pend = strconv.AppendInt(s.pend, int64(s.blocks-1), 10)
	s.pend = append(s.pend, `,"delta":{"type":"`...)
	s.pend = append(s.pend, typ...)
	s.pend = append(s.pend, `","`...)
	s.pend = append(s.pend, key...)
	s.pend = append(s.pend, `":`...)
	s.pend = append(s.pend, v...)
	s.pend = append(s.pend, `}}`...)
	s.mark(evBlockDelta, true)
}

// take implements relay: the message's usage is the last chunk's that has one: the
// usage chunk's, or, with usage on every chunk, the latest, never a sum.
func (s *msgStream) take(iev *Event, _ *chatChunk) {
	if iev.HasUsage {
		s.usage, s.hasUsage = iev.Usage, true
	}
}

// choice implements relay: the stop reason is the finish_reason's; the text is the
// delta's content, or its refusal when it has none (the stop reason then refusal),
// and its tool calls follow.
func (s *msgStream) choice(c *chatChoice) error {
	if c.finish != nil {
		s.stop = stopReason(c.finish)
		s.stopSeq = append(s.stopSeq[:0], stopSequence(c.finish, c.stopStr)...)
	}
	content := c.content
	if !nonEmpty(content) && nonEmpty(c.refusal) {
		content, s.refused = c.refusal, true
	}
	if nonEmpty(content) {
		if s.open != openText {
			s.openBlock(openText)
			s.pend = append(s.pend, `{"type":"text","text":""}}`...)
			s.mark(evBlockStart, false)
		}
		s.delta("text_delta", "text", content)
	}
	return readCalls(c.calls, s)
}

// callDelta implements callRelay: a call not begun begins a tool_use block (the one
// open closed), a piece of its arguments is an input_json_delta. Adding to a call
// whose block was closed is errToolReopened.
//
// A call whose first delta names no tool (some servers and tool parsers send the id,
// and even the first arguments, before the name) waits for its name, as the
// client's tool_use block must name its tool at its start: when open, its block
// begins once the name comes, the pieces held then in one input_json_delta, the
// rest streamed (beginTool); when held behind another, it takes the name and is
// written whole when its turn comes, those after it waiting behind it (flushHeld). A
// call done before its name comes (its arguments whole as the next call begins,
// text after it, the stream's end) goes out then with an empty name, as one never
// named always did; a name that comes for a call done is dropped, as is any delta
// without arguments for it.
func (s *msgStream) callDelta(n int64, numbered bool, id, name, args []byte) error {
	switch {
	case numbered:
	case nonEmpty(id) || s.open != openTool:
		// A server that numbers no calls: a call with an id begins one.
		n = int64(len(s.toolsBegun))
		for _, t := range s.toolsBegun {
			n = max(n, t+1)
		}
	default:
		n = s.tool
	}
	switch h := s.heldAt(n); {
	case s.open == openTool && s.tool == n:
		if s.unnamed && nonEmpty(name) {
			s.startUnnamed(name)
		}
	case h >= 0:
		// Held back: its pieces (and its name, when it came after its id) join
		// until its block is written, which may be now when no block is open and
		// it is first.
		c := &s.held[h]
		if !nonEmpty(c.name) && nonEmpty(name) {
			c.name = append(c.name[:0], name...)
		}
		if jsonscan.IsString(args) {
			c.args = append(c.args, args[1:len(args)-1]...)
		}
		if s.open == openNone {
			s.flushHeld(flushReady)
		}
		return nil
	case containsInt(s.toolsBegun, n):
		if !nonEmpty(args) {
			return nil
		}
		return errToolReopened
	case len(s.toolsBegun)+len(s.held) >= maxOpenCalls:
		return errTooManyCalls
	case s.open == openTool && s.openWhole() && len(s.held) == 0:
		// The call open is whole: this one follows it.
		s.closeBlock()
		s.beginTool(n, id, name)
	case s.open == openTool || len(s.held) > 0:
		// Another call is open and not whole (its pieces interleave with this
		// one's), or calls are held before it: this one waits its turn.
		if s.open == openTool && s.openWhole() {
			// The open one is whole: it closes, the held ones whole go after it.
			s.closeBlock()
		}
		if s.open == openNone {
			// A call begins after them: the held ones first whose arguments are
			// whole are done, those still without a name too.
			s.flushHeld(flushDone)
		}
		if len(s.held) < cap(s.held) {
			s.held = s.held[:len(s.held)+1]
		} else {
			s.held = append(s.held, heldCall{})
		}
		c := &s.held[len(s.held)-1]
		c.n, c.id, c.name, c.args = n, append(c.id[:0], id...), c.name[:0], c.args[:0]
		if jsonscan.IsString(name) {
			c.name = append(c.name, name...)
		}
		if jsonscan.IsString(args) {
			c.args = append(c.args, args[1:len(args)-1]...)
		}
		return nil
	default:
		s.beginTool(n, id, name)
	}
	if nonEmpty(args) {
		s.openArgs = append(s.openArgs, args[1:len(args)-1]...)
		if !s.unnamed {
			s.delta("input_json_delta", "partial_json", args)
		}
	}
	return nil
}

// openWhole reports whether the arguments of the tool call open are a whole JSON
// value so far.
func (s *msgStream) openWhole() bool {
	var ok bool
	s.scratch, ok = wholeJSON(s.scratch[:0], s.openArgs)
	return ok
}

func containsInt(s []int64, n int64) bool {
	for _, v := range s {
		if v == n {
			return true
		}
	}
	return false
}

// finish ends the message: the block open closed, message_delta with the stop reason
// and the usage, message_stop.
func (s *msgStream) finish() {
	s.begin()
	s.closeBlock()
	s.flushHeld(flushAll)
	stop := s.stop
	if stop == "" {
		stop = "end_turn"
	}
	stop = calledStop(stop, len(s.toolsBegun) > 0)
	var seq []byte
	switch {
	case s.refused:
		stop = "refusal"
	case stop == "end_turn" && len(s.stopSeq) > 0:
		stop, seq = "stop_sequence", s.stopSeq
	}
	s.pend = append(s.pend, `{"type":"message_delta","delta":{"stop_reason":"`...)
	s.pend = append(s.pend, stop...)
	s.pend = appendStopSeq(append(s.pend, `","stop_sequence":`...), seq)
	s.pend = append(s.pend, `},"usage":`...)
	if s.hasUsage {
		s.pend = appendMsgUsage(s.pend, &s.usage)
	} else {
		s.pend = append(s.pend, `{"output_tokens":0}`...)
	}
	s.pend = append(s.pend, '}')
	s.mark(evMsgDelta, false)
	s.marks[len(s.marks)-1].usage = true
	s.pend = append(s.pend, `{"type":"message_stop"}`...)
	s.mark(evMsgStop, false)
	s.ended = true
}

// fail ends the stream at a chat error object (data) with the Messages API's error
// event, its message the upstream's. The inner stream is not read on: an upstream
// that stops after its error would hold the client's stream open, and closing it
// unread gives up its connection, as the Responses bridge's end at an error does.
func (s *msgStream) fail(data []byte) {
	s.scratch = append(s.scratch[:0], "The upstream model server failed in the middle of the answer."...)
	e, _ := jsonscan.Field(data, "error")
	if len(e) > 0 && e[0] == '{' {
		e, _ = jsonscan.Field(e, "message")
	}
	if nonEmpty(e) {
		if m, ok := jsonscan.AppendUnquote(s.scratch[:0], e); ok {
			s.scratch = m
		}
	}
	s.pend = AppendAnthropicError(s.pend, "api_error", b2s(s.scratch), "")
	s.mark(evMsgError, false)
	s.marks[len(s.marks)-1].err = true
	s.ended = true
}

var (
	_ Events    = (*msgStream)(nil)
	_ relay     = (*msgStream)(nil)
	_ callRelay = (*msgStream)(nil)
)
