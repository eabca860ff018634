package providers

import (
	"bytes"
	"strconv"
	"time"

	"github.com/tollgate/tollgate/internal/jsonscan"
	"github.com/valyala/fasthttp"
)

// A Messages call is the client's own Anthropic Messages API request. It goes to the
// backend as it came but for its model (and the members drop_params names): natively
// to an Anthropic backend, and to an OpenAI-compatible server at {base_url}/messages,
// where vLLM (and SGLang, Ollama) serve the same API. Its answers, streams and errors
// come back in that API's shape, usage read from them as the Anthropic translation
// reads it.

// sendMessages sends a Messages call (or its token count) on t for the openai
// provider.
func (o *openAI) sendMessages(t *Target, call *Call, out *fasthttp.Response, res *Result) error {
	req := o.request(t, call, call.Kind)
	defer fasthttp.ReleaseRequest(req)
	buf := bodyPool.Get().(*[]byte)
	defer putBody(buf)
	*buf = appendBody((*buf)[:0], call, o.model, false)
	if len(o.drop) > 0 {
		*buf = dropFields(*buf, o.drop)
	}
	req.SetBodyRaw(*buf)
	return messagesRoundTrip(t, req, call, out, res, o.timeout, o.maxBody, o.secrets)
}

// sendMessages sends a Messages call on t for the anthropic provider: the body
// prepare wrote, the backend's key, and the client's anthropic-version when it sent
// one (its body is written for that version), else the backend's.
func (a *anthropic) sendMessages(t *Target, call *Call, out *fasthttp.Response, res *Result) error {
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	copyForwardHeaders(&req.Header, call)
	req.Header.SetMethodBytes(strPost)
	t.setRequestURL(req, call.Kind)
	req.Header.SetContentTypeBytes(strJSON)
	req.Header.SetBytesKV(strAcceptEncoding, strIdentity)
	if a.key != nil {
		req.Header.SetBytesKV(strXAPIKey, a.key)
	}
	if len(req.Header.PeekBytes(strAnthropicVersion)) == 0 {
		req.Header.SetBytesKV(strAnthropicVersion, a.version)
	}
	for _, h := range a.headers {
		setHeader(&req.Header, h[0], h[1])
	}
	req.SetBodyRaw(call.prepared)
	return messagesRoundTrip(t, req, call, out, res, a.timeout, a.maxBody, a.secrets)
}

// messagesRoundTrip sends req and gives out the upstream's answer: a message (its
// usage read into res), an event stream (res.Stream, read by an sseReader in its
// Messages mode), or an API error as the upstream wrote it.
func messagesRoundTrip(t *Target, req *fasthttp.Request, call *Call, out *fasthttp.Response, res *Result,
	timeout time.Duration, maxBody int64, secrets [][]byte) error {
	up, err := roundTrip(t, req, call, res, timeout)
	if err != nil {
		return err
	}
	status := up.StatusCode()
	if status < 200 || status > 299 {
		defer endAttempt(t, up)
		if !isErrorStatus(status) {
			return notAnswer(status)
		}
		// The gateway puts it in the Messages API's shape as it answers
		// (AnthropicErrorShape), once the context fallbacks have read it.
		return passError(up, out, status, maxBody, secrets, call.Hold)
	}
	if call.Stream {
		if err := notStreamed(t, up); err != nil {
			return err
		}
		out.SetStatusCode(status)
		s := acquireSSE()
		s.reset(up, t, up.BodyStream(), false)
		s.secrets = secrets
		s.messages = true
		res.Stream = s
		return nil
	}
	if coded(up.Header.ContentEncoding()) {
		if err := decodeBody(up, maxBody, call.Hold); err != nil {
			endAttempt(t, up)
			return err
		}
	}
	defer endAttempt(t, up)
	var u anthropicUsage
	ok, isError := scanMessage(up.Body(), &u, res)
	if !ok {
		return ErrBadResponse
	}
	res.Usage = u.usage()
	out.SetStatusCode(status)
	out.Header.SetContentTypeBytes(jsonType(up.Header.ContentType()))
	swapBody(out, up)
	if isError {
		maskBody(out, secrets)
	}
	return nil
}

// scanMessage reads a Messages API answer: ok when it is one JSON object, its usage
// into u, and whether it is an error object ("type": "error"). One without usage
// sets res's NoUsage (res not nil), and OutputBytes to the size of its content's
// generated text.
func scanMessage(body []byte, u *anthropicUsage, res *Result) (ok, isError bool) {
	var it jsonscan.Iter
	if it.Reset(body) != nil {
		return false, false
	}
	var content []byte
	usage := false
	for {
		k, v, more := it.Next()
		if !more {
			break
		}
		switch string(k) {
		case "usage":
			if !jsonscan.IsNull(v) {
				usage = usage || !usageNone(v)
				u.read(v)
			}
		case "type":
			isError = string(v) == `"error"`
		case "content":
			content = v
		}
	}
	ok = it.Err() == nil && jsonscan.SkipSpace(body, it.End()) == len(body)
	if ok && res != nil && !usage && !isError {
		res.NoUsage, res.OutputBytes = true, contentBytes(content)
	}
	return ok, isError
}

// anthropicErrorTypes are the Messages API's error types by the status they come
// with, for an error answer written in that shape.
var anthropicErrorTypes = [...]struct {
	status int
	typ    string
}{
	{400, "invalid_request_error"},
	{401, "authentication_error"},
	{402, "billing_error"},
	{403, "permission_error"},
	{404, "not_found_error"},
	{413, "request_too_large"},
	{429, "rate_limit_error"},
	{500, "api_error"},
	{503, "overloaded_error"},
	{504, "timeout_error"},
	{529, "overloaded_error"},
}

// knownAnthropicError reports whether t, a JSON value, is one of the Messages API's
// error types.
func knownAnthropicError(t []byte) bool {
	if !jsonscan.IsString(t) {
		return false
	}
	name := b2s(t[1 : len(t)-1])
	for _, e := range anthropicErrorTypes {
		if e.typ == name {
			return true
		}
	}
	return false
}

// AnthropicErrorType is the Messages API's error type for an answer of status.
func AnthropicErrorType(status int) string {
	for _, e := range anthropicErrorTypes {
		if e.status == status {
			return e.typ
		}
	}
	if status >= 500 {
		return "api_error"
	}
	return "invalid_request_error"
}

// AppendAnthropicError appends {"type":"error","error":{"type","message"}}, the
// Messages API's error body, with the request's ID when one is given, as Anthropic's
// answers carry theirs.
func AppendAnthropicError(dst []byte, typ, msg, requestID string) []byte {
	dst = append(dst, `{"type":"error","error":{"type":`...)
	dst = jsonscan.AppendQuote(dst, typ)
	dst = append(dst, `,"message":`...)
	dst = jsonscan.AppendQuote(dst, msg)
	dst = append(dst, '}')
	if requestID != "" {
		dst = append(dst, `,"request_id":`...)
		dst = jsonscan.AppendQuote(dst, requestID)
	}
	return append(dst, '}')
}

// AnthropicErrorShape leaves an upstream's error answer in out as it is when it is
// in the Messages API's shape with one of that API's error types (Anthropic's), and
// otherwise writes it so, keeping its message: vLLM's (that shape with its own type
// names, NotFoundError, and OpenAI's for a body it refuses), an OpenAI-shaped error
// (error.message), a flat one (a string error, message, FastAPI's detail), or a page
// with the status alone. An Anthropic SDK reads the type and message of the one shape
// only, and clients branch on Anthropic's types. The body written carries requestID,
// the request's ID, as the gateway's own errors do.
//
// A context-window refusal (ContextWindowExceeded) in other words than Anthropic's
// (vLLM's "This model's maximum context length is …", OpenAI's code
// context_length_exceeded) is written as Anthropic's, 400 invalid_request_error, its
// message opened with "prompt is too long: " and the upstream's words after it: that
// phrase is all the Messages API's clients recognise the refusal by (LangChain's
// ContextOverflowError, which its summarization middleware acts on; Claude Code's
// compaction), and through an OpenAI-compatible backend none would see one.
func AnthropicErrorShape(out *fasthttp.Response, requestID []byte) {
	body := out.Body()
	status := out.StatusCode()
	overflow := ContextWindowExceeded(status, body)
	if jsonscan.Valid(body) {
		if typ, ok := jsonscan.Field(body, "type"); ok && string(typ) == `"error"` {
			if e, ok := jsonscan.Field(body, "error"); ok && len(e) > 0 && e[0] == '{' {
				t, _ := jsonscan.Field(e, "type")
				m, _ := jsonscan.Field(e, "message")
				if knownAnthropicError(t) && jsonscan.IsString(m) && (!overflow || anthropicContextWords(m)) {
					return
				}
			}
		}
	}
	var msg []byte
	if jsonscan.Valid(body) {
		if e, ok := jsonscan.Field(body, "error"); ok {
			if m, ok := jsonscan.Field(e, "message"); ok {
				msg, _ = jsonscan.AppendUnquote(nil, m)
			} else if jsonscan.IsString(e) {
				msg, _ = jsonscan.AppendUnquote(nil, e)
			}
		}
		for _, name := range [...]string{"message", "detail"} {
			if len(msg) > 0 {
				break
			}
			if m, ok := jsonscan.Field(body, name); ok && jsonscan.IsString(m) {
				msg, _ = jsonscan.AppendUnquote(nil, m)
			}
		}
	}
	if overflow {
		if len(msg) == 0 {
			// Refused by its code or type alone.
			msg = strContextMessage[1 : len(strContextMessage)-1]
		}
		if !anthropicContextWords(msg) {
			m := make([]byte, 0, len(strPromptTooLongPrefix)+len(msg))
			msg = append(append(m, strPromptTooLongPrefix...), msg...)
		}
		status = fasthttp.StatusBadRequest
		out.SetStatusCode(status)
	}
	if len(msg) == 0 {
		msg = []byte("The upstream model server answered " + strconv.Itoa(status) + " " + fasthttp.StatusMessage(status) + ".")
	}
	out.Header.SetContentTypeBytes(strJSON)
	setAnswer(out, AppendAnthropicError(out.SwapBody(nil)[:0], AnthropicErrorType(status), b2s(msg), b2s(requestID)))
}

// strPromptTooLongPrefix opens a context-window refusal's message for the Messages
// API's clients, as Anthropic's own begins ("prompt is too long: 209353 tokens >
// 200000 maximum").
var strPromptTooLongPrefix = []byte("prompt is too long: ")

// anthropicContextWords reports whether msg, a message (a JSON string, or its text),
// already says a context-window refusal in Anthropic's words: "prompt is too long", or
// "… exceed context limit" (its refusal of a prompt and max_tokens together).
func anthropicContextWords(msg []byte) bool {
	return bytes.Contains(msg, strPromptTooLong) || bytes.Contains(msg, strExceedContextLimit)
}

// Messages API stream events, by their type.
var (
	strMessageStart = []byte(`"message_start"`)
	strMessageDelta = []byte(`"message_delta"`)
	strMessageStop  = []byte(`"message_stop"`)
	strBlockStart   = []byte(`"content_block_start"`)
	strBlockDelta   = []byte(`"content_block_delta"`)
	strPartialJSON  = []byte(`"partial_json"`)
	strThinkingKey  = []byte(`"thinking"`)
	strToolUse      = []byte(`"tool_use"`)
	strServerTool   = []byte(`"server_tool_use"`)
)

// inspectMessageEvent reads what the gateway needs of a Messages API stream event
// (data, its JSON): the usage (message_start's, then message_delta's, which the
// event ev carries whole: input from the start, output from the delta; message_start
// carries the prompt's as the usage so far), generated content (text, a tool call's
// input, thinking, a tool_use block begun) and the size of its text, and an error
// event. It reports whether the event is one JSON object and whether it is the
// stream's last: message_stop, or an error event, after which Anthropic sends
// nothing more (read on, an upstream that then stays silent would hold the client's
// stream until its timeout).
func (s *sseReader) inspectMessageEvent(data []byte, ev *Event) (ok, stop bool) {
	var it jsonscan.Iter
	if it.Reset(data) != nil {
		return false, false
	}
	var typ, delta, block, usage, message []byte
	for {
		k, v, more := it.Next()
		if !more {
			break
		}
		switch string(k) {
		case "type":
			typ = v
		case "delta":
			delta = v
		case "content_block":
			block = v
		case "usage":
			usage = v
		case "message":
			message = v
		}
	}
	if it.Err() != nil || jsonscan.SkipSpace(data, it.End()) != len(data) {
		return false, false
	}
	switch {
	case bytes.Equal(typ, strMessageStart):
		if u, ok := jsonscan.Field(message, "usage"); ok && !jsonscan.IsNull(u) {
			s.msgUsage.read(u)
			// The prompt's tokens, exact from the start: what a stream cut before
			// message_delta is settled with. The output count there (Anthropic
			// writes 1) is none yet.
			ev.Usage, ev.SoFar = s.msgUsage.usage(), true
			ev.Usage.Output = 0
		}
	case bytes.Equal(typ, strMessageDelta):
		if usage != nil && !jsonscan.IsNull(usage) {
			s.msgUsage.read(usage)
			ev.Usage, ev.HasUsage = s.msgUsage.usage(), true
		}
	case bytes.Equal(typ, strBlockDelta):
		// A delta is of one kind: the first found with text is its size.
		for _, key := range [...][]byte{strTextKey, strPartialJSON, strThinkingKey} {
			if ev.OutputBytes = textBytes(delta, key); ev.OutputBytes > 0 {
				break
			}
		}
		ev.Content = ev.OutputBytes > 0
	case bytes.Equal(typ, strBlockStart):
		if t, ok := jsonscan.Field(block, "type"); ok {
			ev.Content = bytes.Equal(t, strToolUse) || bytes.Equal(t, strServerTool)
		}
	case bytes.Equal(typ, strErrorType):
		ev.Error = true
		return true, true
	}
	return true, bytes.Equal(typ, strMessageStop)
}

// messageStop reports whether data, an event's payload, is a Messages API stream's
// message_stop.
func messageStop(data []byte) bool {
	typ, ok := jsonscan.Field(data, "type")
	return ok && bytes.Equal(typ, strMessageStop)
}
