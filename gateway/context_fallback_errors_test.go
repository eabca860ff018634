package gateway

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// ctxAnswers are upstreams' real context-window refusals, and other refusals, by the
// name a test request gives in X-Test-Answer.
var ctxAnswers = map[string]struct {
	status int
	body   string
}{
	"vllm":         {400, `{"error":{"message":"This model's maximum context length is 8192 tokens. However, your request has 9000 input tokens. Please reduce the length of the input messages.","type":"BadRequestError","param":null,"code":400}}`},
	"vllm-flat":    {400, `{"object":"error","message":"This model's maximum context length is 4096 tokens. However, you requested 4200 tokens (3900 in the messages, 300 in the completion). Please reduce the length of the messages or completion.","type":"BadRequestError","param":null,"code":400}`},
	"vllm-engine":  {400, `{"error":{"message":"The decoder prompt (length 9000) is longer than the maximum model length of 8192. Make sure that ` + "`max_model_len`" + ` is no smaller than the number of text tokens.","type":"BadRequestError","param":null,"code":400}}`},
	"openai":       {400, `{"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 130512 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}`},
	"tgi":          {422, `{"error":"Input validation error: ` + "`inputs` tokens + `max_new_tokens`" + ` must be <= 4096. Given: 4000 ` + "`inputs` tokens and 200 `max_new_tokens`" + `","error_type":"validation"}`},
	"tgi-input":    {422, `{"error":"Input validation error: ` + "`inputs`" + ` must have less than 4095 tokens. Given: 5000","error_type":"validation"}`},
	"anthropic":    {400, `{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 209353 tokens > 200000 maximum"},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}`},
	"anthropic-mt": {400, `{"type":"error","error":{"type":"invalid_request_error","message":"input length and ` + "`max_tokens`" + ` exceed context limit: 188240 + 21333 > 200000, decrease input length or ` + "`max_tokens`" + ` and try again"}}`},
	"other":        {400, `{"error":{"message":"Invalid value for 'n': must be at most 128.","type":"invalid_request_error","param":"n","code":"invalid_value"}}`},
	"tgi-other":    {422, `{"error":"Input validation error: ` + "`max_new_tokens`" + ` must be <= 1024. Given: 2048","error_type":"validation"}`},
	"anthropic-x":  {400, `{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"}}`},
}

// serveCtxAnswers answers every request with the ctxAnswers entry its X-Test-Answer
// header names.
func serveCtxAnswers(t *testing.T) string {
	t.Helper()
	return serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		a, ok := ctxAnswers[string(ctx.Request.Header.Peek("X-Test-Answer"))]
		if !ok {
			ctx.SetStatusCode(500)
			return
		}
		ctx.Response.Header.SetContentType("application/json")
		ctx.SetStatusCode(a.status)
		ctx.SetBodyString(a.body)
	})
}

// Each provider type's context-window refusal, as the upstream answers it, sends the
// request on to the context fallback (vLLM's current, flat and engine answers, OpenAI's
// and Azure OpenAI's code, Anthropic's through its translation, TGI's 422s), a stream
// too; any other refusal goes to the client at once, as the provider passes it on.
func TestContextFallbackProviderRefusals(t *testing.T) {
	up := serveCtxAnswers(t)
	_, large := startMock(t, mockllm.Options{Model: "llama-128k", MaxTokens: 8, Seed: 3})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+up+`/v1", model: m, timeout: 10s}
  azure: {provider: azure, base_url: "http://`+up+`", deployment: gpt-dep, api_version: "2024-10-21", model: gpt-4o, api_key: azure-test-key, timeout: 10s}
  claude: {provider: anthropic, base_url: "http://`+up+`/v1", model: claude-sonnet-4-5, api_key: sk-ant-test-1234, timeout: 10s}
  large: {provider: openai, base_url: "http://`+large+`/v1", model: llama-128k, timeout: 10s}
endpoints:
  - {name: openai, type: chat, routes: [{backend: up}], context_fallbacks: [large]}
  - {name: azure, type: chat, routes: [{backend: azure}], context_fallbacks: [large]}
  - {name: claude, type: chat, routes: [{backend: claude}], context_fallbacks: [large]}
logging: {level: info, format: json}
`)
	for _, tc := range []struct {
		endpoint, answer string
		stream           bool
		// status is the client's when the refusal is not a context-window one.
		status int
	}{
		{endpoint: "openai", answer: "vllm"},
		{endpoint: "openai", answer: "vllm", stream: true},
		{endpoint: "openai", answer: "vllm-flat"},
		{endpoint: "openai", answer: "vllm-engine"},
		{endpoint: "openai", answer: "openai"},
		{endpoint: "openai", answer: "tgi"},
		{endpoint: "openai", answer: "tgi-input", stream: true},
		{endpoint: "azure", answer: "openai"},
		{endpoint: "claude", answer: "anthropic"},
		{endpoint: "claude", answer: "anthropic-mt", stream: true},
		{endpoint: "openai", answer: "other", status: 400},
		{endpoint: "openai", answer: "tgi-other", status: 422},
		{endpoint: "claude", answer: "anthropic-x", status: 400},
	} {
		name := tc.endpoint + "/" + tc.answer
		if tc.stream {
			name += "/stream"
		}
		t.Run(name, func(t *testing.T) {
			id := "ctx-" + strings.ReplaceAll(name, "/", "-")
			body := `{"model":"` + tc.endpoint + `","max_tokens":4,"stream":` + map[bool]string{false: "false", true: "true"}[tc.stream] +
				`,"messages":[{"role":"user","content":"hi"}]}`
			resp, b := postRaw(t, http.DefaultClient, g.url+"/v1/chat/completions", body, map[string]string{"X-Test-Answer": tc.answer, "X-Request-Id": id})
			line := accessLine(t, g, id)
			if tc.status == 0 {
				if resp.StatusCode != 200 || resp.Header.Get("X-Tollgate-Backend") != "large" {
					t.Fatalf("%d from %q: %s; want large's answer", resp.StatusCode, resp.Header.Get("X-Tollgate-Backend"), b)
				}
				if tc.stream && !strings.HasSuffix(string(b), "data: [DONE]\n\n") {
					t.Errorf("stream %q, want large's, to its end", b)
				}
				if line["attempts"] != 2.0 || line["backend"] != "large" || line["error"] != "" {
					t.Errorf("access log %v, want 2 attempts, served by large", line)
				}
				return
			}
			route := map[string]string{"openai": "up", "azure": "azure", "claude": "claude"}[tc.endpoint]
			if resp.StatusCode != tc.status || resp.Header.Get("X-Tollgate-Backend") != route {
				t.Fatalf("%d from %q: %s; want the upstream's %d", resp.StatusCode, resp.Header.Get("X-Tollgate-Backend"), b, tc.status)
			}
			var e struct {
				Error struct {
					Code *string `json:"code"`
				} `json:"error"`
			}
			if err := json.Unmarshal(b, &e); err != nil || e.Error.Code != nil && *e.Error.Code == "context_length_exceeded" {
				t.Errorf("answer %s (%v): not the upstream's refusal", b, err)
			}
			if line["attempts"] != 1.0 {
				t.Errorf("access log %v, want 1 attempt", line)
			}
		})
	}
}
