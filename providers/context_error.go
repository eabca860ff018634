package providers

import (
	"bytes"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/internal/jsonscan"
)

// contextPhrases are what the upstreams' context-window refusals say, lower case. Each
// is read in the first contextScanBytes of the message.
var contextPhrases = [...][]byte{
	// vLLM's serving layer, every version (serving_engine.py _validate_input: "This
	// model's maximum context length is 8192 tokens. However, you requested …" and
	// "… your request has N input tokens", and "'max_tokens' or
	// 'max_completion_tokens' is too large: …"), OpenAI's and Azure OpenAI's own
	// message, SGLang's and Mistral's.
	[]byte("maximum context length"),
	// vLLM's engine check (processor.py _validate_model_input): "The decoder prompt
	// (length 9000) is longer than the maximum model length of 8192."; before 0.6:
	// "Prompt length of 9000 is longer than the maximum model length of 8192."
	[]byte("longer than the maximum model length"),
	// Together AI and SGLang: "The input (N tokens) is longer than the model's context
	// length (M tokens)."
	[]byte("longer than the model's context length"),
	// TGI's validation errors (router/src/validation.rs), with and without the
	// backquotes of its later versions: "Input validation error: `inputs` tokens +
	// `max_new_tokens` must be <= 4096. Given: …" and "`inputs` must have less than
	// 4096 tokens. Given: 5000".
	[]byte("tokens + `max_new_tokens` must be <="),
	[]byte("tokens + max_new_tokens must be <="),
	[]byte("`inputs` must have less than"),
	[]byte("inputs must have less than"),
	// Anthropic's, as its translation passes them on (contextTooLong): "prompt is too
	// long: 209353 tokens > 200000 maximum", "input length and `max_tokens` exceed
	// context limit: …".
	strPromptTooLong,
	strExceedContextLimit,
	// llama.cpp's server: "the request exceeds the available context size, try
	// increasing it".
	[]byte("exceeds the available context size"),
	// vLLM's renderer (0.11 on, renderers/params.py): "You passed 9000 input tokens
	// and requested 16 output tokens. However, the model's context length is only
	// 8192 tokens, …", and the same with input characters for a long text.
	[]byte("the model's context length is only"),
}

var (
	// strValidationFor and strValidationsFor begin pydantic's refusal of a request's
	// shape ("1 validation error for ChatCompletionRequest", "2 validation errors for
	// …"), which vLLM and SGLang answer 400 and which is never about its length;
	// strInputValue begins the part of it that quotes what the client sent, a prompt
	// included.
	strValidationFor  = []byte("validation error for ")
	strValidationsFor = []byte("validation errors for ")
	strInputValue     = []byte("input_value=")
)

// contextScanBytes is how much of a message is read for contextPhrases: each of them
// comes in a refusal's first sentence, and an upstream that quotes the request in
// its message costs no more than that.
const contextScanBytes = 512

var (
	strContextCodeQuoted = []byte(`"context_length_exceeded"`)
	// strContextMessage is the message of a refusal that came with none.
	strContextMessage = []byte(`"The request does not fit the model's context window."`)
	// llama.cpp's error type for the same refusal.
	strExceedContextType = []byte(`"exceed_context_size_error"`)
)

// ContextWindowExceeded reports whether an upstream's error answer, its status and
// body, says that the request does not fit the model's context window (its prompt, or
// its prompt and max_tokens): a 400 (every OpenAI-compatible server, Anthropic), 413 or
// 422 (TGI's validation errors) whose error has OpenAI's code context_length_exceeded
// (OpenAI, Azure OpenAI, Anthropic's as the gateway translates it), llama.cpp's type
// exceed_context_size_error, or a message in one of the upstreams' words
// (contextPhrases). The body may be in OpenAI's shape, in TGI's {"error":"text"}, in
// vLLM's flat {"object":"error","message":…} of before 0.10 or in Anthropic's
// {"type":"error","error":{…}}. Any other answer, a 400 for another reason among them,
// is not one.
func ContextWindowExceeded(status int, body []byte) bool {
	_, _, ok := contextWindowError(status, body)
	return ok
}

// AnswerContextWindowExceeded rewrites out, an upstream's error answer, as OpenAI's
// context-window error when ContextWindowExceeded says it is one: status 400, type
// invalid_request_error, code context_length_exceeded, the upstream's message and
// param (a string one) kept as it wrote them (masked already by the provider that
// passed the answer on); one with no message gets one saying so. It reports whether it did; any other answer is left as it
// is.
func AnswerContextWindowExceeded(out *fasthttp.Response) bool {
	msg, param, ok := contextWindowError(out.StatusCode(), out.Body())
	if !ok {
		return false
	}
	// msg and param view out's body, so the new one is built apart, in one
	// allocation (the members around them take 99 bytes, null included). An error
	// path: not worth a pool.
	b := make([]byte, 0, len(msg)+len(param)+128)
	b = append(b, `{"error":{"message":`...)
	if msg == nil {
		// Refused by its code or type alone.
		msg = strContextMessage
	}
	b = append(b, msg...)
	b = append(b, `,"type":"invalid_request_error","param":`...)
	if param == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, param...)
	}
	b = append(b, `,"code":"context_length_exceeded"}}`...)
	out.SetStatusCode(fasthttp.StatusBadRequest)
	out.Header.SetContentTypeBytes(strJSON)
	out.SetBodyRaw(b)
	return true
}

// contextWindowError reads an error answer for ContextWindowExceeded: msg is its
// message as a JSON string (quotes and escapes as written), param its param when a
// string, both nil when it has none.
func contextWindowError(status int, body []byte) (msg, param []byte, ok bool) {
	if status != fasthttp.StatusBadRequest && status != fasthttp.StatusRequestEntityTooLarge &&
		status != fasthttp.StatusUnprocessableEntity {
		return nil, nil, false
	}
	var it jsonscan.Iter
	if it.Reset(body) != nil {
		return nil, nil, false
	}
	var code, typ []byte
	for {
		k, v, more := it.Next()
		if !more {
			break
		}
		switch string(k) {
		case "error":
			if jsonscan.IsString(v) {
				// TGI's and Ollama's {"error":"text"}.
				msg = v
				continue
			}
			var e jsonscan.Iter
			if e.Reset(v) != nil {
				continue
			}
			for {
				ek, ev, more := e.Next()
				if !more {
					break
				}
				switch string(ek) {
				case "message":
					msg = ev
				case "param":
					param = ev
				case "code":
					code = ev
				case "type":
					typ = ev
				}
			}
		case "message":
			// vLLM's flat answer before 0.10.
			if msg == nil {
				msg = v
			}
		case "param":
			if param == nil {
				param = v
			}
		}
	}
	if !jsonscan.IsString(msg) {
		msg = nil
	}
	if !jsonscan.IsString(param) {
		param = nil
	}
	if bytes.Equal(code, strContextCodeQuoted) || bytes.Equal(typ, strExceedContextType) {
		return msg, param, true
	}
	if msg == nil {
		return nil, nil, false
	}
	var buf [contextScanBytes + 8]byte
	text, unquoted := jsonscan.AppendUnquote(buf[:0], msg)
	if !unquoted {
		return nil, nil, false
	}
	text = text[:min(len(text), contextScanBytes)]
	for i, c := range text {
		if 'A' <= c && c <= 'Z' {
			text[i] = c + 'a' - 'A'
		}
	}
	if pydanticRefusal(text) {
		return nil, nil, false
	}
	if i := bytes.Index(text, strInputValue); i >= 0 {
		// What the client sent, quoted: its words are not the upstream's.
		text = text[:i]
	}
	for _, p := range contextPhrases {
		if bytes.Contains(text, p) {
			return msg, param, true
		}
	}
	return nil, nil, false
}

// pydanticRefusal reports whether text, a lower-cased message, is pydantic's refusal
// of a request's shape: "N validation error(s) for MODEL" in its first line.
func pydanticRefusal(text []byte) bool {
	if i := bytes.IndexByte(text, '\n'); i >= 0 {
		text = text[:i]
	}
	return bytes.Contains(text, strValidationFor) || bytes.Contains(text, strValidationsFor)
}
