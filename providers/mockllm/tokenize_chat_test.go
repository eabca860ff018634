package mockllm

import (
	"strings"
	"testing"
)

// TestTokenizeChatForm: vLLM's /tokenize takes a chat request's messages with the
// members of TokenizeChatRequest (add_generation_prompt, tools, chat_template_kwargs
// …), as a gateway sends a Messages API token count it serves through chat
// completions; the count is the prompt_tokens a chat call with the same messages and
// tools reports, the tools counted in both, as a chat template renders them.
func TestTokenizeChatForm(t *testing.T) {
	h := start(t, Options{Seed: 2})
	messages := `[{"role":"system","content":"Be brief."},{"role":"user","content":"What is the weather in Paris?"},` +
		`{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},` +
		`{"role":"tool","tool_call_id":"call_1","content":"Sunny, 24 degrees."}]`
	tools := `[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]`
	_, ub := h.must("POST", "/v1/chat/completions", `{"model":"mock-1","max_tokens":1,"messages":`+messages+`,"tools":`+tools+`}`)
	withTools := decode[chatResp](t, ub).Usage.PromptTokens
	_, ub = h.must("POST", "/v1/chat/completions", `{"model":"mock-1","max_tokens":1,"messages":`+messages+`}`)
	bare := decode[chatResp](t, ub).Usage.PromptTokens
	if withTools <= bare {
		t.Fatalf("prompt_tokens %d with tools, %d without: the tools should count", withTools, bare)
	}
	for _, c := range []struct {
		body string
		want int
	}{
		{`{"model":"mock-1","messages":` + messages + `,"tools":` + tools + `,"add_generation_prompt":true}`, withTools},
		{`{"model":"mock-1","messages":` + messages + `,"add_generation_prompt":true,"add_special_tokens":false,"chat_template_kwargs":{"enable_thinking":false},"tools":null}`, bare},
		{`{"messages":` + messages + `,"continue_final_message":true,"add_generation_prompt":false,"return_token_strs":true}`, bare},
	} {
		body, want := c.body, c.want
		resp, b := h.must("POST", "/tokenize", body)
		tok := decode[struct {
			Count  int   `json:"count"`
			Tokens []int `json:"tokens"`
		}](t, b)
		if resp.StatusCode != 200 || tok.Count != want || len(tok.Tokens) != want {
			t.Errorf("%s: %d %s; want count %d (the chat call's prompt_tokens)", body, resp.StatusCode, b, want)
		}
	}
}

// TestTokenizeChatFormErrors: the chat form's members are checked as vLLM's
// TokenizeChatRequest checks them.
func TestTokenizeChatFormErrors(t *testing.T) {
	h := start(t, Options{})
	msgs := `"messages":[{"role":"user","content":"hi"}]`
	for _, tc := range []struct{ name, body, want string }{
		{"generation prompt not a boolean", `{` + msgs + `,"add_generation_prompt":"yes"}`, "add_generation_prompt: Input should be a valid boolean"},
		{"generation prompt null", `{` + msgs + `,"add_generation_prompt":null}`, "add_generation_prompt: Input should be a valid boolean"},
		{"continue not a boolean", `{` + msgs + `,"continue_final_message":1}`, "continue_final_message: Input should be a valid boolean"},
		{"special tokens not a boolean", `{` + msgs + `,"add_special_tokens":"no"}`, "add_special_tokens: Input should be a valid boolean"},
		{"tools not a list", `{` + msgs + `,"tools":{"type":"function"}}`, "tools: Input should be a valid list"},
		{"a tool not an object", `{` + msgs + `,"tools":["get_weather"]}`, "tools: Input should be a valid list"},
		{"kwargs not an object", `{` + msgs + `,"chat_template_kwargs":[]}`, "chat_template_kwargs: Input should be a valid dictionary"},
		{"continue and generation prompt", `{` + msgs + `,"continue_final_message":true,"add_generation_prompt":true}`, "Cannot set both `continue_final_message` and `add_generation_prompt` to True."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := h.must("POST", "/tokenize", tc.body)
			if resp.StatusCode != 400 || !strings.Contains(string(b), tc.want) {
				t.Errorf("%d %s; want 400 with %q", resp.StatusCode, b, tc.want)
			}
		})
	}
}
