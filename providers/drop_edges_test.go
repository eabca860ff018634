package providers

import (
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// plainChatAnswer is a minimal OpenAI chat completion.
const plainChatAnswer = `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`

// drop_params matches names in any case, so it refuses the fields the gateway needs in
// any case too: [Model] would leave every request without its model, [STREAM] would
// have a stream answered as JSON.
func TestDropParamsRefusesGatewayFieldsInAnyCase(t *testing.T) {
	for _, name := range []string{"Model", "STREAM", "Stream_Options", "Messages", "Prompt", "INPUT"} {
		cfg := Config{Provider: "openai", BaseURL: "http://127.0.0.1:1/v1", Model: "gpt-4o", DropParams: []string{name}}
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "drop_params[0]: "+name+" cannot be dropped") {
			t.Errorf("drop_params [%s]: %v, want it refused naming drop_params[0]", name, err)
		}
	}
	cfg := Config{Provider: "openai", BaseURL: "http://127.0.0.1:1/v1", Model: "gpt-4o", DropParams: []string{"top_p", "Top_P"}}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "drop_params[1]: Top_P is named twice") {
		t.Errorf("drop_params [top_p, Top_P]: %v, want the second refused as named twice", err)
	}
}

// To a reasoning model, a client's max_completion_tokens: null (unset fields serialised
// as null, which OpenAI reads as not given) is no cap of its own: its max_tokens goes
// as max_completion_tokens, as the Anthropic translation reads the same body.
func TestReasoningModelNullMaxCompletionTokensKeepsMaxTokens(t *testing.T) {
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetBodyString(plainChatAnswer)
	})
	b := newTestBackend(t, Config{Provider: "openai", BaseURL: up.URL + "/v1", Model: "o3-mini"})
	const body = `{"model":"chat","messages":[{"role":"user","content":"Hi"}],"max_tokens":100,"max_completion_tokens":null}`
	m := sentBy(t, b, up, body)
	if string(m["max_completion_tokens"]) != "100" {
		t.Errorf("upstream got max_completion_tokens %s, want 100", m["max_completion_tokens"])
	}
	if v, ok := m["max_tokens"]; ok {
		t.Errorf("upstream got max_tokens %s: max_tokens is refused by reasoning models", v)
	}
}
