package providers

import (
	"bytes"
	"encoding/base64"
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/tollgate/tollgate/internal/jsonscan"
	"github.com/valyala/fasthttp"
)

// The Responses API bridge serves OpenAI's Responses API (POST /v1/responses) on a
// backend that has none, as LiteLLM's bridge does: the call goes up as a chat
// completions call, through the backend's own Send (its pool, retries, drop_params,
// the Anthropic translation, usage and pricing all apply as to any chat call), and
// the chat answer comes back as a response object, or a stream of the Responses
// API's events. It is stateless: nothing is stored, so previous_response_id,
// conversation, background and stored prompts are refused, and the response IDs it
// makes name nothing the gateway can find again.

// NativeResponses reports whether the backend's upstream serves the Responses API
// itself (an openai backend with responses_api native, the default, and mock), so
// that its responses are stored upstream and their IDs name them; a backend that
// serves it through the bridge stores nothing.
func (b *Backend) NativeResponses() bool { return b.native }

// nativeResponses reports whether a backend of config c serves the Responses API
// through its upstream's own /responses.
func nativeResponses(c *Config) bool {
	switch c.Provider {
	case "mock":
		return true
	case "openai":
		return c.ResponsesAPI != ResponsesChat
	}
	return false
}

// The values of a backend's responses_api.
const (
	// ResponsesNative sends a Responses API call to the upstream's /responses.
	ResponsesNative = "native"
	// ResponsesChat serves it through the upstream's chat completions API.
	ResponsesChat = "chat"
)

func (c *Config) validateResponsesAPI() []error {
	switch c.ResponsesAPI {
	case "":
		return nil
	case ResponsesNative:
		switch c.Provider {
		case "anthropic":
			return []error{fieldErr("responses_api", "must be chat for provider anthropic: the Messages API has no Responses API (leave it out)")}
		case "azure":
			return []error{fieldErr("responses_api", "must be chat for provider azure: deployment URLs have no Responses API (leave it out, or configure Azure's v1 API as provider openai)")}
		}
	case ResponsesChat:
		if c.Provider == "mock" {
			return []error{fieldErr("responses_api", "must be native for provider mock, which serves the Responses API itself (leave it out)")}
		}
	default:
		return []error{fieldErr("responses_api", "must be native or chat")}
	}
	return nil
}

// errBridgePrevious refuses a call that continues a stored response on a backend
// that stores none: the gateway skips such a backend as a fallback.
var errBridgePrevious = &UnsupportedError{API: "chat completions", Kind: Responses, Param: "previous_response_id",
	Detail: "This model is served through a chat completions API, which stores no responses: send the whole conversation in input instead of previous_response_id."}

// bridge serves a Responses API call on b through its chat completions API. call is
// restored before it returns: the gateway sees its Responses call unchanged.
func (b *Backend) bridge(call *Call, out *fasthttp.Response, res *Result) error {
	src := call.Body
	if len(b.cfg.DropParams) > 0 {
		// Members drop_params names go before the translation reads them, as for any
		// call: max_output_tokens, text or reasoning as much as temperature.
		dropped := bodyPool.Get().(*[]byte)
		defer putBody(dropped)
		*dropped = dropFields(append((*dropped)[:0], src...), b.cfg.DropParams)
		src = *dropped
	}
	buf := bodyPool.Get().(*[]byte)
	r := &call.bridgeReq
	*r = respRequest{plainHistory: !b.takesThinking()}
	body, sp, rerr, prev := appendBridgeRequest((*buf)[:0], src, r, b.bridgeModel(call), call.Stream, b.bridgeUsage)
	*buf = body
	switch {
	case prev:
		putBody(buf)
		return errBridgePrevious
	case rerr != nil:
		putBody(buf)
		writeOpenAIError(out, 400, strInvalidRequest, nil, rerr.param, []byte(rerr.msg))
		return errRefusedRequest
	}
	kind, orig, model, opts, key, usage := call.Kind, call.Body, call.Model, call.StreamOptions, call.CacheKey, call.IncludeUsage
	call.Kind, call.Body, call.bridged = Chat, body, r
	call.Model, call.StreamOptions, call.CacheKey = sp.model, sp.streamOptions, sp.cacheKey
	// A stream asks for its usage itself (stream_options), when the backend takes it.
	call.IncludeUsage = call.Stream && b.bridgeUsage
	err := b.Send(call, out, res)
	call.Kind, call.Body, call.bridged = kind, orig, nil
	call.Model, call.StreamOptions, call.CacheKey, call.IncludeUsage = model, opts, key, usage
	// The chat answer's id names no stored response: nothing for the gateway to tag.
	res.IDEnds = IDEnds{}
	if err != nil {
		putBody(buf)
		return err
	}
	if res.Stream != nil {
		// r views the request, which the stream's echo copies now.
		s := acquireBridgeStream()
		s.in, s.chat = res.Stream, buf
		s.echo.render(r)
		s.model = append(s.model[:0], b.quotedModel...)
		res.Stream = s
		return nil
	}
	// Send turned the answer into a response object (bridgeAnswer) before judging it.
	putBody(buf)
	return nil
}

// ThinkingRoomFor is ThinkingRoom for a call of kind: a Responses API call to a
// backend that serves it through the bridge counts the room of the chat request it
// becomes (its reasoning.effort read as reasoning_effort, its max_output_tokens as
// max_tokens); other kinds than chat and Responses have none.
func (b *Backend) ThinkingRoomFor(kind Kind, body []byte) int64 {
	switch {
	case kind == Chat:
		return b.ThinkingRoom(body)
	case kind != Responses || b.native:
		return 0
	}
	if _, ok := b.p.(*anthropic); !ok {
		return 0
	}
	if len(b.cfg.DropParams) > 0 {
		dropped := bodyPool.Get().(*[]byte)
		defer putBody(dropped)
		*dropped = dropFields(append((*dropped)[:0], body...), b.cfg.DropParams)
		body = *dropped
	}
	buf := bodyPool.Get().(*[]byte)
	defer putBody(buf)
	r := respRequest{plainHistory: !b.takesThinking()}
	chat, _, rerr, prev := appendBridgeRequest((*buf)[:0], body, &r, b.quotedModel, false, false)
	*buf = chat
	if rerr != nil || prev {
		return 0
	}
	return b.ThinkingRoom(chat)
}

// takesThinking reports whether the backend's chat API takes thinking_blocks on an
// assistant message: the Anthropic translation's. Another gets none, which an
// OpenAI-compatible server might refuse as an unknown member.
func (b *Backend) takesThinking() bool {
	_, ok := b.p.(*anthropic)
	return ok
}

// bridgeModel is the model value the chat body carries: the client's, which the
// provider replaces as in any chat call, or the backend's.
func (b *Backend) bridgeModel(call *Call) []byte {
	if m := call.Model; m[0] >= 0 && m[1] > m[0] && m[1] <= len(call.Body) {
		return call.Body[m[0]:m[1]]
	}
	return b.quotedModel
}

// bridgeAnswer turns out's 2xx chat completion into the Responses API's response
// object, before Send judges the attempt: an answer it cannot read is ErrBadResponse.
// An answer holding an error object (a router's 200 that failed) goes as it came.
func (b *Backend) bridgeAnswer(r *respRequest, out *fasthttp.Response, res *Result) error {
	if out.StatusCode() < 200 || out.StatusCode() > 299 {
		return nil
	}
	e := bridgeEchoPool.Get().(*bridgeEcho)
	e.render(r)
	p := bodyPool.Get().(*[]byte)
	resp, ok := appendBridgeAnswer((*p)[:0], out.Body(), e, b.quotedModel, &res.Usage)
	e.release()
	if !ok {
		*p = resp
		putBody(p)
		if hasError(out.Body()) {
			return nil
		}
		return ErrBadResponse
	}
	if cap(resp) > maxPooledBuffer {
		// setAnswer's rule: a large body is let go once written.
		out.SetBodyRaw(resp)
		*p = make([]byte, 0, 4096)
	} else {
		*p = out.SwapBody(resp)[:0]
	}
	putBody(p)
	out.Header.SetContentTypeBytes(strJSON)
	return nil
}

// hasError reports whether a chat answer is an object with a non-null error member.
func hasError(body []byte) bool {
	_, isError := scanAnswer(body, &Usage{})
	return isError
}

// respRequest holds the raw members of a Responses API request the bridge reads,
// views of the body; the last member of a name wins, as in the decoders upstreams
// use. A null member is taken as absent.
type respRequest struct {
	model, input, instructions, tools, toolChoice, parallel, text, reasoning, maxOut []byte
	temperature, topP, user, safety, metadata, tier, cacheKey, topLogprobs           []byte
	prevID, conversation, prompt                                                     []byte
	background                                                                       bool
	// moreTools is set when input has an additional_tools item.
	moreTools bool
	// plainHistory is set for a backend whose chat API takes no thinking_blocks (all
	// but Anthropic's translation): reasoning items are left out whole.
	plainHistory bool
}

// The refusals of the request translation. Messages name fields, never their values.
var (
	errBridgeJSON   = badRequest("", "We could not parse the JSON body of your request.")
	errBridgeInput  = badRequest("input", "input is required: this model is served through a chat completions API, which takes the whole conversation in each request.")
	errBridgeEmpty  = badRequest("input", "input must hold at least one message.")
	errBridgeBg     = badRequest("background", "background is not supported: this model is served through a chat completions API, which stores no responses; send background: false.")
	errBridgeConv   = badRequest("conversation", "conversation is not supported: this model is served through a chat completions API, which stores no conversations; send the whole conversation in input.")
	errBridgePrompt = badRequest("prompt", "prompt (a stored prompt template) is not supported: this model is served through a chat completions API; send instructions and input instead.")
	errBridgeInstr  = badRequest("instructions", "instructions must be a string.")
	errBridgeMax    = badRequest("max_output_tokens", "max_output_tokens must be a whole number of at least 1.")
	errBridgeText   = badRequest("text", "text must be an object, such as {\"format\":{\"type\":\"text\"}}.")
	errBridgeReasn  = badRequest("reasoning", "reasoning must be an object, such as {\"effort\":\"low\"}.")
	errBridgeTools  = badRequest("tools", "tools must be a list of tools.")
	errBridgeFmt    = badRequest("text.format", "text.format must be an object with type text, json_object or json_schema.")
	errBridgeFmtT   = badRequest("text.format.type", "text.format.type must be text, json_object or json_schema.")
	errBridgeName   = badRequest("text.format.name", "text.format.name is required for a json_schema format.")
	errBridgeSchem  = badRequest("text.format.schema", "text.format.schema must be a JSON schema object.")
	errBridgeTC     = badRequest("tool_choice", "tool_choice must be auto, none, required, {\"type\":\"function\",\"name\":...} or {\"type\":\"custom\",\"name\":...}: this model is served through a chat completions API, which can force a function or custom tool only.")
	errBridgeWS2    = badRequest("tools", "Only one web search tool may be given.")
)

// keyBuf holds a key's name decoded: the longest name the bridge reads, 22 bytes,
// fits whole even written in \uXXXX escapes.
type keyBuf [6 * 24]byte

// keyName is the raw key k with its escapes decoded into buf, when it has any; nil
// for a key too long to be a name the bridge reads.
func keyName(k []byte, buf *keyBuf) []byte {
	if bytes.IndexByte(k, '\\') < 0 {
		return k
	}
	if len(k) > len(buf) {
		return nil
	}
	u, ok := jsonscan.AppendUnescape(buf[:0], k)
	if !ok {
		return nil
	}
	return u
}

// read reads the members of a Responses API request body.
func (r *respRequest) read(body []byte) *requestError {
	var it jsonscan.Iter
	if it.Reset(body) != nil {
		return errBridgeJSON
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
		switch string(keyName(k, &buf)) {
		case "model":
			r.model = v
		case "input":
			r.input = v
		case "instructions":
			r.instructions = v
		case "tools":
			r.tools = v
		case "tool_choice":
			r.toolChoice = v
		case "parallel_tool_calls":
			r.parallel = v
		case "text":
			r.text = v
		case "reasoning":
			r.reasoning = v
		case "max_output_tokens":
			r.maxOut = v
		case "temperature":
			r.temperature = v
		case "top_p":
			r.topP = v
		case "user":
			r.user = v
		case "safety_identifier":
			r.safety = v
		case "metadata":
			r.metadata = v
		case "service_tier":
			r.tier = v
		case "prompt_cache_key":
			r.cacheKey = v
		case "top_logprobs":
			r.topLogprobs = v
		case "previous_response_id":
			r.prevID = v
		case "conversation":
			r.conversation = v
		case "prompt":
			r.prompt = v
		case "background":
			r.background, _ = jsonscan.Bool(v)
		}
	}
	if it.Err() != nil || jsonscan.SkipSpace(body, it.End()) != len(body) {
		return errBridgeJSON
	}
	return nil
}

// bridgePassed are the members of a Responses API request, foreign to that API, that
// go into the chat body as they came because chat completions (or the
// OpenAI-compatible servers' chat, vLLM's and TGI's) has the same member. Every other
// member the bridge does not map is dropped: store, include, truncation,
// stream_options, max_tool_calls, background (false), metadata (echoed in the answer
// only: OpenAI's and Azure's chat refuse it without store, "The 'metadata' parameter
// is only allowed when 'store' is enabled", and the bridge stores nothing), and
// chat's own members that the Responses API spells otherwise or whose answer it
// cannot hold (messages, max_tokens, max_completion_tokens, response_format,
// reasoning_effort, verbosity, web_search_options, logprobs, n, modalities, audio,
// functions, function_call).
var bridgePassed = [...]string{"frequency_penalty", "presence_penalty", "logit_bias", "seed", "stop",
	"prediction", "prompt_cache_retention", "top_k", "min_p", "repetition_penalty"}

func passedToChat(k []byte) bool {
	for _, n := range bridgePassed {
		if string(k) == n {
			return true
		}
	}
	return false
}

// bridgeSpans are the spans in a chat body the bridge wrote that the call's own
// point at in the Responses body: model (quotes included), stream_options, and the
// prompt_cache_key string between its quotes.
type bridgeSpans struct {
	model, streamOptions, cacheKey [2]int
}

// appendBridgeRequest appends the chat completions body for the Responses API
// request body, read into r: model is the model value it carries, stream whether it
// streams, usage whether a stream asks for its usage (stream_options). A request chat
// cannot express gets a requestError naming the parameter; prev reports a
// previous_response_id, which no chat API can follow.
func appendBridgeRequest(dst, body []byte, r *respRequest, model []byte, stream, usage bool) (out []byte, sp bridgeSpans, rerr *requestError, prev bool) {
	start := len(dst)
	sp.streamOptions = [2]int{-1, -1}
	if rerr = r.read(body); rerr != nil {
		return dst, sp, rerr, false
	}
	switch {
	case r.prevID != nil:
		return dst, sp, nil, true
	case r.background:
		return dst, sp, errBridgeBg, false
	case r.conversation != nil:
		return dst, sp, errBridgeConv, false
	case r.prompt != nil:
		return dst, sp, errBridgePrompt, false
	case r.input == nil:
		return dst, sp, errBridgeInput, false
	case r.instructions != nil && !jsonscan.IsString(r.instructions):
		return dst, sp, errBridgeInstr, false
	case r.maxOut != nil:
		// Refused here in its own name: the chat translations would name theirs.
		if n, ok := jsonscan.Int(r.maxOut); !ok || n < 1 {
			return dst, sp, errBridgeMax, false
		}
	}
	dst = append(dst, `{"model":`...)
	sp.model = [2]int{len(dst) - start, len(dst) - start + len(model)}
	dst = append(dst, model...)
	dst = append(dst, `,"messages":[`...)
	w := msgWriter{dst: dst, plain: r.plainHistory}
	if rerr = w.system(r.instructions, r.input); rerr != nil {
		return w.dst, sp, rerr, false
	}
	r.moreTools = w.moreTools
	if rerr = w.input(r.input); rerr != nil {
		return w.dst, sp, rerr, false
	}
	if w.n == 0 {
		return w.dst, sp, errBridgeEmpty, false
	}
	dst = append(w.dst, ']')
	var ws []byte
	allow := bridgeAllowed(r.toolChoice)
	if dst, ws, rerr = appendBridgeTools(dst, r, allow); rerr != nil {
		return dst, sp, rerr, false
	}
	if r.toolChoice != nil {
		if dst, rerr = appendBridgeToolChoice(dst, r.toolChoice, r); rerr != nil {
			return dst, sp, rerr, false
		}
	}
	if ws != nil {
		dst = appendWebSearchOptions(dst, ws)
	}
	if r.text != nil {
		if dst, rerr = appendTextFormat(dst, r.text); rerr != nil {
			return dst, sp, rerr, false
		}
	}
	if r.reasoning != nil {
		if r.reasoning[0] != '{' {
			return dst, sp, errBridgeReasn, false
		}
		if effort, _ := jsonscan.Field(r.reasoning, "effort"); len(effort) > 0 && !jsonscan.IsNull(effort) {
			dst = appendRawMember(dst, "reasoning_effort", effort)
		}
	}
	// max_tokens: what Azure's api-versions before 2024-09-01 and TGI take; the openai
	// provider renames it for OpenAI's reasoning models, the Anthropic translation
	// reads either.
	dst = appendRawMember(dst, "max_tokens", r.maxOut)
	dst = appendRawMember(dst, "parallel_tool_calls", r.parallel)
	dst = appendRawMember(dst, "temperature", r.temperature)
	dst = appendRawMember(dst, "top_p", r.topP)
	dst = appendRawMember(dst, "user", r.user)
	dst = appendRawMember(dst, "safety_identifier", r.safety)
	dst = appendRawMember(dst, "service_tier", r.tier)
	if r.cacheKey != nil {
		dst = appendRawMember(dst, "prompt_cache_key", r.cacheKey)
		if jsonscan.IsString(r.cacheKey) {
			end := len(dst) - start - 1
			sp.cacheKey = [2]int{end - (len(r.cacheKey) - 2), end}
		}
	}
	if r.topLogprobs != nil {
		// Chat returns top_logprobs only with logprobs (OpenAI refuses the one without
		// the other).
		dst = appendRawMember(dst, "top_logprobs", r.topLogprobs)
		dst = append(dst, `,"logprobs":true`...)
	}
	dst = appendPassed(dst, body)
	if stream {
		dst = append(dst, `,"stream":true`...)
		if usage {
			dst = append(dst, `,"stream_options":`...)
			sp.streamOptions = [2]int{len(dst) - start, len(dst) - start + len(includeUsageJSON)}
			dst = append(dst, includeUsageJSON...)
		}
	}
	return append(dst, '}'), sp, nil, false
}

// appendRawMember appends member name with the raw value v, when v is not nil.
func appendRawMember(dst []byte, name string, v []byte) []byte {
	if v == nil {
		return dst
	}
	return append(appendMember(dst, []byte(name)), v...)
}

// appendPassed appends the members of body that bridgePassed names.
func appendPassed(dst, body []byte) []byte {
	var it jsonscan.Iter
	if it.Reset(body) != nil {
		return dst
	}
	var buf keyBuf
	for {
		k, v, ok := it.Next()
		if !ok {
			return dst
		}
		if passedToChat(keyName(k, &buf)) {
			dst = append(appendMember(dst, k), v...)
		}
	}
}

// msgWriter writes the chat messages of a Responses API input. An assistant message
// is left open for the function calls that may follow it: consecutive function_call
// items, and the assistant message right before them, make one chat message with
// tool_calls.
type msgWriter struct {
	dst []byte
	// n counts the messages begun.
	n int
	// open is set while an assistant message is left open, calls once its
	// tool_calls array is.
	open, calls bool
	// thinking holds the thinking blocks of the reasoning items read since the last
	// message, the inside of a JSON array, for the assistant message that follows
	// them; a pooled buffer, taken at the first such item.
	thinking *[]byte
	// plain leaves reasoning items out whole (respRequest.plainHistory).
	plain bool
	// moreTools is set by system when input has an additional_tools item.
	moreTools bool
}

func (w *msgWriter) sep() {
	if w.n > 0 {
		w.dst = append(w.dst, ',')
	}
	w.n++
}

// close ends the assistant message left open, if any.
func (w *msgWriter) close() {
	if !w.open {
		return
	}
	if w.calls {
		w.dst = append(w.dst, ']')
	}
	w.dst = append(w.dst, '}')
	w.open, w.calls = false, false
}

// A developer message has no place in most chat templates: vLLM hands the role to
// the model's template as it came, and Qwen3's leaves the message out without a
// word, Qwen3.5's and later refuse it ("Unexpected message role."), Llama 3.1's
// writes a header the model was never trained on. Nor has a second system message,
// or one after the first turn: Qwen3.5's template refuses it ("System message must
// be at the beginning."), Mistral's and Gemma's too. Codex CLI sends both, its
// permissions in developer messages beside instructions, and more of them as the
// session's settings change. So, as vLLM's own Responses API serving folds them,
// instructions and the text of every system and developer message of input, in
// their order, make one system message that opens the chat messages, each after an
// empty line; a developer message later in the conversation is read from the start.

// system writes the system message: instructions (a raw JSON string, nil when
// absent) and the text of input's system and developer messages; none when all of
// it is empty.
func (w *msgWriter) system(instructions, input []byte) *requestError {
	at := len(w.dst)
	w.dst = append(w.dst, `{"role":"system","content":"`...)
	text := len(w.dst)
	if jsonscan.IsString(instructions) {
		w.dst = append(w.dst, instructions[1:len(instructions)-1]...)
	}
	var a jsonscan.Array
	if a.Reset(input) {
		for i := 0; ; i++ {
			item, ok := a.Next()
			if !ok {
				break
			}
			var typ, role, content []byte
			var it jsonscan.Iter
			if it.Reset(item) != nil {
				// item refuses it.
				continue
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
				switch string(keyName(k, &buf)) {
				case "type":
					typ = v
				case "role":
					role = v
				case "content":
					content = v
				}
			}
			if isString(typ, "additional_tools") {
				w.moreTools = true
				continue
			}
			if typ != nil && !isString(typ, "message") || !isString(role, "system") && !isString(role, "developer") || content == nil {
				continue
			}
			var rerr *requestError
			if w.dst, rerr = appendInstructionText(w.dst, content, i, len(w.dst) > text); rerr != nil {
				return rerr
			}
		}
	}
	if len(w.dst) == text {
		w.dst = w.dst[:at]
		return nil
	}
	w.dst = append(w.dst, `"}`...)
	w.n++
	return nil
}

// appendInstructionText appends the text of a system or developer message's content (a
// string, or text parts joined by a newline) to the inside of a JSON string, after
// an empty line when joined; a chat system message holds text only.
func appendInstructionText(dst, content []byte, i int, joined bool) ([]byte, *requestError) {
	if jsonscan.IsString(content) {
		if len(content) > 2 {
			if joined {
				dst = append(dst, `\n\n`...)
			}
			dst = append(dst, content[1:len(content)-1]...)
		}
		return dst, nil
	}
	var a jsonscan.Array
	if !a.Reset(content) {
		return dst, badRequest(itemField(i, ".content"), itemField(i, ".content")+" must be a string or a list of content parts.")
	}
	n := 0
	for j := 0; ; j++ {
		p, ok := a.Next()
		if !ok {
			return dst, nil
		}
		typ, _ := jsonscan.Field(p, "type")
		if !isString(typ, "input_text") && !isString(typ, "output_text") {
			return dst, badRequest(partParam(i, ".content", j, ".type"), partParam(i, ".content", j, ".type")+" is not supported in a system or developer message: this model is served through a chat completions API, whose system message holds text only.")
		}
		t, _ := jsonscan.Field(p, "text")
		if !jsonscan.IsString(t) {
			return dst, badRequest(partParam(i, ".content", j, ".text"), partParam(i, ".content", j, ".text")+" must be a string.")
		}
		if len(t) == 2 {
			continue
		}
		switch {
		case n > 0:
			dst = append(dst, `\n`...)
		case joined:
			dst = append(dst, `\n\n`...)
		}
		dst = append(dst, t[1:len(t)-1]...)
		n++
	}
}

// input writes the messages of input, a string or a list of items.
func (w *msgWriter) input(input []byte) *requestError {
	defer w.releaseThinking()
	if jsonscan.IsString(input) {
		w.sep()
		w.dst = append(w.dst, `{"role":"user","content":`...)
		w.dst = append(w.dst, input...)
		w.dst = append(w.dst, '}')
		return nil
	}
	var a jsonscan.Array
	if !a.Reset(input) {
		return badRequest("input", "input must be a string or a list of items.")
	}
	for i := 0; ; i++ {
		item, ok := a.Next()
		if !ok {
			break
		}
		if err := w.item(item, i); err != nil {
			return err
		}
	}
	w.close()
	return nil
}

// inputItem is what the bridge reads of an input item; raw values, nil when absent or
// null.
type inputItem struct {
	typ, role, content, callID, name, namespace, args, output, encrypted, input []byte
}

func itemField(i int, rest string) string { return "input[" + strconv.Itoa(i) + "]" + rest }

// item writes input item i.
func (w *msgWriter) item(raw []byte, i int) *requestError {
	var it jsonscan.Iter
	if it.Reset(raw) != nil {
		return badRequest(itemField(i, ""), itemField(i, "")+" must be an object.")
	}
	var m inputItem
	var buf keyBuf
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		if jsonscan.IsNull(v) {
			v = nil
		}
		switch string(keyName(k, &buf)) {
		case "type":
			m.typ = v
		case "role":
			m.role = v
		case "content":
			m.content = v
		case "call_id":
			m.callID = v
		case "name":
			m.name = v
		case "namespace":
			m.namespace = v
		case "arguments":
			m.args = v
		case "output":
			m.output = v
		case "encrypted_content":
			m.encrypted = v
		case "input":
			m.input = v
		}
	}
	switch {
	case m.typ == nil || isString(m.typ, "message"):
		return w.message(&m, i)
	case isString(m.typ, "function_call"), isString(m.typ, "custom_tool_call"):
		custom := isString(m.typ, "custom_tool_call")
		switch {
		case !jsonscan.IsString(m.callID):
			return badRequest(itemField(i, ".call_id"), itemField(i, ".call_id")+" must be a string.")
		case !jsonscan.IsString(m.name):
			return badRequest(itemField(i, ".name"), itemField(i, ".name")+" must be a string.")
		case !custom && !jsonscan.IsString(m.args):
			return badRequest(itemField(i, ".arguments"), itemField(i, ".arguments")+" must be a string.")
		case custom && !jsonscan.IsString(m.input):
			return badRequest(itemField(i, ".input"), itemField(i, ".input")+" must be a string.")
		case m.namespace != nil && !jsonscan.IsString(m.namespace):
			return badRequest(itemField(i, ".namespace"), itemField(i, ".namespace")+" must be a string.")
		}
		switch {
		case !w.open:
			w.sep()
			w.dst = append(w.dst, `{"role":"assistant",`...)
			w.appendThinking()
			w.dst = append(w.dst, `"content":null,"tool_calls":[`...)
			w.open, w.calls = true, true
		case !w.calls:
			w.dst = append(w.dst, `,"tool_calls":[`...)
			w.calls = true
		default:
			w.dst = append(w.dst, ',')
		}
		w.dst = append(w.dst, `{"id":`...)
		w.dst = append(w.dst, m.callID...)
		w.dst = append(w.dst, `,"type":"function","function":{"name":`...)
		if m.namespace != nil {
			w.dst = appendNamespaced(w.dst, m.namespace, m.name)
		} else {
			w.dst = append(w.dst, m.name...)
		}
		w.dst = append(w.dst, `,"arguments":`...)
		if custom {
			// The call of the function the custom tool went up as (bridge_custom.go).
			w.dst = appendInputArguments(w.dst, m.input)
		} else {
			w.dst = append(w.dst, m.args...)
		}
		w.dst = append(w.dst, "}}"...)
		return nil
	case isString(m.typ, "additional_tools"):
		// Tools "made available at this item": its tools went into the request's
		// (appendBridgeTools), as chat has tools for the whole request only. The
		// answer, the item after the whole input, may call any of them either way.
		if m.role != nil && !isString(m.role, "developer") {
			return badRequest(itemField(i, ".role"), itemField(i, ".role")+" must be developer.")
		}
		return nil
	case isString(m.typ, "function_call_output"), isString(m.typ, "custom_tool_call_output"):
		if !jsonscan.IsString(m.callID) {
			return badRequest(itemField(i, ".call_id"), itemField(i, ".call_id")+" must be a string.")
		}
		if m.output == nil {
			return badRequest(itemField(i, ".output"), itemField(i, ".output")+" is required.")
		}
		w.close()
		w.dropThinking()
		w.sep()
		w.dst = append(w.dst, `{"role":"tool","tool_call_id":`...)
		w.dst = append(w.dst, m.callID...)
		w.dst = append(w.dst, `,"content":`...)
		var err *requestError
		if w.dst, err = appendContent(w.dst, m.output, false, i, ".output"); err != nil {
			return err
		}
		w.dst = append(w.dst, '}')
		return nil
	case isString(m.typ, "reasoning"):
		// A reasoning item has no chat form but the thinking blocks the bridge put in
		// its encrypted_content, which go back with the assistant message after it;
		// any other (another provider's, one without) is left out, as chat clients
		// leave the model's earlier thinking out of the history they send.
		if !w.plain {
			w.reasoning(m.encrypted)
		}
		return nil
	}
	// item_reference names a stored item, and built-in tool calls (web_search_call,
	// file_search_call, computer_call, tool_search_call, mcp_*, ...) have no chat
	// form.
	return badRequest(itemField(i, ".type"), itemField(i, ".type")+" is not supported: this model is served through a chat completions API, which takes messages, function and custom tool calls and their outputs, reasoning and additional_tools items only.")
}

// message writes a message item.
func (w *msgWriter) message(m *inputItem, i int) *requestError {
	var role string
	switch {
	case isString(m.role, "user"):
		role = "user"
	case isString(m.role, "assistant"):
		role = "assistant"
	case isString(m.role, "system"):
		role = "system"
	case isString(m.role, "developer"):
		role = "developer"
	case m.role == nil:
		return badRequest(itemField(i, ".role"), itemField(i, ".role")+" is required.")
	default:
		return badRequest(itemField(i, ".role"), itemField(i, ".role")+" must be user, assistant, system or developer.")
	}
	if m.content == nil {
		return badRequest(itemField(i, ".content"), itemField(i, ".content")+" is required.")
	}
	if role == "system" || role == "developer" {
		// In the system message (msgWriter.system).
		return nil
	}
	w.close()
	w.sep()
	w.dst = append(w.dst, `{"role":"`...)
	w.dst = append(w.dst, role...)
	w.dst = append(w.dst, `",`...)
	if role == "assistant" {
		w.appendThinking()
	} else {
		w.dropThinking()
	}
	w.dst = append(w.dst, `"content":`...)
	var err *requestError
	if role != "assistant" {
		if w.dst, err = appendContent(w.dst, m.content, false, i, ".content"); err != nil {
			return err
		}
		w.dst = append(w.dst, '}')
		return nil
	}
	if w.dst, err = appendContent(w.dst, m.content, true, i, ".content"); err != nil {
		return err
	}
	// Left open for the function calls that may follow.
	w.open = true
	return nil
}

// isString reports whether raw is the JSON string s, escapes decoded.
func isString(raw []byte, s string) bool {
	return jsonscan.IsString(raw) && isKey(raw[1:len(raw)-1], s)
}

// reasoning takes the thinking blocks of a reasoning item's encrypted_content (raw,
// nil when absent) for the assistant message that follows: the blocks' JSON array in
// base64, as appendEncryptedThinking wrote it. Content that is no such array (another
// provider's, altered) is left out. An assistant message left open is closed: the
// blocks go with the message after the item, which the chat translation joins to it
// in one turn.
func (w *msgWriter) reasoning(enc []byte) {
	if !jsonscan.IsString(enc) || len(enc) <= 2 {
		return
	}
	if w.thinking == nil {
		w.thinking = bodyPool.Get().(*[]byte)
		*w.thinking = (*w.thinking)[:0]
	}
	b := *w.thinking
	at := len(b)
	b, ok := appendThinkingBlocks(b, enc[1:len(enc)-1])
	switch {
	case !ok:
		b = b[:at]
	case at > 0 && len(b) > at:
		// Joined to the blocks of an earlier reasoning item: a comma between.
		b = append(b, 0)
		copy(b[at+1:], b[at:len(b)-1])
		b[at] = ','
	}
	*w.thinking = b
	if len(b) > at {
		w.close()
	}
}

// appendEncryptedThinking appends a reasoning item's encrypted_content member for
// blocks, a chat message's thinking_blocks array: the array in base64. It is what
// OpenAI's reasoning items carry across stateless turns, opaque to the client, which
// sends the item back as it got it (msgWriter.reasoning reads it).
func appendEncryptedThinking(dst, blocks []byte) []byte {
	dst = append(dst, `,"encrypted_content":"`...)
	dst = base64.StdEncoding.AppendEncode(dst, blocks)
	return append(dst, '"')
}

// appendThinkingBlocks appends the thinking blocks encrypted content s (the inside of
// its JSON string) holds, the inside of their JSON array; ok is false when s is no
// base64 of an array of thinking and redacted_thinking blocks. dst past its length is
// scratch for the decoding.
func appendThinkingBlocks(dst, s []byte) ([]byte, bool) {
	at := len(dst)
	src := s
	if bytes.IndexByte(s, '\\') >= 0 {
		// A JSON encoder may write "/" as "\/".
		var ok bool
		if dst, ok = jsonscan.AppendUnescape(dst, s); !ok {
			return dst[:at], false
		}
		src = dst[at:]
	}
	if !base64Text(src) {
		return dst[:at], false
	}
	from := len(dst)
	dst, err := base64.StdEncoding.AppendDecode(dst, src)
	if err != nil {
		return dst[:at], false
	}
	// Valid leaves no white space around the array but JSON's, which TrimSpace takes.
	arr := bytes.TrimSpace(dst[from:])
	var a jsonscan.Array
	if !jsonscan.Valid(arr) || !a.Reset(arr) {
		return dst[:at], false
	}
	for {
		el, ok := a.Next()
		if !ok {
			break
		}
		typ, _ := jsonscan.Field(el, "type")
		switch {
		case isString(typ, "thinking"):
			t, _ := jsonscan.Field(el, "thinking")
			if !jsonscan.IsString(t) {
				return dst[:at], false
			}
		case isString(typ, "redacted_thinking"):
			d, _ := jsonscan.Field(el, "data")
			if !jsonscan.IsString(d) {
				return dst[:at], false
			}
		default:
			return dst[:at], false
		}
	}
	// The array's inside, moved down over the scratch.
	n := copy(dst[at:], bytes.TrimSpace(arr[1:len(arr)-1]))
	return dst[:at+n], true
}

// base64Text reports whether s may be standard base64, checked before decoding it:
// the decoder's error for other content (OpenAI's own encrypted content is URL-safe
// base64) is an allocation.
func base64Text(s []byte) bool {
	if len(s)%4 != 0 {
		return false
	}
	for _, c := range s {
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/' || c == '=') {
			return false
		}
	}
	return true
}

// appendThinking writes the thinking blocks the reasoning items before the assistant
// message being opened gave, as its thinking_blocks member and a comma.
func (w *msgWriter) appendThinking() {
	if w.thinking == nil || len(*w.thinking) == 0 {
		return
	}
	w.dst = append(w.dst, `"thinking_blocks":[`...)
	w.dst = append(w.dst, *w.thinking...)
	w.dst = append(w.dst, "],"...)
	*w.thinking = (*w.thinking)[:0]
}

// dropThinking drops the thinking blocks waiting for an assistant message when
// another message comes first: they led to no answer in the history.
func (w *msgWriter) dropThinking() {
	if w.thinking != nil {
		*w.thinking = (*w.thinking)[:0]
	}
}

// releaseThinking gives the thinking blocks' buffer back.
func (w *msgWriter) releaseThinking() {
	if w.thinking != nil {
		putBody(w.thinking)
		w.thinking = nil
	}
}

// appendContent appends a message's content (or a function call's output) in chat's
// form: a string as it is; a list of parts as chat's parts, or as one string when it
// is one text part (what every chat server takes). An assistant's content takes
// text and refusal parts only, its refusal going into the message's refusal member;
// field names the member in refusals.
func appendContent(dst, raw []byte, assistant bool, i int, field string) ([]byte, *requestError) {
	if jsonscan.IsString(raw) {
		return append(dst, raw...), nil
	}
	var a jsonscan.Array
	if !a.Reset(raw) {
		return dst, badRequest(itemField(i, field), itemField(i, field)+" must be a string or a list of content parts.")
	}
	// The first pass counts the parts by kind.
	var texts, others int
	var text, refusal []byte
	for j := 0; ; j++ {
		p, ok := a.Next()
		if !ok {
			break
		}
		typ, _ := jsonscan.Field(p, "type")
		switch {
		case isString(typ, "input_text"), isString(typ, "output_text"):
			t, _ := jsonscan.Field(p, "text")
			if !jsonscan.IsString(t) {
				return dst, badRequest(partParam(i, field, j, ".text"), partParam(i, field, j, ".text")+" must be a string.")
			}
			texts++
			text = t
		case isString(typ, "refusal") && assistant:
			r, _ := jsonscan.Field(p, "refusal")
			if !jsonscan.IsString(r) {
				return dst, badRequest(partParam(i, field, j, ".refusal"), partParam(i, field, j, ".refusal")+" must be a string.")
			}
			refusal = r
		case !assistant && (isString(typ, "input_image") || isString(typ, "input_file") || isString(typ, "input_audio")):
			others++
		default:
			return dst, badRequest(partParam(i, field, j, ".type"), partParam(i, field, j, ".type")+" is not supported here: this model is served through a chat completions API.")
		}
	}
	switch {
	case others == 0 && texts == 1:
		dst = append(dst, text...)
	case others == 0 && texts == 0 && assistant:
		dst = append(dst, strNull...)
	case others == 0 && texts == 0:
		dst = append(dst, strEmptyString...)
	default:
		dst = append(dst, '[')
		a.Reset(raw)
		n := 0
		for j := 0; ; j++ {
			p, ok := a.Next()
			if !ok {
				break
			}
			if typ, _ := jsonscan.Field(p, "type"); isString(typ, "refusal") {
				// Written as the message's refusal.
				continue
			}
			if n > 0 {
				dst = append(dst, ',')
			}
			n++
			var err *requestError
			if dst, err = appendChatPart(dst, p, i, field, j); err != nil {
				return dst, err
			}
		}
		dst = append(dst, ']')
	}
	if refusal != nil {
		dst = append(dst, `,"refusal":`...)
		dst = append(dst, refusal...)
	}
	return dst, nil
}

func partParam(i int, field string, j int, rest string) string {
	return itemField(i, field+"["+strconv.Itoa(j)+"]"+rest)
}

// contentPart is what the bridge reads of a content part; raw values, nil when absent
// or null.
type contentPart struct {
	typ, text, imageURL, fileID, detail, fileData, filename, fileURL, audio []byte
}

// appendChatPart appends the chat content part for the Responses API part p:
// input_text and output_text a text part, input_image an image_url part (a file_id
// alone a file part, chat's part naming an uploaded file), input_file a file part,
// input_audio as it is (chat's has the same shape).
func appendChatPart(dst, raw []byte, i int, field string, j int) ([]byte, *requestError) {
	var p contentPart
	var it jsonscan.Iter
	it.Reset(raw)
	var buf keyBuf
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		if jsonscan.IsNull(v) {
			v = nil
		}
		switch string(keyName(k, &buf)) {
		case "type":
			p.typ = v
		case "text":
			p.text = v
		case "image_url":
			p.imageURL = v
		case "file_id":
			p.fileID = v
		case "detail":
			p.detail = v
		case "file_data":
			p.fileData = v
		case "filename":
			p.filename = v
		case "file_url":
			p.fileURL = v
		case "input_audio":
			p.audio = v
		}
	}
	switch {
	case isString(p.typ, "input_text"), isString(p.typ, "output_text"):
		dst = append(dst, `{"type":"text","text":`...)
		dst = append(dst, p.text...)
		return append(dst, '}'), nil
	case isString(p.typ, "input_image"):
		switch {
		case jsonscan.IsString(p.imageURL):
			dst = append(dst, `{"type":"image_url","image_url":{"url":`...)
			dst = append(dst, p.imageURL...)
			if jsonscan.IsString(p.detail) {
				dst = append(dst, `,"detail":`...)
				dst = append(dst, p.detail...)
			}
			return append(dst, "}}"...), nil
		case jsonscan.IsString(p.fileID):
			dst = append(dst, `{"type":"file","file":{"file_id":`...)
			dst = append(dst, p.fileID...)
			return append(dst, "}}"...), nil
		}
		return dst, badRequest(partParam(i, field, j, ".image_url"), partParam(i, field, j, ".image_url")+" (or file_id) must be a string.")
	case isString(p.typ, "input_file"):
		if p.fileURL != nil {
			return dst, badRequest(partParam(i, field, j, ".file_url"), partParam(i, field, j, ".file_url")+" is not supported: this model is served through a chat completions API; send file_data or file_id.")
		}
		if !jsonscan.IsString(p.fileData) && !jsonscan.IsString(p.fileID) {
			return dst, badRequest(partParam(i, field, j, ".file_data"), partParam(i, field, j, ".file_data")+" (or file_id) must be a string.")
		}
		dst = append(dst, `{"type":"file","file":{`...)
		for _, m := range [...]struct {
			name string
			v    []byte
		}{{"file_id", p.fileID}, {"file_data", p.fileData}, {"filename", p.filename}} {
			if jsonscan.IsString(m.v) {
				dst = append(appendMember(dst, []byte(m.name)), m.v...)
			}
		}
		return append(dst, "}}"...), nil
	case isString(p.typ, "input_audio"):
		if p.audio == nil || p.audio[0] != '{' {
			return dst, badRequest(partParam(i, field, j, ".input_audio"), partParam(i, field, j, ".input_audio")+" must be an object.")
		}
		dst = append(dst, `{"type":"input_audio","input_audio":`...)
		dst = append(dst, p.audio...)
		return append(dst, '}'), nil
	}
	return dst, badRequest(partParam(i, field, j, ".type"), partParam(i, field, j, ".type")+" is not supported here: this model is served through a chat completions API.")
}

// bridgeTool is what the bridge reads of a tool; raw values, nil when absent or null.
type bridgeTool struct {
	typ, name, description, parameters, strict, size, location, filters, tools, format []byte
}

// appendBridgeTools appends chat's tools for the Responses API request r's: a function
// tool ({"type":"function","name",...}) as chat's ({"type":"function","function":
// {...}}), a custom tool as a function taking its input as a string
// (appendCustomChatTool), a namespace's as functions named for it (appendNamespaced).
// The tools of input's additional_tools items join them. The web search tool
// (web_search, web_search_preview) is returned for appendWebSearchOptions; any other
// built-in tool is refused.
//
// With allow, the tools of a tool_choice of type allowed_tools (bridgeAllowed), only the
// tools it names go up, every one still checked: chat has no such choice, and a model
// sent no other tool can call no other.
func appendBridgeTools(dst []byte, r *respRequest, allow []byte) (out, ws []byte, rerr *requestError) {
	n := 0
	if r.tools != nil {
		var a jsonscan.Array
		if !a.Reset(r.tools) {
			return dst, nil, errBridgeTools
		}
		if dst, rerr = appendToolList(dst, a, -1, allow, &n, &ws); rerr != nil {
			return dst, nil, rerr
		}
	}
	if r.moreTools {
		var items jsonscan.Array
		items.Reset(r.input)
		for i := 0; ; i++ {
			item, ok := items.Next()
			if !ok {
				break
			}
			if typ, _ := jsonscan.Field(item, "type"); !isString(typ, "additional_tools") {
				continue
			}
			list, _ := jsonscan.Field(item, "tools")
			var a jsonscan.Array
			if !a.Reset(list) {
				return dst, nil, badRequest(itemField(i, ".tools"), itemField(i, ".tools")+" must be a list of tools.")
			}
			if dst, rerr = appendToolList(dst, a, i, allow, &n, nil); rerr != nil {
				return dst, nil, rerr
			}
		}
	}
	if n > 0 {
		dst = append(dst, ']')
	}
	return dst, ws, nil
}

// listField names member rest of tool j of a list of tools: the request's tools (item
// -1), or input item's (additional_tools).
func listField(item, j int, rest string) string {
	if item < 0 {
		return toolField(j, rest)
	}
	return itemField(item, ".tools["+strconv.Itoa(j)+"]"+rest)
}

// appendToolList appends the chat tools for the list of tools a (appendBridgeTools), of
// input item item (-1 for the request's tools), n of which are written already. The
// web search tool goes into ws; ws nil refuses it, in an additional_tools item: the
// bound of a call's web search spend (responsesWebSearch) reads the request's tools.
func appendToolList(dst []byte, a jsonscan.Array, item int, allow []byte, n *int, ws *[]byte) ([]byte, *requestError) {
	for j := 0; ; j++ {
		raw, ok := a.Next()
		if !ok {
			return dst, nil
		}
		var t bridgeTool
		var it jsonscan.Iter
		if it.Reset(raw) != nil {
			return dst, badRequest(listField(item, j, ""), listField(item, j, "")+" must be an object.")
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
			switch string(keyName(k, &buf)) {
			case "type":
				t.typ = v
			case "name":
				t.name = v
			case "description":
				t.description = v
			case "parameters":
				t.parameters = v
			case "strict":
				t.strict = v
			case "search_context_size":
				t.size = v
			case "user_location":
				t.location = v
			case "filters":
				t.filters = v
			case "tools":
				t.tools = v
			case "format":
				t.format = v
			}
		}
		switch {
		case isString(t.typ, "namespace"):
			if !jsonscan.IsString(t.name) {
				return dst, badRequest(listField(item, j, ".name"), listField(item, j, ".name")+" must be a string.")
			}
			var fn jsonscan.Array
			if !fn.Reset(t.tools) {
				return dst, badRequest(listField(item, j, ".tools"), listField(item, j, ".tools")+" must be a list of tools.")
			}
			for k := 0; ; k++ {
				raw, ok := fn.Next()
				if !ok {
					break
				}
				typ, _ := jsonscan.Field(raw, "type")
				name, _ := jsonscan.Field(raw, "name")
				custom := isString(typ, "custom")
				switch {
				case !custom && !isString(typ, "function"):
					f := listField(item, j, ".tools["+strconv.Itoa(k)+"].type")
					return dst, badRequest(f, f+" is not supported: this model is served through a chat completions API, which takes function and custom tools only in a namespace.")
				case !jsonscan.IsString(name):
					f := listField(item, j, ".tools["+strconv.Itoa(k)+"].name")
					return dst, badRequest(f, f+" must be a string.")
				case allow != nil:
					// allowed_tools names tools by name alone, none of a namespace.
					continue
				}
				desc, _ := jsonscan.Field(raw, "description")
				if custom {
					format, _ := jsonscan.Field(raw, "format")
					syntax, def, ok := customFormat(nonNull(format))
					if !ok {
						f := listField(item, j, ".tools["+strconv.Itoa(k)+"].format")
						return dst, badRequest(f, f+errCustomFormat)
					}
					dst = appendCustomChatTool(dst, *n, t.name, name, nonNull(desc), syntax, def)
				} else {
					params, _ := jsonscan.Field(raw, "parameters")
					strict, _ := jsonscan.Field(raw, "strict")
					dst = appendChatTool(dst, *n, t.name, name, nonNull(desc), nonNull(params), nonNull(strict))
				}
				*n++
			}
		case isString(t.typ, "function"), isString(t.typ, "custom"):
			if !jsonscan.IsString(t.name) {
				return dst, badRequest(listField(item, j, ".name"), listField(item, j, ".name")+" must be a string.")
			}
			if isString(t.typ, "function") {
				if allow != nil && !listsTool(allow, t.name) {
					continue
				}
				dst = appendChatTool(dst, *n, nil, t.name, t.description, t.parameters, t.strict)
				*n++
				continue
			}
			syntax, def, ok := customFormat(t.format)
			if !ok {
				return dst, badRequest(listField(item, j, ".format"), listField(item, j, ".format")+errCustomFormat)
			}
			if allow != nil && !listsTool(allow, t.name) {
				continue
			}
			dst = appendCustomChatTool(dst, *n, nil, t.name, t.description, syntax, def)
			*n++
		case isWebSearchType(t.typ):
			switch {
			case ws == nil:
				return dst, badRequest(listField(item, j, ".type"), listField(item, j, ".type")+" is not supported in an additional_tools item: this model is served through a chat completions API; send the web search tool in tools.")
			case *ws != nil:
				return dst, errBridgeWS2
			case t.location != nil && t.location[0] != '{':
				return dst, badRequest(listField(item, j, ".user_location"), listField(item, j, ".user_location")+" must be an object.")
			case t.filters != nil:
				return dst, badRequest(listField(item, j, ".filters"), listField(item, j, ".filters")+" is not supported: this model is served through a chat completions API, whose web search takes search_context_size and user_location only.")
			case allow != nil && !listsTool(allow, nil):
				continue
			}
			*ws = raw
		case isString(t.typ, "tool_search"):
			// Tool search loads deferred tools into the model's context as it runs:
			// the Responses API's server searches them (execution server), or the
			// client through tool_search_call and tool_search_output items. A chat
			// request's tools are fixed, and a chat API runs no search and has no
			// such items.
			return dst, badRequest(listField(item, j, ".type"), listField(item, j, ".type")+" tool_search is not supported: this model is served through a chat completions API, which has no tool search; send the tools themselves, without defer_loading.")
		default:
			return dst, badRequest(listField(item, j, ".type"), listField(item, j, ".type")+" is not supported: this model is served through a chat completions API, which takes function and custom tools, namespaces of them and web search only.")
		}
	}
}

// errCustomFormat ends the refusal of a custom tool's format.
const errCustomFormat = ` must be {"type":"text"} or {"type":"grammar","syntax":"lark" or "regex","definition":...}.`

// A namespace tool groups function tools under a name (Codex CLI sends its sub-agent
// tools so, and the function_call items calling them name the namespace beside the
// function). Chat has no namespaces: each of its functions goes up as a function
// named "<namespace>__<name>", as vLLM's own Responses API flattens them, and a call
// of such a name comes back as that function of that namespace (lookupCall).

var strNamespaceSep = []byte("__")

// openChatTool opens a chat function tool named name (a raw JSON string, of namespace
// ns when ns is not nil: appendNamespaced) in the request's tools, n of which are
// written already, up to the members after its name.
func openChatTool(dst []byte, n int, ns, name []byte) []byte {
	if n == 0 {
		dst = append(dst, `,"tools":[`...)
	} else {
		dst = append(dst, ',')
	}
	dst = append(dst, `{"type":"function","function":{"name":`...)
	if ns != nil {
		dst = appendNamespaced(dst, ns, name)
	} else {
		dst = append(dst, name...)
	}
	return dst
}

// appendChatTool appends a chat function tool named name (a raw JSON string, of
// namespace ns when ns is not nil: appendNamespaced) to the request's tools, n of
// which are written already; description, parameters and strict go as they are, nil
// for none.
func appendChatTool(dst []byte, n int, ns, name, description, parameters, strict []byte) []byte {
	dst = openChatTool(dst, n, ns, name)
	dst = appendRawMember(dst, "description", description)
	dst = appendRawMember(dst, "parameters", parameters)
	dst = appendRawMember(dst, "strict", strict)
	return append(dst, "}}"...)
}

// appendNamespaced appends the chat name of function fn of namespace ns, both raw
// JSON strings: "<ns>__<fn>".
func appendNamespaced(dst, ns, fn []byte) []byte {
	dst = append(dst, ns[:len(ns)-1]...)
	dst = append(dst, strNamespaceSep...)
	return append(dst, fn[1:]...)
}

// nonNull is raw, or nil for a JSON null.
func nonNull(raw []byte) []byte {
	if jsonscan.IsNull(raw) {
		return nil
	}
	return raw
}

// appendWebSearchOptions appends chat's web_search_options for the Responses API's
// web search tool ws: its search_context_size, and its user_location
// ({"type":"approximate","city",...}) in chat's form
// ({"type":"approximate","approximate":{"city",...}}).
func appendWebSearchOptions(dst, ws []byte) []byte {
	var size, loc []byte
	var it jsonscan.Iter
	it.Reset(ws)
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		switch {
		case isKey(k, "search_context_size") && !jsonscan.IsNull(v):
			size = v
		case isKey(k, "user_location") && !jsonscan.IsNull(v):
			loc = v
		}
	}
	dst = append(dst, `,"web_search_options":{`...)
	if size != nil {
		dst = append(dst, `"search_context_size":`...)
		dst = append(dst, size...)
	}
	if loc != nil {
		var lt jsonscan.Iter
		lt.Reset(loc)
		if size != nil {
			dst = append(dst, ',')
		}
		dst = append(dst, `"user_location":{"type":"approximate","approximate":{`...)
		for {
			k, v, ok := lt.Next()
			if !ok {
				break
			}
			if !isKey(k, "type") && !jsonscan.IsNull(v) {
				dst = append(appendMember(dst, k), v...)
			}
		}
		dst = append(dst, "}}"...)
	}
	return append(dst, '}')
}

// appendBridgeToolChoice appends chat's tool_choice for the Responses API request r's
// tc: auto, none and required as they are, {"type":"function","name"} and
// {"type":"custom","name"} as {"type":"function","function":{"name"}}, allowed_tools
// as auto or required by its mode (appendBridgeTools sent only the tools it names,
// each of which must be one of r's); a choice of a built-in tool is refused.
func appendBridgeToolChoice(dst, tc []byte, r *respRequest) ([]byte, *requestError) {
	if isString(tc, "auto") || isString(tc, "none") || isString(tc, "required") {
		return appendRawMember(dst, "tool_choice", tc), nil
	}
	if tc[0] != '{' {
		return dst, errBridgeTC
	}
	if allow := bridgeAllowed(tc); allow != nil {
		return appendAllowedChoice(dst, tc, allow, r)
	}
	typ, _ := jsonscan.Field(tc, "type")
	name, _ := jsonscan.Field(tc, "name")
	if !isString(typ, "function") && !isString(typ, "custom") || !jsonscan.IsString(name) {
		return dst, errBridgeTC
	}
	dst = append(dst, `,"tool_choice":{"type":"function","function":{"name":`...)
	if ns, _ := jsonscan.Field(tc, "namespace"); jsonscan.IsString(ns) {
		dst = appendNamespaced(dst, ns, name)
	} else {
		dst = append(dst, name...)
	}
	return append(dst, "}}"...), nil
}

// bridgeAllowed is the tools array of a tool_choice of type allowed_tools ({"type":
// "allowed_tools","mode","tools":[{"type":"function","name"},{"type":"web_search"},…]}),
// an empty array when it has none; nil for any other tool_choice.
func bridgeAllowed(tc []byte) []byte {
	if len(tc) == 0 || tc[0] != '{' {
		return nil
	}
	if typ, _ := jsonscan.Field(tc, "type"); !isString(typ, "allowed_tools") {
		return nil
	}
	if tools, _ := jsonscan.Field(tc, "tools"); len(tools) > 0 && tools[0] == '[' {
		return tools
	}
	return strEmptyArray
}

var strEmptyArray = []byte("[]")

// listsTool reports whether list, an array of Responses API tools (the request's, an
// additional_tools item's, or allowed_tools'), has the function or custom tool name (a
// JSON string), or with name nil a web search tool.
func listsTool(list, name []byte) bool {
	var a jsonscan.Array
	if !a.Reset(list) {
		return false
	}
	for {
		raw, ok := a.Next()
		if !ok {
			return false
		}
		typ, _ := jsonscan.Field(raw, "type")
		if name == nil {
			if isWebSearchType(typ) {
				return true
			}
			continue
		}
		if n, _ := jsonscan.Field(raw, "name"); (isString(typ, "function") || isString(typ, "custom")) && jsonscan.IsString(n) && sameString(n, name) {
			return true
		}
	}
}

// requestLists reports whether the Responses API request r has the function or custom
// tool name (listsTool) in its tools or an additional_tools item's.
func requestLists(r *respRequest, name []byte) bool {
	if listsTool(r.tools, name) {
		return true
	}
	if !r.moreTools || name == nil {
		return false
	}
	var items jsonscan.Array
	items.Reset(r.input)
	for {
		item, ok := items.Next()
		if !ok {
			return false
		}
		if typ, _ := jsonscan.Field(item, "type"); isString(typ, "additional_tools") {
			if list, _ := jsonscan.Field(item, "tools"); listsTool(list, name) {
				return true
			}
		}
	}
}

// isWebSearchType reports whether typ, a JSON value, names the Responses API's web
// search tool in one of its versions.
func isWebSearchType(typ []byte) bool {
	return isString(typ, "web_search") || isString(typ, "web_search_preview") ||
		isString(typ, "web_search_2025_08_26") || isString(typ, "web_search_preview_2025_03_11")
}

// appendAllowedChoice appends chat's tool_choice for allowed_tools tc, whose list is
// allow: auto or required by its mode, after checking that each tool it names is one
// of r's (a function or custom tool by name, or web search), as the Responses API
// refuses any other.
func appendAllowedChoice(dst, tc, allow []byte, r *respRequest) ([]byte, *requestError) {
	mode, _ := jsonscan.Field(tc, "mode")
	if !isString(mode, "auto") && !isString(mode, "required") {
		return dst, badRequest("tool_choice.mode", "tool_choice.mode must be auto or required.")
	}
	var a jsonscan.Array
	a.Reset(allow)
	functions := 0
	for j := 0; ; j++ {
		raw, ok := a.Next()
		if !ok {
			if j == 0 {
				return dst, badRequest("tool_choice.tools", "tool_choice.tools must list at least one tool.")
			}
			break
		}
		param := "tool_choice.tools[" + strconv.Itoa(j) + "]"
		typ, _ := jsonscan.Field(raw, "type")
		name, _ := jsonscan.Field(raw, "name")
		switch {
		case (isString(typ, "function") || isString(typ, "custom")) && jsonscan.IsString(name):
			if !requestLists(r, name) {
				return dst, badRequest(param+".name", param+".name names no function or custom tool in tools.")
			}
			functions++
		case isString(typ, "function"), isString(typ, "custom"):
			return dst, badRequest(param+".name", param+".name must be a string.")
		case isWebSearchType(typ):
			if !listsTool(r.tools, nil) {
				return dst, badRequest(param+".type", param+" names no web search tool in tools.")
			}
		default:
			return dst, badRequest(param+".type", param+".type is not supported: this model is served through a chat completions API, which takes function and custom tools and web search only.")
		}
	}
	switch {
	case functions == 0 && isString(mode, "required"):
		// Chat's required forces a function call, and none would be sent.
		return dst, badRequest("tool_choice.mode", "tool_choice.mode required needs a function among tool_choice.tools: this model is served through a chat completions API, which can force function calls only.")
	case functions == 0:
		// No function goes up (web search alone): chat takes no tool_choice without
		// tools, and auto is what it would do.
		return dst, nil
	}
	return appendRawMember(dst, "tool_choice", mode), nil
}

// appendTextFormat appends chat's response_format and verbosity for the Responses
// API's text: format text is chat's default, json_object and json_schema go as chat's
// response_format ({"type":"json_schema","json_schema":{"name","schema","strict",
// "description"}}).
func appendTextFormat(dst, text []byte) ([]byte, *requestError) {
	var it jsonscan.Iter
	if it.Reset(text) != nil {
		return dst, errBridgeText
	}
	var format, verbosity []byte
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		switch {
		case isKey(k, "format"):
			format = v
		case isKey(k, "verbosity"):
			verbosity = v
		}
	}
	if format != nil && !jsonscan.IsNull(format) {
		var ft jsonscan.Iter
		if ft.Reset(format) != nil {
			return dst, errBridgeFmt
		}
		var typ, name, schema, strict, desc []byte
		for {
			k, v, ok := ft.Next()
			if !ok {
				break
			}
			if jsonscan.IsNull(v) {
				continue
			}
			switch {
			case isKey(k, "type"):
				typ = v
			case isKey(k, "name"):
				name = v
			case isKey(k, "schema"):
				schema = v
			case isKey(k, "strict"):
				strict = v
			case isKey(k, "description"):
				desc = v
			}
		}
		switch {
		case isString(typ, "text"):
		case isString(typ, "json_object"):
			dst = append(dst, `,"response_format":{"type":"json_object"}`...)
		case isString(typ, "json_schema"):
			if !jsonscan.IsString(name) {
				return dst, errBridgeName
			}
			if schema == nil || schema[0] != '{' {
				return dst, errBridgeSchem
			}
			dst = append(dst, `,"response_format":{"type":"json_schema","json_schema":{"name":`...)
			dst = append(dst, name...)
			dst = appendRawMember(dst, "schema", schema)
			dst = appendRawMember(dst, "strict", strict)
			dst = appendRawMember(dst, "description", desc)
			dst = append(dst, "}}"...)
		default:
			return dst, errBridgeFmtT
		}
	}
	if verbosity != nil && !jsonscan.IsNull(verbosity) {
		dst = appendRawMember(dst, "verbosity", verbosity)
	}
	return dst, nil
}

// bridgeEcho holds the members of the response object that come from the request,
// rendered once, white space removed (a stream's event is one data line): [0:a) up
// to the model, [a:b) from parallel_tool_calls to service_tier, [b:c) from store to
// usage, [c:] the rest.
type bridgeEcho struct {
	buf     []byte
	a, b, c int
	// tools is where the request's tools are in buf, for callName.
	tools [2]int
	// instructions is set when the request had instructions.
	instructions bool
	// more holds the tools of the request's additional_tools items, a JSON array;
	// empty when it has none.
	more []byte
}

var bridgeEchoPool = sync.Pool{New: func() any { return &bridgeEcho{buf: make([]byte, 0, 512)} }}

func (e *bridgeEcho) release() {
	if cap(e.buf) > maxPooledBuffer {
		e.buf = make([]byte, 0, 512)
	}
	e.more = trimBuf(e.more)
	bridgeEchoPool.Put(e)
}

// toolsOf is the request's tools, a JSON array.
func (e *bridgeEcho) toolsOf() []byte { return e.buf[e.tools[0]:e.tools[1]] }

// callName is what a chat call of name (a raw JSON string) comes back as: the call of
// fn, of namespace ns (nil for none), a custom tool's call when custom is set
// (lookupCall among the request's tools and its additional_tools items').
func (e *bridgeEcho) callName(name []byte) (fn, ns []byte, custom bool) {
	if !jsonscan.IsString(name) {
		return strEmptyString, nil, false
	}
	if fn, ns, custom, ok := lookupCall(e.toolsOf(), name); ok {
		return fn, ns, custom
	}
	if fn, ns, custom, ok := lookupCall(e.more, name); ok {
		return fn, ns, custom
	}
	return name, nil, false
}

// appendMoreTools appends the tools of input's additional_tools items, a JSON array.
func appendMoreTools(dst, input []byte) []byte {
	dst = append(dst, '[')
	n := 0
	var items jsonscan.Array
	items.Reset(input)
	for {
		item, ok := items.Next()
		if !ok {
			return append(dst, ']')
		}
		if typ, _ := jsonscan.Field(item, "type"); !isString(typ, "additional_tools") {
			continue
		}
		list, _ := jsonscan.Field(item, "tools")
		var a jsonscan.Array
		a.Reset(list)
		for {
			t, ok := a.Next()
			if !ok {
				break
			}
			if n > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, t...)
			n++
		}
	}
}

// render renders r's members.
func (e *bridgeEcho) render(r *respRequest) {
	b := e.buf[:0]
	b = append(b, `,"instructions":`...)
	b = appendCompactOr(b, r.instructions, "null")
	b = append(b, `,"max_output_tokens":`...)
	b = appendCompactOr(b, r.maxOut, "null")
	e.a = len(b)
	b = append(b, `,"parallel_tool_calls":`...)
	b = appendCompactOr(b, r.parallel, "true")
	b = append(b, `,"previous_response_id":null,"prompt_cache_key":`...)
	b = appendCompactOr(b, r.cacheKey, "null")
	b = append(b, `,"reasoning":`...)
	b = appendCompactOr(b, r.reasoning, `{"effort":null,"summary":null}`)
	b = append(b, `,"safety_identifier":`...)
	b = appendCompactOr(b, r.safety, "null")
	e.b = len(b)
	b = append(b, `,"store":false,"temperature":`...)
	b = appendCompactOr(b, r.temperature, "null")
	b = append(b, `,"text":`...)
	b = appendCompactOr(b, r.text, `{"format":{"type":"text"}}`)
	b = append(b, `,"tool_choice":`...)
	b = appendCompactOr(b, r.toolChoice, `"auto"`)
	b = append(b, `,"tools":`...)
	e.tools[0] = len(b)
	b = appendCompactOr(b, r.tools, "[]")
	e.tools[1] = len(b)
	b = append(b, `,"top_logprobs":`...)
	b = appendCompactOr(b, r.topLogprobs, "0")
	b = append(b, `,"top_p":`...)
	b = appendCompactOr(b, r.topP, "null")
	b = append(b, `,"truncation":"disabled"`...)
	e.c = len(b)
	b = append(b, `,"user":`...)
	b = appendCompactOr(b, r.user, "null")
	b = append(b, `,"metadata":`...)
	b = appendCompactOr(b, r.metadata, "{}")
	e.buf = b
	e.more = e.more[:0]
	if r.moreTools {
		e.more = appendMoreTools(e.more, r.input)
	}
}

// appendCompactOr appends raw, valid JSON, without the white space between its
// tokens, or def when raw is nil.
func appendCompactOr(dst, raw []byte, def string) []byte {
	if raw == nil {
		return append(dst, def...)
	}
	return jsonscan.AppendCompact(dst, raw)
}

// respStatus is how a response ended.
type respStatus uint8

const (
	statusInProgress respStatus = iota
	statusCompleted
	// statusLength and statusFiltered are incomplete: max_output_tokens reached, or
	// the content filter.
	statusLength
	statusFiltered
	statusFailed
)

// statusOf is the status a chat finish_reason (a raw JSON value) ends a response with.
func statusOf(finish []byte) respStatus {
	switch {
	case isString(finish, "length"):
		return statusLength
	case isString(finish, "content_filter"):
		return statusFiltered
	}
	return statusCompleted
}

// incomplete reports whether the status is the response's end without all of it.
func (s respStatus) incomplete() bool { return s == statusLength || s == statusFiltered }

// itemStatus is the status of the last output item of a response ended so.
func (s respStatus) itemStatus() string {
	switch s {
	case statusCompleted:
		return `"completed"`
	case statusInProgress:
		return `"in_progress"`
	}
	return `"incomplete"`
}

// respHead is what a response object holds of its answer besides its output.
type respHead struct {
	id      [48]byte
	created int64
	// model and tier are raw JSON values: the answer's model, and service_tier (nil
	// for null).
	model, tier []byte
	status      respStatus
	// errCode and errMsg are a failed response's error, raw JSON strings.
	errCode, errMsg []byte
}

// newID fills id with 48 random hex digits.
func newID(id *[48]byte) {
	for i := 0; i < 48; i += 16 {
		v := rand.Uint64()
		for j := 15; j >= 0; j-- {
			id[i+j] = hexDigits[v&15]
			v >>= 4
		}
	}
}

const hexDigits = "0123456789abcdef"

// appendItemID appends a new item ID: prefix and 48 random hex digits.
func appendItemID(dst []byte, prefix string) []byte {
	var id [48]byte
	newID(&id)
	dst = append(dst, prefix...)
	return append(dst, id[:]...)
}

// appendResponse appends the response object: h's answer, output (the items, a JSON
// array's inside), usage (a raw object, or nil for null) and e's echo.
func appendResponse(dst []byte, h *respHead, e *bridgeEcho, output, usage []byte) []byte {
	dst = append(dst, `{"id":"resp_`...)
	dst = append(dst, h.id[:]...)
	dst = append(dst, `","object":"response","created_at":`...)
	dst = strconv.AppendInt(dst, h.created, 10)
	dst = append(dst, `,"status":`...)
	switch h.status {
	case statusInProgress:
		dst = append(dst, `"in_progress","error":null,"incomplete_details":null`...)
	case statusCompleted:
		dst = append(dst, `"completed","error":null,"incomplete_details":null`...)
	case statusLength:
		dst = append(dst, `"incomplete","error":null,"incomplete_details":{"reason":"max_output_tokens"}`...)
	case statusFiltered:
		dst = append(dst, `"incomplete","error":null,"incomplete_details":{"reason":"content_filter"}`...)
	case statusFailed:
		dst = append(dst, `"failed","error":{"code":`...)
		dst = append(dst, h.errCode...)
		dst = append(dst, `,"message":`...)
		dst = append(dst, h.errMsg...)
		dst = append(dst, `},"incomplete_details":null`...)
	}
	dst = append(dst, e.buf[:e.a]...)
	dst = append(dst, `,"model":`...)
	dst = append(dst, h.model...)
	dst = append(dst, `,"output":[`...)
	dst = append(dst, output...)
	dst = append(dst, ']')
	dst = append(dst, e.buf[e.a:e.b]...)
	dst = append(dst, `,"service_tier":`...)
	if h.tier == nil {
		dst = append(dst, strNull...)
	} else {
		dst = append(dst, h.tier...)
	}
	dst = append(dst, e.buf[e.b:e.c]...)
	dst = append(dst, `,"usage":`...)
	if usage == nil {
		dst = append(dst, strNull...)
	} else {
		dst = append(dst, usage...)
	}
	dst = append(dst, e.buf[e.c:]...)
	return append(dst, '}')
}

// appendRespUsage appends the Responses API's usage for u, with reasoning of the
// output tokens reasoning.
func appendRespUsage(dst []byte, u *Usage, reasoning int64) []byte {
	dst = append(dst, `{"input_tokens":`...)
	dst = strconv.AppendInt(dst, u.Input, 10)
	dst = append(dst, `,"input_tokens_details":{"cached_tokens":`...)
	dst = strconv.AppendInt(dst, u.CachedInput, 10)
	dst = append(dst, `},"output_tokens":`...)
	dst = strconv.AppendInt(dst, u.Output, 10)
	dst = append(dst, `,"output_tokens_details":{"reasoning_tokens":`...)
	dst = strconv.AppendInt(dst, reasoning, 10)
	dst = append(dst, `},"total_tokens":`...)
	dst = strconv.AppendInt(dst, u.Input+u.Output, 10)
	return append(dst, '}')
}

// reasoningTokens reads completion_tokens_details.reasoning_tokens of a chat usage
// object; 0 when it has none.
func reasoningTokens(usage []byte) int64 {
	d, _ := jsonscan.Field(usage, "completion_tokens_details")
	if len(d) == 0 || d[0] != '{' {
		return 0
	}
	v, _ := jsonscan.Field(d, "reasoning_tokens")
	n, ok := tokenCount(v)
	if !ok {
		return 0
	}
	return n
}

// chatAnswer is what the bridge reads of a chat completion; raw values, nil when
// absent or null.
type chatAnswer struct {
	created, model, tier, usage                 []byte
	content, refusal, calls, annotations, think []byte
	finish, logprobs                            []byte
	// stopStr is the choice's stop_reason when it is a string: vLLM names there
	// the stop string that ended the answer (a number is a stop token's ID).
	stopStr []byte
	// blocks is the message's thinking_blocks (LiteLLM's field, which the Anthropic
	// translation answers): the thinking the next turn must send back.
	blocks []byte
}

// read reads a chat completion's members; ok is false when body is not one.
func (c *chatAnswer) read(body []byte) bool {
	var it jsonscan.Iter
	if it.Reset(body) != nil {
		return false
	}
	var choice []byte
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		if jsonscan.IsNull(v) {
			v = nil
		}
		switch string(k) {
		case "created":
			c.created = v
		case "model":
			c.model = v
		case "service_tier":
			c.tier = v
		case "usage":
			c.usage = v
		case "choices":
			var a jsonscan.Array
			if a.Reset(v) {
				choice, _ = a.Next()
			}
		case "error":
			if v != nil {
				return false
			}
		}
	}
	if it.Err() != nil || len(choice) == 0 || choice[0] != '{' {
		return false
	}
	var msg []byte
	it.Reset(choice)
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		switch string(k) {
		case "message":
			msg = v
		case "finish_reason":
			c.finish = v
		case "logprobs":
			c.logprobs = v
		case "stop_reason":
			c.stopStr = v
		}
	}
	if it.Reset(msg) != nil {
		return false
	}
	var reasoning []byte
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		if jsonscan.IsNull(v) {
			continue
		}
		switch string(k) {
		case "content":
			c.content = v
		case "refusal":
			c.refusal = v
		case "tool_calls":
			c.calls = v
		case "annotations":
			c.annotations = v
		case "reasoning_content":
			c.think = v
		case "reasoning":
			reasoning = v
		case "thinking_blocks":
			c.blocks = v
		}
	}
	if c.think == nil || len(c.think) <= 2 {
		// vLLM writes reasoning_content (and newer ones reasoning beside it, the same
		// text), OpenRouter reasoning alone.
		c.think = reasoning
	}
	return it.Err() == nil
}

// appendBridgeAnswer appends the response object for the chat completion chat; u is
// its usage as the chat call read it, model the backend's model (a raw JSON string),
// for an answer without one. ok is false when chat is no chat completion.
func appendBridgeAnswer(dst, chat []byte, e *bridgeEcho, model []byte, u *Usage) ([]byte, bool) {
	var c chatAnswer
	if !c.read(chat) {
		return dst, false
	}
	var h respHead
	newID(&h.id)
	h.model, h.tier, h.status = c.model, c.tier, statusOf(c.finish)
	if !jsonscan.IsString(h.model) {
		h.model = model
	}
	if !jsonscan.IsString(h.tier) {
		h.tier = nil
	}
	var ok bool
	if h.created, ok = jsonscan.Int(c.created); !ok {
		h.created = time.Now().Unix()
	}
	// The output and usage are written first, then the object after them, which is
	// moved down over them: the object holds them in its middle.
	start := len(dst)
	out := dst
	// last is the offset of the status value of the last item that has one.
	last := -1
	blocks := nonEmptyArray(c.blocks)
	reasoning := nonEmpty(c.think) || blocks
	if reasoning {
		// A reasoning item even without text: a redacted block, or a thinking block
		// whose text the model left out (Opus 4.7's omitted display), goes back in it.
		out = appendItemID(append(out, `{"type":"reasoning","id":"`...), "rs_")
		out = append(out, `","summary":[],"content":[`...)
		if nonEmpty(c.think) {
			out = append(out, `{"type":"reasoning_text","text":`...)
			out = append(out, c.think...)
			out = append(out, '}')
		}
		out = append(out, ']')
		if blocks {
			out = appendEncryptedThinking(out, c.blocks)
		}
		out = append(out, '}')
	}
	var a jsonscan.Array
	calls := a.Reset(c.calls)
	if calls {
		_, calls = a.Next()
		a.Reset(c.calls)
	}
	// An empty content or refusal string is no part (servers send content "" beside
	// a refusal, and refusal "" beside text), as a stream's empty deltas begin none;
	// an answer of neither, nor calls nor reasoning, is one message with an empty
	// output_text part. An answer cut while it reasoned is the reasoning item alone,
	// as OpenAI's is and the same answer streamed is.
	refusal := nonEmpty(c.refusal)
	text := jsonscan.IsString(c.content) && (len(c.content) > 2 || !calls && !refusal && !reasoning)
	if text || refusal || !calls && !reasoning {
		if len(out) > start {
			out = append(out, ',')
		}
		out = appendItemID(append(out, `{"type":"message","id":"`...), "msg_")
		out = append(out, `","status":`...)
		last = len(out)
		out = append(out, `"completed","role":"assistant","content":[`...)
		if text || !refusal {
			content := c.content
			if !jsonscan.IsString(content) {
				content = strEmptyString
			}
			out = append(out, `{"type":"output_text","text":`...)
			out = append(out, content...)
			out = append(out, `,"annotations":`...)
			out = appendRespAnnotations(out, c.annotations)
			out = append(out, `,"logprobs":`...)
			out = appendLogprobs(out, c.logprobs)
			out = append(out, '}')
			if refusal {
				out = append(out, ',')
			}
		}
		if refusal {
			out = append(out, `{"type":"refusal","refusal":`...)
			out = append(out, c.refusal...)
			out = append(out, '}')
		}
		out = append(out, "]}"...)
	}
	for calls {
		call, more := a.Next()
		if !more {
			break
		}
		var id, name, args []byte
		if fn, ok := jsonscan.Field(call, "function"); ok {
			name, _ = jsonscan.Field(fn, "name")
			args, _ = jsonscan.Field(fn, "arguments")
		}
		id, _ = jsonscan.Field(call, "id")
		if len(out) > start {
			out = append(out, ',')
		}
		fn, ns, custom := e.callName(name)
		if custom {
			out = appendItemID(append(out, `{"type":"custom_tool_call","id":"`...), "ctc_")
		} else {
			out = appendItemID(append(out, `{"type":"function_call","id":"`...), "fc_")
		}
		out = append(out, `","call_id":`...)
		if jsonscan.IsString(id) {
			out = append(out, id...)
		} else {
			out = appendItemID(append(out, '"'), "call_")
			out = append(out, '"')
		}
		out = append(out, `,"name":`...)
		out = append(out, fn...)
		if ns != nil {
			out = append(out, `,"namespace":`...)
			out = append(out, ns...)
		}
		if custom {
			out = append(out, `,"input":`...)
			out = appendCustomInput(out, args)
		} else {
			out = append(out, `,"arguments":`...)
			out = appendArguments(out, args)
		}
		out = append(out, `,"status":`...)
		last = len(out)
		out = append(out, `"completed"}`...)
	}
	if h.status.incomplete() && last >= 0 {
		// The item the answer ended in is incomplete too: "completed" becomes
		// "incomplete", a byte longer.
		out = append(out, 0)
		copy(out[last+len(strIncomplete):], out[last+len(strCompleted):len(out)-1])
		copy(out[last:], strIncomplete)
	}
	output := len(out) - start
	var usage []byte
	if c.usage != nil {
		out = appendRespUsage(out, u, reasoningTokens(c.usage))
		usage = out[start+output:]
	}
	objAt := len(out)
	out = appendResponse(out, &h, e, out[start:start+output], usage)
	n := copy(out[start:], out[objAt:])
	return out[:start+n], true
}

var (
	strCompleted  = []byte(`"completed"`)
	strIncomplete = []byte(`"incomplete"`)
)

// appendArguments appends a tool call's arguments as the Responses API's string: a
// string as it is, any other value (a server that sends an object) as its JSON text.
func appendArguments(dst, args []byte) []byte {
	switch {
	case jsonscan.IsString(args):
		return append(dst, args...)
	case len(args) == 0 || jsonscan.IsNull(args):
		return append(dst, `"{}"`...)
	}
	return jsonscan.AppendQuote(dst, b2s(args))
}

// appendRespAnnotations appends the Responses API's annotations for chat's: each
// url_citation ({"type":"url_citation","url_citation":{"start_index","end_index",
// "url","title"}}) flattened ({"type":"url_citation","start_index",...}); others
// have no Responses form and are left out.
func appendRespAnnotations(dst, anns []byte) []byte {
	dst = append(dst, '[')
	n := 0
	var a jsonscan.Array
	if a.Reset(anns) {
		for {
			ann, ok := a.Next()
			if !ok {
				break
			}
			n = appendAnnotation(&dst, ann, n)
		}
	}
	return append(dst, ']')
}

// appendAnnotation appends annotation ann flattened, after a comma when n, the count
// so far, is not 0, and returns the new count.
func appendAnnotation(dst *[]byte, ann []byte, n int) int {
	typ, _ := jsonscan.Field(ann, "type")
	cite, _ := jsonscan.Field(ann, "url_citation")
	if !isString(typ, "url_citation") || len(cite) < 2 || cite[0] != '{' {
		return n
	}
	inner := bytes.TrimSpace(cite[1 : len(cite)-1])
	if n > 0 {
		*dst = append(*dst, ',')
	}
	*dst = append(*dst, `{"type":"url_citation"`...)
	if len(inner) > 0 {
		*dst = append(*dst, ',')
		*dst = appendCompactOr(*dst, inner, "")
	}
	*dst = append(*dst, '}')
	return n + 1
}

// appendLogprobs appends the Responses API's logprobs of a text for chat's logprobs
// object: its content list, whose entries (token, logprob, bytes, top_logprobs) have
// the same shape; [] when there is none.
func appendLogprobs(dst, lp []byte) []byte {
	if len(lp) > 0 && lp[0] == '{' {
		if c, ok := jsonscan.Field(lp, "content"); ok && len(c) > 0 && c[0] == '[' {
			return appendCompactOr(dst, c, "")
		}
	}
	return append(dst, "[]"...)
}

// The names of the events a bridged stream yields, each its type.
var (
	evCreated        = []byte("response.created")
	evInProgress     = []byte("response.in_progress")
	evItemAdded      = []byte("response.output_item.added")
	evItemDone       = []byte("response.output_item.done")
	evPartAdded      = []byte("response.content_part.added")
	evPartDone       = []byte("response.content_part.done")
	evTextDelta      = []byte("response.output_text.delta")
	evTextDone       = []byte("response.output_text.done")
	evAnnotation     = []byte("response.output_text.annotation.added")
	evRefusalDelta   = []byte("response.refusal.delta")
	evRefusalDone    = []byte("response.refusal.done")
	evReasoningDelta = []byte("response.reasoning_text.delta")
	evReasoningDone  = []byte("response.reasoning_text.done")
	evArgsDelta      = []byte("response.function_call_arguments.delta")
	evArgsDone       = []byte("response.function_call_arguments.done")
	evInputDelta     = []byte("response.custom_tool_call_input.delta")
	evInputDone      = []byte("response.custom_tool_call_input.done")
	evCompleted      = []byte("response.completed")
	evIncomplete     = []byte("response.incomplete")
	evFailed         = []byte("response.failed")
)

// itemKind is the kind of an output item a stream is writing.
type itemKind uint8

const (
	itemNone itemKind = iota
	itemReasoning
	itemMessage
	itemCall
)

// partKind is the kind of a message's (or reasoning item's) content part.
type partKind uint8

const (
	partNone partKind = iota
	partText
	partRefusal
	partReasoning
)

// streamItem is the output item a stream is writing. Texts are held as the inside of
// a JSON string: the deltas' raw strings without their quotes, which join into one.
type streamItem struct {
	kind  itemKind
	id    [52]byte
	idLen int
	// index is the item's output_index.
	index int
	// part is the content part under way, content its content_index; parts holds
	// the done parts, a JSON array's inside.
	part    partKind
	content int
	parts   []byte
	// text is the part's text (or refusal, or reasoning text), anns its
	// annotations and logprobs its logprobs (JSON arrays' insides), nAnns their count.
	text, anns, logprobs []byte
	nAnns                int
	// tool is a function call's index in the chat stream; callID and name its raw
	// JSON strings, ns its namespace's (empty for none: lookupCall), args its
	// arguments (the inside of a JSON string).
	tool             int64
	callID, name, ns []byte
	args             []byte
	// custom is set for a custom tool's call: input is its input so far (the inside
	// of a JSON string), which scan reads from args.
	custom bool
	input  []byte
	scan   inputScan
	// held is set while a call's item is not added yet (addCall): its name, which
	// says its kind, has not come, or a call before it is held. Its pieces wait in
	// args, which keeps them anyway.
	held bool
	// blocks is a reasoning item's thinking blocks, a JSON array, empty for none.
	blocks []byte
}

// reset empties c for the pool; a buffer one long stream grew goes with it.
func (c *streamItem) reset() {
	*c = streamItem{parts: trimBuf(c.parts), text: trimBuf(c.text), anns: trimBuf(c.anns), logprobs: trimBuf(c.logprobs),
		callID: trimBuf(c.callID), name: trimBuf(c.name), ns: trimBuf(c.ns), args: trimBuf(c.args), blocks: trimBuf(c.blocks),
		input: trimBuf(c.input)}
}

// bridgeStream is a chat completions stream read as a Responses API stream: each chat
// chunk becomes zero or more events, in OpenAI's order, each yielded by one Next;
// the events a chunk gives are written into one reused buffer (relayQueue).
type bridgeStream struct {
	relayQueue
	echo bridgeEcho
	head respHead
	// model is the response's model: the backend's, then the first chunk's.
	model     []byte
	seq       int64
	usage     Usage
	hasUsage  bool
	reasoning int64
	tier      ServiceTier
	// items holds the output items done, a JSON array's inside.
	items  []byte
	nItems int
	// cur is the reasoning item or message under way. calls are the function_call
	// items under way, in output_index order, those held for a name last (see
	// callDelta); cur is none while there are any. The slice keeps the state of the calls done behind its end,
	// their buffers reused by the next ones.
	cur   streamItem
	calls []streamItem
	// toolsBegun are the chat tool call indices begun, in order: a delta for one not
	// open adds to a call done.
	toolsBegun []int64
	// maxTool is the highest chat tool call index begun, -1 before any.
	maxTool int64
	scratch []byte
}

var bridgeStreamPool = sync.Pool{New: func() any {
	return &bridgeStream{relayQueue: relayQueue{pend: make([]byte, 0, 1024)}, echo: bridgeEcho{buf: make([]byte, 0, 512)}, maxTool: -1}
}}

func acquireBridgeStream() *bridgeStream {
	s := bridgeStreamPool.Get().(*bridgeStream)
	newID(&s.head.id)
	return s
}

// reset readies s for the pool; a buffer one long stream grew goes with it.
func (s *bridgeStream) reset() {
	s.relayQueue.reset()
	s.echo.buf, s.echo.more = trimBuf(s.echo.buf), trimBuf(s.echo.more)
	s.head = respHead{}
	s.model = trimBuf(s.model)
	s.seq, s.usage, s.hasUsage, s.reasoning, s.tier = 0, Usage{}, false, 0, ServiceTier{}
	s.items, s.nItems = trimBuf(s.items), 0
	s.cur.reset()
	// append grows the slice past maxPooledCalls (to 18 for 10 calls): kept up to
	// twice that.
	if cap(s.calls) > 2*maxPooledCalls {
		s.calls = nil
	} else {
		s.calls = s.calls[:cap(s.calls)]
		for i := range s.calls {
			s.calls[i].reset()
		}
		s.calls = s.calls[:0]
	}
	s.maxTool = -1
	if cap(s.toolsBegun) > maxOpenCalls {
		s.toolsBegun = nil
	}
	s.toolsBegun = s.toolsBegun[:0]
	s.scratch = trimBuf(s.scratch)
}

// maxPooledCalls is how many calls' state a pooled stream keeps: a chat answer rarely
// has more parallel calls.
const maxPooledCalls = 16

// trimBuf is b emptied, or nil when it grew past what a pooled buffer keeps.
func trimBuf(b []byte) []byte {
	if cap(b) > maxPooledBuffer {
		return nil
	}
	return b[:0]
}

// Close implements Events.
func (s *bridgeStream) Close() error {
	err := s.closeInner()
	s.reset()
	bridgeStreamPool.Put(s)
	return err
}

// errToolReopened is a chat stream that adds to a tool call after its item was done
// (after text or reasoning began, or after its arguments were whole and another call
// began): the Responses API's items are done once and for all.
var errToolReopened = errors.Join(ErrStreamCut, ErrBadResponse, errors.New("upstream stream resumed a tool call after another output began"))

// maxOpenCalls bounds the function_call items a stream keeps open at once: a chat
// answer has no more calls than the request's tools allow, and an upstream that
// opens more is sending garbage.
const maxOpenCalls = 128

// errTooManyCalls is a chat stream that opens more than maxOpenCalls tool calls at
// once.
var errTooManyCalls = errors.Join(ErrStreamCut, ErrBadResponse, errors.New("upstream stream opened more than 128 tool calls at once"))

// Next implements Events.
func (s *bridgeStream) Next(ev *Event) error { return s.pull(ev, s) }

// streamUsage implements relay: the terminal event carries the usage and the
// service tier.
func (s *bridgeStream) streamUsage() (Usage, bool) {
	u := s.usage
	u.Tier = s.tier
	return u, s.hasUsage
}

// begin implements relay: response.created and response.in_progress, once.
func (s *bridgeStream) begin() {
	if s.begun {
		return
	}
	s.begun = true
	if s.head.created == 0 {
		s.head.created = time.Now().Unix()
	}
	s.head.model = s.model
	for _, name := range [...][]byte{evCreated, evInProgress} {
		s.open(name)
		s.pend = append(s.pend, `,"response":`...)
		s.pend = appendResponse(s.pend, &s.head, &s.echo, nil, nil)
		s.emit(name, false)
	}
}

// open begins event name in pend: its type and sequence number.
func (s *bridgeStream) open(name []byte) {
	s.pend = append(s.pend, `{"type":"`...)
	s.pend = append(s.pend, name...)
	s.pend = append(s.pend, `","sequence_number":`...)
	s.pend = strconv.AppendInt(s.pend, s.seq, 10)
	s.seq++
}

// emit ends the event open began.
func (s *bridgeStream) emit(name []byte, content bool) {
	s.pend = append(s.pend, '}')
	s.mark(name, content)
}

// itemRef appends the current item's item_id and output_index, and with part its
// content_index.
func (s *bridgeStream) itemRef(part bool) {
	s.ref(&s.cur, part)
}

// ref appends item c's item_id and output_index, and with part its content_index.
func (s *bridgeStream) ref(c *streamItem, part bool) {
	s.pend = append(s.pend, `,"item_id":"`...)
	s.pend = append(s.pend, c.id[:c.idLen]...)
	s.pend = append(s.pend, `","output_index":`...)
	s.pend = strconv.AppendInt(s.pend, int64(c.index), 10)
	if part {
		s.pend = append(s.pend, `,"content_index":`...)
		s.pend = strconv.AppendInt(s.pend, int64(c.content), 10)
	}
}

// take implements relay: the response's created and model are the first chunk's
// (Azure's first, with "model": "", names none: the response begins with the first
// that names the model that answers), its usage the usage chunk's, its service tier
// the last chunk's that names one.
func (s *bridgeStream) take(iev *Event, c *chatChunk) {
	if !s.begun {
		if len(c.created) > 0 {
			s.head.created, _ = jsonscan.Int(c.created)
		}
		if c.model != nil {
			s.model = append(s.model[:0], c.model...)
		}
	}
	if iev.HasUsage {
		s.usage, s.hasUsage = iev.Usage, true
		s.reasoning = reasoningTokens(c.usage)
	}
	if len(iev.Usage.Tier.Bytes()) > 0 {
		s.tier = iev.Usage.Tier
	}
}

// nonEmptyArray reports whether raw is an array with an element.
func nonEmptyArray(raw []byte) bool {
	var a jsonscan.Array
	if !a.Reset(raw) {
		return false
	}
	_, ok := a.Next()
	return ok
}

// choice implements relay: the response's status is the finish_reason's, and the
// delta's pieces go out in this order, the annotations last.
func (s *bridgeStream) choice(c *chatChoice) error {
	if c.finish != nil {
		s.head.status = statusOf(c.finish)
	}
	if nonEmpty(c.reasoning) {
		s.reasoningDelta(c.reasoning)
	}
	if nonEmptyArray(c.blocks) {
		s.thinkingBlocks(c.blocks)
	}
	if nonEmpty(c.content) {
		s.textDelta(c.content, c.logprobs)
	}
	if nonEmpty(c.refusal) {
		s.refusalDelta(c.refusal)
	}
	if err := readCalls(c.calls, s); err != nil {
		return err
	}
	var a jsonscan.Array
	if a.Reset(c.anns) {
		for {
			ann, ok := a.Next()
			if !ok {
				break
			}
			s.annotation(ann)
		}
	}
	return nil
}

// nonEmpty reports whether raw is a JSON string with text.
func nonEmpty(raw []byte) bool { return len(raw) > 2 && raw[0] == '"' }

// openItem ends the items under way (function calls included) and begins a
// reasoning item or a message, k.
func (s *bridgeStream) openItem(k itemKind) {
	s.closeItem(statusCompleted)
	c := &s.cur
	prefix := "msg_"
	if k == itemReasoning {
		prefix = "rs_"
	}
	c.kind, c.index, c.part, c.content = k, s.nItems, partNone, -1
	c.idLen = len(appendItemID(c.id[:0], prefix))
	c.parts, c.blocks = c.parts[:0], c.blocks[:0]
	s.nItems++
	s.open(evItemAdded)
	s.pend = append(s.pend, `,"output_index":`...)
	s.pend = strconv.AppendInt(s.pend, int64(c.index), 10)
	if k == itemMessage {
		s.pend = append(s.pend, `,"item":{"type":"message","id":"`...)
		s.pend = append(s.pend, c.id[:c.idLen]...)
		s.pend = append(s.pend, `","status":"in_progress","role":"assistant","content":[]}`...)
	} else {
		s.pend = append(s.pend, `,"item":{"type":"reasoning","id":"`...)
		s.pend = append(s.pend, c.id[:c.idLen]...)
		s.pend = append(s.pend, `","summary":[],"content":[]}`...)
	}
	s.emit(evItemAdded, false)
}

// openPart ends the content part under way and begins one of kind p.
func (s *bridgeStream) openPart(p partKind) {
	s.closePart()
	c := &s.cur
	c.part = p
	c.content++
	c.text, c.anns, c.logprobs, c.nAnns = c.text[:0], c.anns[:0], c.logprobs[:0], 0
	s.open(evPartAdded)
	s.itemRef(true)
	switch p {
	case partText:
		s.pend = append(s.pend, `,"part":{"type":"output_text","text":"","annotations":[],"logprobs":[]}`...)
	case partRefusal:
		s.pend = append(s.pend, `,"part":{"type":"refusal","refusal":""}`...)
	default:
		s.pend = append(s.pend, `,"part":{"type":"reasoning_text","text":""}`...)
	}
	s.emit(evPartAdded, false)
}

// closePart ends the content part under way: its done event and content_part.done,
// the part kept for its item.
func (s *bridgeStream) closePart() {
	c := &s.cur
	if c.part == partNone {
		return
	}
	// The part, whole, goes into the item's parts; the events copy it.
	if len(c.parts) > 0 {
		c.parts = append(c.parts, ',')
	}
	at := len(c.parts)
	switch c.part {
	case partText:
		c.parts = append(c.parts, `{"type":"output_text","text":"`...)
		c.parts = append(c.parts, c.text...)
		c.parts = append(c.parts, `","annotations":[`...)
		c.parts = append(c.parts, c.anns...)
		c.parts = append(c.parts, `],"logprobs":[`...)
		c.parts = append(c.parts, c.logprobs...)
		c.parts = append(c.parts, "]}"...)
		s.open(evTextDone)
		s.itemRef(true)
		s.pend = append(s.pend, `,"text":"`...)
		s.pend = append(s.pend, c.text...)
		s.pend = append(s.pend, `","logprobs":[`...)
		s.pend = append(s.pend, c.logprobs...)
		s.pend = append(s.pend, ']')
		s.emit(evTextDone, false)
	case partRefusal:
		c.parts = append(c.parts, `{"type":"refusal","refusal":"`...)
		c.parts = append(c.parts, c.text...)
		c.parts = append(c.parts, `"}`...)
		s.open(evRefusalDone)
		s.itemRef(true)
		s.pend = append(s.pend, `,"refusal":"`...)
		s.pend = append(s.pend, c.text...)
		s.pend = append(s.pend, '"')
		s.emit(evRefusalDone, false)
	default:
		c.parts = append(c.parts, `{"type":"reasoning_text","text":"`...)
		c.parts = append(c.parts, c.text...)
		c.parts = append(c.parts, `"}`...)
		s.open(evReasoningDone)
		s.itemRef(true)
		s.pend = append(s.pend, `,"text":"`...)
		s.pend = append(s.pend, c.text...)
		s.pend = append(s.pend, '"')
		s.emit(evReasoningDone, false)
	}
	s.open(evPartDone)
	s.itemRef(true)
	s.pend = append(s.pend, `,"part":`...)
	s.pend = append(s.pend, c.parts[at:]...)
	s.emit(evPartDone, false)
	c.part = partNone
}

// closeItem ends the items under way, the last with status st for a message or
// function call: the reasoning item or message, or every function call open.
func (s *bridgeStream) closeItem(st respStatus) {
	if len(s.calls) > 0 {
		s.closeCalls(len(s.calls), st)
		return
	}
	c := &s.cur
	if c.kind == itemNone {
		return
	}
	s.closePart()
	s.itemDone(c, st)
}

// closeCalls ends the first n function calls open, in output_index order, the last
// with status st and the others completed; the calls left open move to the front.
func (s *bridgeStream) closeCalls(n int, st respStatus) {
	// Cut short (max_output_tokens, a content filter, an error), the calls whose
	// arguments are not whole are the ones cut: with interleaved calls that need not be the last.
	// When every call is whole, the last takes the status, as a message would.
	cut := -1
	if st.incomplete() || st == statusFailed {
		for i := range n {
			if !s.wholeArgs(&s.calls[i]) {
				cut = i
				break
			}
		}
	}
	for i := range n {
		c := &s.calls[i]
		if c.held {
			// Done while held: nameless, or behind a nameless call done first.
			s.addCall(c)
		}
		if c.custom {
			s.inputDone(c)
		} else {
			s.open(evArgsDone)
			s.ref(c, false)
			s.pend = append(s.pend, `,"arguments":"`...)
			s.pend = append(s.pend, c.args...)
			s.pend = append(s.pend, `","name":`...)
			s.pend = append(s.pend, c.name...)
			s.emit(evArgsDone, false)
		}
		switch {
		case cut < 0 && i == n-1, cut >= 0 && !s.wholeArgs(c):
			s.itemDone(c, st)
		default:
			s.itemDone(c, statusCompleted)
		}
	}
	// Swapped, not copied: each slot keeps buffers of its own.
	for i := n; i < len(s.calls); i++ {
		s.calls[i-n], s.calls[i] = s.calls[i], s.calls[i-n]
	}
	s.calls = s.calls[:len(s.calls)-n]
	// Calls named but held behind those done are first now.
	s.addHeld()
}

// itemDone writes item c, whole with status st, into the response's output and
// response.output_item.done.
func (s *bridgeStream) itemDone(c *streamItem, st respStatus) {
	if len(s.items) > 0 {
		s.items = append(s.items, ',')
	}
	at := len(s.items)
	s.items = appendItem(s.items, c, st)
	s.open(evItemDone)
	s.pend = append(s.pend, `,"output_index":`...)
	s.pend = strconv.AppendInt(s.pend, int64(c.index), 10)
	s.pend = append(s.pend, `,"item":`...)
	s.pend = append(s.pend, s.items[at:]...)
	s.emit(evItemDone, false)
	c.kind = itemNone
}

// appendItem appends item c, whole, with status st.
func appendItem(dst []byte, c *streamItem, st respStatus) []byte {
	switch c.kind {
	case itemMessage:
		dst = append(dst, `{"type":"message","id":"`...)
		dst = append(dst, c.id[:c.idLen]...)
		dst = append(dst, `","status":`...)
		dst = append(dst, st.itemStatus()...)
		dst = append(dst, `,"role":"assistant","content":[`...)
		dst = append(dst, c.parts...)
		return append(dst, "]}"...)
	case itemReasoning:
		dst = append(dst, `{"type":"reasoning","id":"`...)
		dst = append(dst, c.id[:c.idLen]...)
		dst = append(dst, `","summary":[],"content":[`...)
		dst = append(dst, c.parts...)
		dst = append(dst, ']')
		if len(c.blocks) > 0 {
			dst = appendEncryptedThinking(dst, c.blocks)
		}
		return append(dst, '}')
	}
	if c.custom {
		dst = append(dst, `{"type":"custom_tool_call","id":"`...)
	} else {
		dst = append(dst, `{"type":"function_call","id":"`...)
	}
	dst = append(dst, c.id[:c.idLen]...)
	dst = append(dst, `","call_id":`...)
	dst = append(dst, c.callID...)
	dst = append(dst, `,"name":`...)
	dst = append(dst, c.name...)
	if len(c.ns) > 0 {
		dst = append(dst, `,"namespace":`...)
		dst = append(dst, c.ns...)
	}
	if c.custom {
		dst = append(dst, `,"input":"`...)
		dst = append(dst, c.input...)
	} else {
		dst = append(dst, `,"arguments":"`...)
		dst = append(dst, c.args...)
	}
	dst = append(dst, `","status":`...)
	dst = append(dst, st.itemStatus()...)
	return append(dst, '}')
}

// delta opens the delta event name of part p of an item of kind k, both begun when
// they are not the ones under way (a reasoning part, in an item a redacted block
// began, too), with text, a raw JSON string, which the part keeps; the caller ends
// the event.
func (s *bridgeStream) delta(k itemKind, p partKind, name, text []byte) {
	if s.cur.kind != k {
		s.openItem(k)
	}
	if s.cur.part != p {
		s.openPart(p)
	}
	s.cur.text = append(s.cur.text, text[1:len(text)-1]...)
	s.open(name)
	s.itemRef(true)
	s.pend = append(s.pend, `,"delta":`...)
	s.pend = append(s.pend, text...)
}

// reasoningDelta adds thinking text, a raw JSON string, to the reasoning item.
func (s *bridgeStream) reasoningDelta(text []byte) {
	s.delta(itemReasoning, partReasoning, evReasoningDelta, text)
	s.emit(evReasoningDelta, true)
}

// thinkingBlocks adds a thinking_blocks delta's blocks (the Anthropic translation
// sends each block whole once it ends) to the reasoning item, which one begins when
// no reasoning text came before: a redacted block, or a thinking block whose text
// the model left out. They go out in the item's encrypted_content when it is done.
func (s *bridgeStream) thinkingBlocks(blocks []byte) {
	c := &s.cur
	if c.kind != itemReasoning {
		s.openItem(itemReasoning)
		// Thinking generated, its text left out: the answer began.
		s.marks[len(s.marks)-1].content = true
	}
	var a jsonscan.Array
	a.Reset(blocks)
	for {
		b, ok := a.Next()
		if !ok {
			return
		}
		if len(c.blocks) == 0 {
			c.blocks = append(c.blocks, '[')
		} else {
			c.blocks[len(c.blocks)-1] = ','
		}
		c.blocks = appendCompactOr(c.blocks, b, "")
		c.blocks = append(c.blocks, ']')
	}
}

// textDelta adds text, a raw JSON string, to the message's output_text part, with the
// chunk's logprobs (chat's logprobs object) when it has them.
func (s *bridgeStream) textDelta(text, logprobs []byte) {
	s.delta(itemMessage, partText, evTextDelta, text)
	c := &s.cur
	s.pend = append(s.pend, `,"logprobs":`...)
	at := len(s.pend)
	s.pend = appendLogprobs(s.pend, logprobs)
	if list := s.pend[at+1 : len(s.pend)-1]; len(list) > 0 {
		if len(c.logprobs) > 0 {
			c.logprobs = append(c.logprobs, ',')
		}
		c.logprobs = append(c.logprobs, list...)
	}
	s.emit(evTextDelta, true)
}

// refusalDelta adds a refusal's text, a raw JSON string, to the message's refusal part.
func (s *bridgeStream) refusalDelta(text []byte) {
	s.delta(itemMessage, partRefusal, evRefusalDelta, text)
	s.emit(evRefusalDelta, true)
}

// annotation adds a chat annotation of the text part under way (Anthropic's web
// search citations, which the translation gives once the text block ends).
func (s *bridgeStream) annotation(ann []byte) {
	c := &s.cur
	if c.kind != itemMessage || c.part != partText {
		return
	}
	at := len(c.anns)
	if n := appendAnnotation(&c.anns, ann, c.nAnns); n == c.nAnns {
		return
	}
	if c.nAnns > 0 {
		at++ // past the comma
	}
	s.open(evAnnotation)
	s.itemRef(true)
	s.pend = append(s.pend, `,"annotation_index":`...)
	s.pend = strconv.AppendInt(s.pend, int64(c.nAnns), 10)
	s.pend = append(s.pend, `,"annotation":`...)
	s.pend = append(s.pend, c.anns[at:]...)
	s.emit(evAnnotation, false)
	c.nAnns++
}

// callDelta implements callRelay: the first delta of a call (its index, id and name)
// begins a function_call item (or a custom tool's custom_tool_call), its arguments
// come in pieces.
//
// Each chat index is its own item, begun (response.output_item.added, its name in
// it) when the index first appears (named: below), and its argument deltas name it,
// so a stream whose parallel calls interleave (index 0, 1, 0, 1: some OpenAI-compatible servers
// send them so, and chat clients join them by index) is served as calls one after
// the other are. A call is done once its arguments can take no more: when a new call
// begins, the calls open first whose arguments are already a whole JSON value are
// done then, in output_index order, stopping at one that is not (it may be
// interleaved, and items are done in output_index order so that the response's
// output is in that order too). A stream of calls one after the other thus gets each
// call done as the next begins, as OpenAI streams them. The calls still open are done
// at the stream's end (its usage chunk, a finish chunk with usage, [DONE]), or when
// text, a refusal or reasoning comes (rare): the calls are done first, the message
// or reasoning item taking the next output_index, so that every event names an item
// whose index is below those begun after it. Adding to a call done is
// errToolReopened, more than maxOpenCalls calls open errTooManyCalls.
//
// A call whose first delta names no tool (some servers send the id and arguments
// first, the name in a later delta) is held: its item is added once the name comes,
// of the kind the name says, the pieces held going out then in one delta of that
// kind (addCall), so that a client never sees an item change its kind or name. The
// calls begun after it wait too (items are added in output_index order), their
// pieces held alike. A call done while held (its arguments whole as the next
// begins, text after it, the stream's end) is added then, one without a name as a
// function_call whose name is empty. Held calls count against maxOpenCalls; what
// they hold is the arguments their items keep anyway.
func (s *bridgeStream) callDelta(n int64, numbered bool, id, name, args []byte) error {
	switch {
	case numbered:
	case nonEmpty(id) || len(s.calls) == 0:
		// A server that numbers no calls: a call with an id begins one.
		n = s.maxTool + 1
	default:
		n = s.calls[len(s.calls)-1].tool
	}
	c := s.openCall(n)
	switch {
	case c != nil:
		if c.held && nonEmpty(name) && len(c.name) == 2 {
			// The name came after the id: its item can be added, with those
			// held after it up to one still nameless.
			s.setCallName(c, name)
			s.addHeld()
		}
	case n <= s.maxTool && slices.Contains(s.toolsBegun, n):
		if !nonEmpty(args) {
			// A done call's delta that adds nothing (an empty arguments piece).
			return nil
		}
		return errToolReopened
	default:
		var err error
		if c, err = s.beginCall(n, id, name); err != nil {
			return err
		}
	}
	if !nonEmpty(args) {
		return nil
	}
	c.args = append(c.args, args[1:len(args)-1]...)
	if !c.held {
		s.callArgs(c, args[1:len(args)-1])
	}
	return nil
}

// callArgs sends piece, arguments of call c (the inside of a JSON string), in c's
// kind's delta: a function's response.function_call_arguments.delta, or the piece of
// a custom tool's input it gives (inputDelta).
func (s *bridgeStream) callArgs(c *streamItem, piece []byte) {
	if c.custom {
		s.inputDelta(c, piece)
		return
	}
	s.open(evArgsDelta)
	s.ref(c, false)
	s.pend = append(s.pend, `,"delta":"`...)
	s.pend = append(s.pend, piece...)
	s.pend = append(s.pend, '"')
	s.emit(evArgsDelta, true)
}

// openCall is the function call of chat index n open, nil when there is none.
func (s *bridgeStream) openCall(n int64) *streamItem {
	for i := len(s.calls) - 1; i >= 0; i-- {
		if s.calls[i].tool == n {
			return &s.calls[i]
		}
	}
	return nil
}

// beginCall begins the function call of chat index n, with the raw id and name its
// first delta has: the item under way before it is done, and the calls open done
// that callDelta says are.
func (s *bridgeStream) beginCall(n int64, id, name []byte) (*streamItem, error) {
	if len(s.calls) == 0 {
		s.closeItem(statusCompleted)
	} else if w := s.wholeCalls(); w > 0 {
		s.closeCalls(w, statusCompleted)
	}
	if len(s.calls) >= maxOpenCalls {
		return nil, errTooManyCalls
	}
	if len(s.calls) < cap(s.calls) {
		s.calls = s.calls[:len(s.calls)+1]
	} else {
		s.calls = append(s.calls, streamItem{})
	}
	c := &s.calls[len(s.calls)-1]
	c.kind, c.index, c.tool = itemCall, s.nItems, n
	c.custom, c.input, c.scan = false, c.input[:0], inputScan{}
	s.nItems++
	// A call may first appear below the highest index begun (heads sent 1, 0).
	s.maxTool = max(s.maxTool, n)
	s.toolsBegun = append(s.toolsBegun, n)
	c.args = c.args[:0]
	if nonEmpty(id) {
		c.callID = append(c.callID[:0], id...)
	} else {
		c.callID = append(appendItemID(append(c.callID[:0], '"'), "call_"), '"')
	}
	if jsonscan.IsString(name) {
		s.setCallName(c, name)
	} else {
		c.name, c.ns = append(c.name[:0], strEmptyString...), c.ns[:0]
	}
	c.held = len(c.name) == 2 || len(s.calls) > 1 && s.calls[len(s.calls)-2].held
	if !c.held {
		s.addCall(c)
	}
	return c, nil
}

// addCall adds call c's item (response.output_item.added), of the kind its name says
// (a custom tool's call, else a function's: nameless, too), then sends what came of
// its arguments while it was held, in one delta of that kind.
func (s *bridgeStream) addCall(c *streamItem) {
	c.held = false
	prefix := "fc_"
	if c.custom {
		prefix = "ctc_"
	}
	c.idLen = len(appendItemID(c.id[:0], prefix))
	// The item is added without arguments, as when its name came first; those
	// held follow as its deltas.
	held := c.args
	c.args = c.args[:0]
	s.open(evItemAdded)
	s.pend = append(s.pend, `,"output_index":`...)
	s.pend = strconv.AppendInt(s.pend, int64(c.index), 10)
	s.pend = append(s.pend, `,"item":`...)
	s.pend = appendItem(s.pend, c, statusInProgress)
	s.emit(evItemAdded, false)
	if c.args = held; len(held) > 0 {
		s.callArgs(c, held)
	}
}

// addHeld adds the items of the calls held whose names came, in output_index order,
// up to the first still nameless.
func (s *bridgeStream) addHeld() {
	for i := range s.calls {
		c := &s.calls[i]
		switch {
		case !c.held:
		case len(c.name) == 2:
			return
		default:
			s.addCall(c)
		}
	}
}

// setCallName sets call c, not added yet, its name from the chat call's, name, a raw
// JSON string: with its namespace when it names a tool of a namespace tool, a custom
// tool's call when it names one (bridgeEcho.callName).
func (s *bridgeStream) setCallName(c *streamItem, name []byte) {
	fn, ns, custom := s.echo.callName(name)
	c.name, c.ns, c.custom = append(c.name[:0], fn...), append(c.ns[:0], ns...), custom
}

// inputDelta reads piece, arguments of custom tool call c (the inside of a JSON
// string): the piece of its input it gives goes out in
// response.custom_tool_call_input.delta.
func (s *bridgeStream) inputDelta(c *streamItem, piece []byte) {
	if st := c.scan.state; st == inputOther || st == inputDone {
		return
	}
	var ok bool
	if s.scratch, ok = jsonscan.AppendUnescape(s.scratch[:0], piece); !ok {
		return
	}
	at := len(c.input)
	c.input = c.scan.feed(c.input, s.scratch)
	s.inputPiece(c, at)
}

// inputPiece sends c.input from at on, when there is any, in
// response.custom_tool_call_input.delta.
func (s *bridgeStream) inputPiece(c *streamItem, at int) {
	if len(c.input) == at {
		return
	}
	s.open(evInputDelta)
	s.ref(c, false)
	s.pend = append(s.pend, `,"delta":"`...)
	s.pend = append(s.pend, c.input[at:]...)
	s.pend = append(s.pend, '"')
	s.emit(evInputDelta, true)
}

// inputDone ends custom tool call c's input: what the scan kept goes out, or, when
// the arguments were not {"input":"..."}, their whole text, which no delta gave
// before; then response.custom_tool_call_input.done.
func (s *bridgeStream) inputDone(c *streamItem) {
	at := len(c.input)
	if c.scan.found() {
		c.input = c.scan.finish(c.input)
	} else {
		at, c.input = 0, append(c.input[:0], c.args...)
	}
	s.inputPiece(c, at)
	s.open(evInputDone)
	s.ref(c, false)
	s.pend = append(s.pend, `,"input":"`...)
	s.pend = append(s.pend, c.input...)
	s.pend = append(s.pend, '"')
	s.emit(evInputDone, false)
}

// wholeCalls counts the calls open first whose arguments are a whole JSON value.
func (s *bridgeStream) wholeCalls() int {
	for i := range s.calls {
		if !s.wholeArgs(&s.calls[i]) {
			return i
		}
	}
	return len(s.calls)
}

// wholeArgs reports whether call c's arguments so far are a whole JSON value.
func (s *bridgeStream) wholeArgs(c *streamItem) bool {
	var ok bool
	s.scratch, ok = wholeJSON(s.scratch[:0], c.args)
	return ok
}

// wholeJSON reports whether args, a tool call's arguments so far (its pieces' JSON
// strings joined without their quotes), are a whole JSON value; scratch holds them
// decoded, and is returned for reuse.
func wholeJSON(scratch, args []byte) ([]byte, bool) {
	scratch, ok := jsonscan.AppendUnescape(scratch, args)
	return scratch, ok && jsonscan.Valid(scratch)
}

// finish ends the stream at the chat stream's end: the items under way are done, and
// the terminal event holds the whole response.
func (s *bridgeStream) finish() {
	s.begin()
	if s.head.status == statusInProgress {
		s.head.status = statusCompleted
	}
	s.closeItem(s.head.status)
	name := evCompleted
	if s.head.status.incomplete() {
		name = evIncomplete
	}
	s.terminal(name)
}

// terminal writes the terminal event name, holding the response with its output and
// usage.
func (s *bridgeStream) terminal(name []byte) {
	var usage []byte
	if s.hasUsage {
		s.scratch = appendRespUsage(s.scratch[:0], &s.usage, s.reasoning)
		usage = s.scratch
	}
	if len(s.tier.Bytes()) > 0 {
		at := len(s.scratch)
		s.scratch = jsonscan.AppendQuote(s.scratch, b2s(s.tier.Bytes()))
		s.head.tier = s.scratch[at:]
		if usage != nil {
			usage = s.scratch[:at]
		}
	}
	s.open(name)
	s.pend = append(s.pend, `,"response":`...)
	s.pend = appendResponse(s.pend, &s.head, &s.echo, s.items, usage)
	s.emit(name, false)
	m := &s.marks[len(s.marks)-1]
	m.usage, m.err = true, s.head.status == statusFailed
	s.ended = true
}

var (
	strServerErrorCode = []byte(`"server_error"`)
	strStreamFailed    = []byte(`"The upstream model server failed in the middle of the answer."`)
)

// fail ends the stream at a chat error object (data): the items under way are done,
// incomplete, and response.failed holds them with the error's code (its code, else
// its type) and message.
func (s *bridgeStream) fail(data []byte) {
	s.begin()
	s.closeItem(statusFailed)
	s.head.status = statusFailed
	s.head.errCode, s.head.errMsg = strServerErrorCode, strStreamFailed
	e, _ := jsonscan.Field(data, "error")
	switch {
	case nonEmpty(e):
		s.head.errMsg = e
	case len(e) > 0 && e[0] == '{':
		var code, typ []byte
		var it jsonscan.Iter
		it.Reset(e)
		for {
			k, v, ok := it.Next()
			if !ok {
				break
			}
			switch string(k) {
			case "message":
				if nonEmpty(v) {
					s.head.errMsg = v
				}
			case "code":
				code = v
			case "type":
				typ = v
			}
		}
		if nonEmpty(code) {
			s.head.errCode = code
		} else if nonEmpty(typ) {
			s.head.errCode = typ
		}
	}
	s.terminal(evFailed)
}

var (
	_ Events    = (*bridgeStream)(nil)
	_ relay     = (*bridgeStream)(nil)
	_ callRelay = (*bridgeStream)(nil)
)
