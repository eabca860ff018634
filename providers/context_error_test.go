package providers

import (
	"encoding/json"
	"testing"

	"github.com/valyala/fasthttp"
)

// contextCases are upstreams' real answers: the context-window refusals of each
// provider type, and other errors that must not pass for one.
var contextCases = []struct {
	name   string
	status int
	body   string
	want   bool
	// anthropic marks an Anthropic Messages API body, passed on by its translation.
	anthropic bool
}{
	// vLLM 0.10 and later (serving_engine.py _validate_input), as mockllm words them.
	{"vllm prompt over the window", 400, `{"error":{"message":"This model's maximum context length is 8192 tokens. However, your request has 9000 input tokens. Please reduce the length of the input messages.","type":"BadRequestError","param":null,"code":400}}`, true, false},
	{"vllm max_tokens over what the window leaves", 400, `{"error":{"message":"'max_tokens' or 'max_completion_tokens' is too large: 1000. This model's maximum context length is 8192 tokens and your request has 7500 input tokens (1000 \u003e 8192 - 7500).","type":"BadRequestError","param":null,"code":400}}`, true, false},
	{"vllm embeddings input over the window", 400, `{"error":{"message":"This model's maximum context length is 512 tokens. However, you requested 600 tokens in the input for embedding generation. Please reduce the length of the input.","type":"BadRequestError","param":null,"code":400}}`, true, false},
	// vLLM before 0.10: the flat ErrorResponse, and its older wording.
	{"vllm before 0.10, flat", 400, `{"object":"error","message":"This model's maximum context length is 4096 tokens. However, you requested 4200 tokens (3900 in the messages, 300 in the completion). Please reduce the length of the messages or completion.","type":"BadRequestError","param":null,"code":400}`, true, false},
	{"vllm engine check", 400, `{"error":{"message":"The decoder prompt (length 9000) is longer than the maximum model length of 8192. Make sure that ` + "`max_model_len`" + ` is no smaller than the number of text tokens.","type":"BadRequestError","param":null,"code":400}}`, true, false},
	{"vllm 0.5 engine check, flat", 400, `{"object":"error","message":"Prompt length of 9000 is longer than the maximum model length of 8192.","type":"BadRequestError","param":null,"code":400}`, true, false},
	// OpenAI, and Azure OpenAI with the same body.
	{"openai chat", 400, `{"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 130512 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}`, true, false},
	{"openai responses api, by its code", 400, `{"error":{"message":"Your input exceeds the context window of this model. Please adjust your input and try again.","type":"invalid_request_error","param":"input","code":"context_length_exceeded"}}`, true, false},
	{"azure openai", 400, `{"error":{"message":"This model's maximum context length is 8192 tokens. However, your messages resulted in 9010 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}`, true, false},
	// Anthropic, through its translation (contextTooLong).
	{"anthropic prompt too long", 400, `{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 209353 tokens > 200000 maximum"},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}`, true, true},
	{"anthropic prompt and max_tokens", 400, `{"type":"error","error":{"type":"invalid_request_error","message":"input length and ` + "`max_tokens`" + ` exceed context limit: 188240 + 21333 > 200000, decrease input length or ` + "`max_tokens`" + ` and try again"}}`, true, true},
	// TGI's validation errors: 422, {"error":"text","error_type":"validation"}.
	{"tgi inputs and max_new_tokens", 422, `{"error":"Input validation error: ` + "`inputs` tokens + `max_new_tokens`" + ` must be <= 4096. Given: 4000 ` + "`inputs` tokens and 200 `max_new_tokens`" + `","error_type":"validation"}`, true, false},
	{"tgi inputs alone", 422, `{"error":"Input validation error: ` + "`inputs`" + ` must have less than 4095 tokens. Given: 5000","error_type":"validation"}`, true, false},
	{"tgi before its backquotes", 422, `{"error":"Input validation error: input tokens + max_new_tokens must be <= 2048. Given: 2000 input tokens and 100 max_new_tokens","error_type":"validation"}`, true, false},
	// SGLang, Together AI, llama.cpp's server.
	{"together", 400, `{"error":{"message":"The input (250000 tokens) is longer than the model's context length (200000 tokens).","type":"invalid_request_error","param":null,"code":null}}`, true, false},
	{"llama.cpp", 400, `{"error":{"code":400,"message":"the request exceeds the available context size, try increasing it","type":"exceed_context_size_error","n_prompt_tokens":5000,"n_ctx":4096}}`, true, false},

	// Other refusals go to the client as they are.
	{"vllm temperature", 400, `{"error":{"message":"temperature must be non-negative, got -1.0.","type":"BadRequestError","param":"temperature","code":400}}`, false, false},
	{"vllm pydantic", 400, `{"error":{"message":"model: Input should be a valid string","type":"Bad Request","param":null,"code":400}}`, false, false},
	{"openai invalid value", 400, `{"error":{"message":"Invalid value for 'n': must be at most 128.","type":"invalid_request_error","param":"n","code":"invalid_value"}}`, false, false},
	{"tgi max_new_tokens alone", 422, `{"error":"Input validation error: ` + "`max_new_tokens`" + ` must be <= 1024. Given: 2048","error_type":"validation"}`, false, false},
	{"anthropic request too large (bytes)", 413, `{"type":"error","error":{"type":"request_too_large","message":"Request exceeds the maximum allowed number of bytes."}}`, false, true},
	{"anthropic other 400", 400, `{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"}}`, false, true},
	{"context words in a 500", 500, `{"error":{"message":"This model's maximum context length is 8192 tokens.","type":"InternalServerError","param":null,"code":500}}`, false, false},
	{"context code in a 429", 429, `{"error":{"message":"slow down","type":"rate_limit_exceeded","param":null,"code":"context_length_exceeded"}}`, false, false},
	{"html page", 400, `<html><body>This model's maximum context length is 8192 tokens</body></html>`, false, false},
	{"message not a string", 400, `{"error":{"message":["maximum context length"],"type":"x"}}`, false, false},
}

// Each provider type's context-window refusal is recognised in the answer the client
// would get (the upstream's OpenAI-shaped body, a flat one as passError passes it
// on, Anthropic's as its translation writes it) and in the upstream's own body; other
// refusals are not.
func TestContextWindowExceeded(t *testing.T) {
	for _, tc := range contextCases {
		t.Run(tc.name, func(t *testing.T) {
			if got := ContextWindowExceeded(tc.status, []byte(tc.body)); got != tc.want {
				t.Errorf("upstream's body: %v, want %v", got, tc.want)
			}
			out := passed(t, tc.status, tc.body, tc.anthropic)
			if got := ContextWindowExceeded(out.StatusCode(), out.Body()); got != tc.want {
				t.Errorf("answer passed on (%d %s): %v, want %v", out.StatusCode(), out.Body(), got, tc.want)
			}
		})
	}
}

// passed is the answer an upstream's error of status and body becomes on its way to
// the client: passError's for an OpenAI-compatible upstream, the translation's for
// Anthropic.
func passed(t *testing.T, status int, body string, anthropic bool) *fasthttp.Response {
	t.Helper()
	up := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(up)
	out := &fasthttp.Response{}
	up.SetStatusCode(status)
	up.Header.SetContentType("application/json")
	up.SetBody([]byte(body))
	if anthropic {
		translateAnthropicError(out, up.Body(), status, nil)
		return out
	}
	if err := passError(up, out, status, 64<<20, nil, nil); err == nil {
		t.Fatal("passError: no UpstreamError")
	}
	return out
}

// A context-window refusal is rewritten in OpenAI's shape, status 400 and code
// context_length_exceeded, its message (escapes as written) and string param kept;
// any other answer is left as it is.
func TestAnswerContextWindowExceeded(t *testing.T) {
	type openAIError struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
			Code    *string `json:"code"`
		} `json:"error"`
	}
	for _, tc := range contextCases {
		t.Run(tc.name, func(t *testing.T) {
			out := passed(t, tc.status, tc.body, tc.anthropic)
			before := string(out.Body())
			var was openAIError
			wasJSON := json.Unmarshal(out.Body(), &was) == nil
			status := out.StatusCode()
			if got := AnswerContextWindowExceeded(out); got != tc.want {
				t.Fatalf("rewrote: %v, want %v", got, tc.want)
			}
			if !tc.want {
				if string(out.Body()) != before || out.StatusCode() != status {
					t.Errorf("answer changed: %d %s, want %d %s", out.StatusCode(), out.Body(), status, before)
				}
				return
			}
			var got openAIError
			if err := json.Unmarshal(out.Body(), &got); err != nil {
				t.Fatalf("body %s: %v", out.Body(), err)
			}
			if out.StatusCode() != 400 || string(out.Header.ContentType()) != "application/json" {
				t.Errorf("status %d, content type %q; want 400 application/json", out.StatusCode(), out.Header.ContentType())
			}
			e := got.Error
			if e.Type != "invalid_request_error" || e.Code == nil || *e.Code != "context_length_exceeded" {
				t.Errorf("type %q code %v, want invalid_request_error, context_length_exceeded: %s", e.Type, e.Code, out.Body())
			}
			if wasJSON && e.Message != was.Error.Message {
				t.Errorf("message %q, want the upstream's %q", e.Message, was.Error.Message)
			}
			if wasJSON && (e.Param == nil) != (was.Error.Param == nil) || e.Param != nil && *e.Param != *was.Error.Param {
				t.Errorf("param %v, want the upstream's %v", e.Param, was.Error.Param)
			}
		})
	}
}

// A refusal whose message is long (an upstream quoting the prompt) is still read,
// from its first sentence.
func TestContextWindowExceededLongMessage(t *testing.T) {
	long := make([]byte, 0, 1<<20)
	long = append(long, `{"error":{"message":"This model's maximum context length is 8192 tokens. Prompt: `...)
	for len(long) < 1<<20-8 {
		long = append(long, 'x')
	}
	long = append(long, `"}}`...)
	if !ContextWindowExceeded(400, long) {
		t.Error("a 1 MiB message with the phrase up front: not recognised")
	}
	late := append([]byte(`{"error":{"message":"`), make([]byte, 0, 2048)...)
	for len(late) < 1024 {
		late = append(late, 'x')
	}
	late = append(late, ` maximum context length"}}`...)
	if ContextWindowExceeded(400, late) {
		t.Error("a phrase past the first 512 bytes of the message: recognised")
	}
}

func BenchmarkContextWindowExceeded(b *testing.B) {
	body := []byte(contextCases[0].body)
	b.ReportAllocs()
	for b.Loop() {
		if !ContextWindowExceeded(400, body) {
			b.Fatal("not recognised")
		}
	}
}

// FuzzContextWindowExceeded: any body is read without panicking, and one taken for a
// context-window refusal is rewritten as one JSON object of OpenAI's shape that is
// recognised again.
func FuzzContextWindowExceeded(f *testing.F) {
	for _, tc := range contextCases {
		f.Add(tc.status, []byte(tc.body))
	}
	f.Add(400, []byte(`{"error":{"message":"maximum context length \ud800","param":"p\"q"}}`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		want := ContextWindowExceeded(status, body)
		var out fasthttp.Response
		out.SetStatusCode(status)
		out.SetBody(body)
		if got := AnswerContextWindowExceeded(&out); got != want || status < 100 || status > 999 {
			if got != want {
				t.Fatalf("AnswerContextWindowExceeded %v, ContextWindowExceeded %v", got, want)
			}
			return
		}
		if !want {
			return
		}
		if !json.Valid(out.Body()) || !ContextWindowExceeded(out.StatusCode(), out.Body()) {
			t.Fatalf("rewritten as %s", out.Body())
		}
	})
}

// TestContextWindowExceededCurrentVLLM: current vLLM's renderer refuses a prompt over
// its window with "You passed N input tokens and requested M output tokens. However,
// the model's context length is only W tokens …" (or input characters for a long
// text): a context-window refusal.
func TestContextWindowExceededCurrentVLLM(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, body string }{
		{"input tokens", `{"error":{"message":"You passed 9000 input tokens and requested 16 output tokens. However, the model's context length is only 8192 tokens, resulting in a maximum input length of 8176 tokens. Please reduce the length of the input prompt. (parameter=input_tokens, value=9000)","type":"BadRequestError","param":"input_tokens","code":400}}`},
		{"input characters", `{"error":{"message":"You passed 400000 input characters and requested 16 output tokens. However, the model's context length is only 8192 tokens, resulting in a maximum input length of 8176 tokens (at most 327040 characters). Please reduce the length of the input prompt. (parameter=input_text, value=400000)","type":"BadRequestError","param":"input_text","code":400}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !ContextWindowExceeded(400, []byte(tc.body)) {
				t.Errorf("not recognised as a context-window refusal: %s", tc.body)
			}
		})
	}
}

// TestContextWindowExceededNotPydanticQuote: vLLM's 400 for a request its schema
// refuses quotes what the client sent (pydantic's input_value); a prompt there that
// speaks of "this model's maximum context length" does not make it a context-window
// refusal.
func TestContextWindowExceededNotPydanticQuote(t *testing.T) {
	t.Parallel()
	body := `{"error":{"message":"1 validation error for ChatCompletionRequest\nmessages.0.user.content\n  Field required [type=missing, input_value={'role': 'user', 'contnt': \"What is this model's maximum context length?\"}, input_type=dict]","type":"Bad Request","param":null,"code":400}}`
	if ContextWindowExceeded(400, []byte(body)) {
		t.Errorf("a schema refusal quoting the prompt taken for a context-window refusal")
	}
}
