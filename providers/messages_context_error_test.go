package providers

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// A context-window refusal reaches a Messages API client in Anthropic's words, "prompt
// is too long: " before the upstream's own, 400 invalid_request_error: LangChain's
// ChatAnthropic and Claude Code recognise the refusal by that phrase alone. Anthropic's
// own refusals, and other 400s, keep their words.
func TestAnthropicErrorShapeContextWindow(t *testing.T) {
	cases := []struct {
		name       string
		status     int
		in, want   string
		wantStatus int
	}{
		{"vLLM's Messages API route",
			400, `{"type":"error","error":{"type":"BadRequestError","message":"This model's maximum context length is 8192 tokens. However, your request has 50000 input tokens. Please reduce the length of the input messages."}}`,
			`{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: This model's maximum context length is 8192 tokens. However, your request has 50000 input tokens. Please reduce the length of the input messages."}}`, 400},
		{"vLLM's words under an Anthropic type",
			400, `{"type":"error","error":{"type":"invalid_request_error","message":"This model's maximum context length is 8192 tokens."}}`,
			`{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: This model's maximum context length is 8192 tokens."}}`, 400},
		{"OpenAI's code through the chat bridge",
			400, `{"error":{"message":"Your input exceeds the context window of this model.","type":"invalid_request_error","param":"input","code":"context_length_exceeded"}}`,
			`{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: Your input exceeds the context window of this model."}}`, 400},
		{"code alone",
			400, `{"error":{"type":"invalid_request_error","code":"context_length_exceeded"}}`,
			`{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: The request does not fit the model's context window."}}`, 400},
		{"TGI's 422",
			422, `{"error":"Input validation error: ` + "`inputs` tokens + `max_new_tokens` must be <= 4096" + `. Given: 5000","error_type":"validation"}`,
			`{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: Input validation error: ` + "`inputs` tokens + `max_new_tokens` must be \\u003c= 4096" + `. Given: 5000"}}`, 400},
		{"Anthropic's own",
			400, `{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 209353 tokens > 200000 maximum"}}`,
			`{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 209353 tokens > 200000 maximum"}}`, 400},
		{"Anthropic's with max_tokens",
			400, `{"type":"error","error":{"type":"invalid_request_error","message":"input length and ` + "`max_tokens`" + ` exceed context limit: 188240 + 21333 > 200000, decrease input length or ` + "`max_tokens`" + ` and try again"}}`,
			`{"type":"error","error":{"type":"invalid_request_error","message":"input length and ` + "`max_tokens`" + ` exceed context limit: 188240 + 21333 > 200000, decrease input length or ` + "`max_tokens`" + ` and try again"}}`, 400},
		{"another 400",
			400, `{"error":{"message":"temperature: Input should be less than or equal to 2","type":"BadRequestError","param":"temperature","code":400}}`,
			`{"type":"error","error":{"type":"invalid_request_error","message":"temperature: Input should be less than or equal to 2"}}`, 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out fasthttp.Response
			out.SetStatusCode(c.status)
			out.SetBodyString(c.in)
			AnthropicErrorShape(&out, nil)
			if got := string(out.Body()); got != c.want || out.StatusCode() != c.wantStatus {
				t.Errorf("%d %s:\n got %d %s\nwant %d %s", c.status, c.in, out.StatusCode(), got, c.wantStatus, c.want)
			}
		})
	}
}
