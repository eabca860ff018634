package providers

import (
	"strconv"
	"sync"
	"time"

	"github.com/tollgate/tollgate/internal/jsonscan"
	"github.com/valyala/fasthttp"
)

// completionsChat serves legacy completions calls through the upstream's chat
// completions API, as MLflow AI Gateway's openai, azure and mistral providers serve
// llm/v1/completions: the prompt becomes one user message, and the chat answer comes
// back as a text_completion, each choice's message content as its text. OpenAI's chat
// models (gpt-4o, gpt-35-turbo) refuse the legacy /completions. Other calls go to the
// OpenAI API as they are.
type completionsChat struct {
	*openAI
	// tempScale multiplies a completions call's temperature; 0 leaves it as sent.
	tempScale float64
}

// openAIProvider is o, or o serving completions through chat when c asks for it.
func openAIProvider(o *openAI, c *Config) (Provider, preparer) {
	if !c.CompletionsViaChat {
		return o, nil
	}
	cc := &completionsChat{openAI: o, tempScale: c.CompletionsTemperatureScale}
	return cc, cc
}

var (
	errPromptNotOne = &requestError{"prompt", "The prompt must be one string: this model serves completions through its chat completions API, one prompt per request."}
	errNoPrompt     = &requestError{"prompt", "A prompt is required."}
)

// prepare implements preparer: a completions call becomes a chat completions request;
// a prompt that is not one string is refused before a target is leased. Other calls
// are sent by openAI.Send, which writes their body itself.
func (c *completionsChat) prepare(dst []byte, call *Call, out *fasthttp.Response) ([]byte, error) {
	if call.Kind != Completions {
		return dst, nil
	}
	start := len(dst)
	body, rerr := appendChatRequest(dst, call.Body, c.model, c.tempScale, c.forceUsage(call))
	if rerr != nil {
		writeOpenAIError(out, 400, strInvalidRequest, nil, rerr.param, []byte(rerr.msg))
		return body, errRefusedRequest
	}
	if len(c.drop) > 0 {
		body = body[:start+len(dropFields(body[start:], c.drop))]
	}
	if c.reasoning {
		body = append(body[:start], renameMaxTokens(body[start:])...)
	}
	return body, nil
}

// Send implements Provider; a completions call's body is call.prepared.
func (c *completionsChat) Send(t *Target, call *Call, out *fasthttp.Response, res *Result) error {
	if call.Kind != Completions {
		return c.openAI.Send(t, call, out, res)
	}
	req := c.request(t, call, Chat)
	defer fasthttp.ReleaseRequest(req)
	req.SetBodyRaw(call.prepared)
	up, err := c.answer(t, req, call, out, res)
	if err != nil {
		return err
	}
	if call.Stream {
		forceUsage := c.forceUsage(call)
		r := c.events(t, up, out, forceUsage)
		// The upstream's stream is chat's, and ends as chat's does.
		r.end.start(call.Choices, call.IncludeUsage || forceUsage)
		res.Stream = acquireTextStream(r, call.DeltaText, false)
		return nil
	}
	defer endAttempt(t, up)
	ok, isError := scanAnswerTo(up.Body(), &res.Usage, res)
	if !ok {
		return ErrBadResponse
	}
	b := out.SwapBody(nil)
	b, ok = appendTextCompletion(b[:0], up.Body(), strTextCompletion, false)
	setAnswer(out, b)
	if !ok {
		out.ResetBody()
		return ErrBadResponse
	}
	if isError {
		maskBody(out, c.secrets)
	}
	out.SetStatusCode(up.StatusCode())
	out.Header.SetContentTypeBytes(strJSON)
	return nil
}

// appendChatRequest appends the chat completions request for the completions request
// body: "prompt" becomes "messages" holding it as one user message, "model" is model
// (left out when model is empty: NoModel), "temperature" is multiplied by scale
// (unless 0) and, with forceUsage, stream_options asks for usage. Every other member
// goes as it came (max_tokens, stop, n, stream, user …), as MLflow passes a
// completions payload's parameters on; one the chat API lacks is the upstream's to
// refuse.
func appendChatRequest(dst, body, model []byte, scale float64, forceUsage bool) ([]byte, *requestError) {
	var it jsonscan.Iter
	if it.Reset(body) != nil {
		return dst, errNoPrompt
	}
	dst = append(dst, '{')
	prompt, hasModel, hasOpts := false, false, false
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		switch {
		case isKey(k, "prompt"):
			text, ok := onePrompt(v)
			if !ok || prompt {
				return dst, errPromptNotOne
			}
			prompt = true
			dst = appendMember(dst, strMessagesKey)
			dst = append(dst, `[{"role":"user","content":`...)
			dst = append(dst, text...)
			dst = append(dst, "}]"...)
			continue
		case isKey(k, "model"):
			hasModel = true
			if len(model) == 0 {
				continue // NoModel: the call goes with none
			}
			v = model
		case scale != 0 && isKey(k, "temperature"):
			if f, ok := jsonscan.Float(v); ok {
				dst = appendMember(dst, k)
				dst = strconv.AppendFloat(dst, f*scale, 'g', -1, 64)
				continue
			}
		case forceUsage && isKey(k, "stream_options"):
			hasOpts = true
			dst = appendMember(dst, k)
			dst = appendStreamOptions(dst, v)
			continue
		}
		dst = appendMember(dst, k)
		dst = append(dst, v...)
	}
	if it.Err() != nil || !prompt {
		return dst, errNoPrompt
	}
	if !hasModel && len(model) > 0 {
		dst = appendMember(dst, strModelKey)
		dst = append(dst, model...)
	}
	if forceUsage && !hasOpts {
		dst = appendMember(dst, strStreamOptionsKey)
		dst = append(dst, includeUsageJSON...)
	}
	return append(dst, '}'), nil
}

// appendMember appends the name of an object's next member, k raw (escapes kept),
// after a comma unless it is the first: dst ends in the object's '{' until a member
// is written, and a member's value never ends in one.
func appendMember(dst, k []byte) []byte {
	if dst[len(dst)-1] != '{' {
		dst = append(dst, ',')
	}
	dst = append(dst, '"')
	dst = append(dst, k...)
	return append(dst, '"', ':')
}

var (
	strMessagesKey      = []byte("messages")
	strModelKey         = []byte("model")
	strStreamOptionsKey = []byte("stream_options")
	strObjectKey        = []byte("object")
	strLogprobsKey      = []byte("logprobs")
	strDeltaKey         = []byte("delta")
	strTextKeyName      = []byte("text")
)

// onePrompt is the raw JSON string of a prompt that is one string: a string, or an
// array holding one string (OpenAI's legacy completions take both).
func onePrompt(v []byte) ([]byte, bool) {
	if jsonscan.IsString(v) {
		return v, true
	}
	var a jsonscan.Array
	if !a.Reset(v) {
		return nil, false
	}
	e, ok := a.Next()
	if !ok || !jsonscan.IsString(e) {
		return nil, false
	}
	if _, more := a.Next(); more {
		return nil, false
	}
	return e, true
}

var (
	strTextCompletion      = []byte(`"text_completion"`)
	strTextCompletionChunk = []byte(`"text_completion_chunk"`)
)

// appendTextCompletion appends the text completion for a chat completion (or chunk)
// body: its members as they are, but for object, which becomes object (a raw JSON
// string), and choices, each of whose message (or delta) becomes its text. With
// delta, a chunk's text stays in delta.content, as MLflow streams completions. ok is
// false when body is not a JSON object or a choice is not one.
func appendTextCompletion(dst, body, object []byte, delta bool) ([]byte, bool) {
	return appendCompletion(dst, body, object, delta, false)
}

// appendCompletion is appendTextCompletion, reading each choice's text from its text
// member when fromText is set: body is then a legacy completion (chunk), OpenAI's
// text_completion as Together, vLLM and TGI stream it, which with delta becomes
// MLflow's stream form as a chat chunk does.
func appendCompletion(dst, body, object []byte, delta, fromText bool) ([]byte, bool) {
	var it jsonscan.Iter
	if it.Reset(body) != nil {
		return dst, false
	}
	dst = append(dst, '{')
	hasObject := false
	for {
		k, v, ok := it.Next()
		if !ok {
			break
		}
		dst = appendMember(dst, k)
		switch {
		case isKey(k, "object"):
			hasObject = true
			dst = append(dst, object...)
		case isKey(k, "choices"):
			if dst, ok = appendTextChoices(dst, v, delta, fromText); !ok {
				return dst, false
			}
		default:
			dst = append(dst, v...)
		}
	}
	if it.Err() != nil {
		return dst, false
	}
	if !hasObject {
		dst = appendMember(dst, strObjectKey)
		dst = append(dst, object...)
	}
	return append(dst, '}'), true
}

// appendTextChoices appends a chat answer's choices array as a text completion's:
// message (delta in a chunk) becomes text, its content or "" (OpenAI's legacy form),
// or with delta stays delta with the content alone (MLflow's stream form); chat
// logprobs, whose shape the legacy logprobs do not share, become null (are left out
// with delta); index, finish_reason and the rest are kept. With fromText the choices
// are a legacy completion's: text is the text, and a message or delta beside it is
// dropped (Together's chunks repeat the text in a delta holding its token_id).
func appendTextChoices(dst, choices []byte, delta, fromText bool) ([]byte, bool) {
	var a jsonscan.Array
	if !a.Reset(choices) {
		// null, or something else a chat answer should not hold: passed on.
		return append(dst, choices...), true
	}
	dst = append(dst, '[')
	for n := 0; ; n++ {
		c, ok := a.Next()
		if !ok {
			break
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		var it jsonscan.Iter
		if it.Reset(c) != nil {
			return dst, false
		}
		dst = append(dst, '{')
		text := false
		for {
			k, v, ok := it.Next()
			if !ok {
				break
			}
			logprobs := isKey(k, "logprobs")
			if logprobs && delta {
				continue
			}
			switch {
			case fromText && isKey(k, "text"):
				text = true
				dst = appendText(dst, v, delta)
			case fromText && (isKey(k, "message") || isKey(k, "delta")):
				continue
			case isKey(k, "message") || isKey(k, "delta"):
				text = true
				content, _ := jsonscan.Field(v, "content")
				if !jsonscan.IsString(content) {
					// A refusal (content null) is the text the model generated,
					// and was billed as such: a text completion holds it as its
					// text.
					if r, _ := jsonscan.Field(v, "refusal"); jsonscan.IsString(r) {
						content = r
					}
				}
				dst = appendText(dst, content, delta)
			case logprobs:
				dst = appendMember(dst, strLogprobsKey)
				dst = append(dst, strNull...)
			default:
				dst = appendMember(dst, k)
				dst = append(dst, v...)
			}
		}
		if it.Err() != nil {
			return dst, false
		}
		if !text {
			dst = appendText(dst, nil, delta)
		}
		dst = append(dst, '}')
	}
	return append(dst, ']'), true
}

// appendText appends a choice's text member for content, the raw value of a chat
// message's content (nil when it has none).
func appendText(dst, content []byte, delta bool) []byte {
	if delta {
		// MLflow's stream choice holds its text in delta.content in older
		// versions and in text in newer ones: both go, for either client.
		if content == nil {
			content = strNull
		}
		dst = appendMember(dst, strTextKeyName)
		dst = append(dst, content...)
		dst = appendMember(dst, strDeltaKey)
		dst = append(dst, `{"content":`...)
		dst = append(dst, content...)
		return append(dst, '}')
	}
	dst = appendMember(dst, strTextKeyName)
	if !jsonscan.IsString(content) {
		// null: a tool call, which a text completion cannot hold.
		content = strEmptyString
	}
	return append(dst, content...)
}

var (
	strNull        = []byte("null")
	strEmptyString = []byte(`""`)
)

// textStream is a chat completions stream read as a completions stream, or a
// completions stream read in MLflow's form: each chunk becomes a text completion
// chunk (appendCompletion), written into one reused buffer; keep-alives, [DONE] and
// error events pass as they are.
type textStream struct {
	r *sseReader
	// delta keeps the text in delta.content (MLflow's form).
	delta bool
	// fromText is set when r streams legacy completions (choices[].text), not chat.
	fromText bool
	out      []byte
}

var textStreamPool = sync.Pool{New: func() any { return &textStream{out: make([]byte, 0, 512)} }}

// acquireTextStream is a pooled textStream reading r; Close puts it back.
func acquireTextStream(r *sseReader, delta, fromText bool) *textStream {
	s := textStreamPool.Get().(*textStream)
	s.r, s.delta, s.fromText = r, delta, fromText
	return s
}

// Next implements Events.
func (s *textStream) Next(ev *Event) error {
	if err := s.r.Next(ev); err != nil || len(ev.Data) == 0 || ev.Error {
		return err
	}
	object := strTextCompletion
	if s.delta {
		object = strTextCompletionChunk
	}
	out, ok := appendCompletion(s.out[:0], ev.Data, object, s.delta, s.fromText)
	s.out = out
	if !ok {
		return errEventNotJSON
	}
	ev.Data = out
	return nil
}

// NotifyWait implements Waiter.
func (s *textStream) NotifyWait(fn func() error) bool { return s.r.NotifyWait(fn) }

// NotifySilence implements SilenceNotifier.
func (s *textStream) NotifySilence(every time.Duration, fn func() error) bool {
	return s.r.NotifySilence(every, fn)
}

// Abort implements Aborter.
func (s *textStream) Abort() { s.r.Abort() }

// Close implements Events.
func (s *textStream) Close() error {
	err := s.r.Close()
	s.r = nil
	if cap(s.out) > maxPooledBuffer {
		s.out = make([]byte, 0, 512)
	}
	textStreamPool.Put(s)
	return err
}

var _ Events = (*textStream)(nil)
