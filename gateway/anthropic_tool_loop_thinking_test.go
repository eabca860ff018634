package gateway

import (
	"encoding/json"
	"testing"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// The Node SDK's tool loop, client.chat.completions.runTools (lib/
// AbstractChatCompletionRunner.js), replays each assistant answer through
// toRequestMessage, which keeps only OpenAI's request fields (role, content, refusal,
// function_call, tool_calls with id, type, function.name and function.arguments): the
// gateway's thinking_blocks never go back. README has Claude 5 models think when the
// client asks for nothing ("without reasoning_effort thinking is on"), and with thinking
// on Anthropic refuses a tool loop whose last assistant turn does not begin with its
// thinking block. So runTools against an endpoint on claude-opus-5, with no thinking
// asked for by the application, fails on its second request with 400, every time; the
// same code works on every OpenAI-format backend. The gateway sends such a turn with
// thinking disabled, which the model takes, as it does where its own default would
// break what the client asked for (a forced tool call); LiteLLM likewise drops
// thinking when the last assistant turn with tool calls has no thinking blocks.
func TestNodeSDKRunToolsSecondTurnOnClaude5(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{Model: "claude-opus-5", API: mockllm.APIAnthropic, APIKey: afAnthropicKey, MaxTokens: 64, Seed: 5})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  opus5: {provider: anthropic, base_url: "http://`+addr+`/v1", model: claude-opus-5, api_key: `+afAnthropicKey+`, timeout: 5s}
endpoints:
  - {name: opus5, type: chat, routes: [{backend: opus5}]}
`)
	const tools = `[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}]`
	const user = `{"role":"user","content":"Please use get_weather for Paris"}`
	// The runner's first request, byte for byte as the SDK sends it.
	status, b := nodeSDKPost(t, g, "/v1/chat/completions",
		`{"model":"opus5","messages":[`+user+`],"tools":`+tools+`,"tool_choice":"auto","stream":false}`)
	if status != 200 {
		t.Fatalf("first turn: %d %s", status, b)
	}
	var first struct {
		Choices []struct {
			Message struct {
				Content   *string `json:"content"`
				ToolCalls []struct {
					ID       string `json:"id"`
					Type     string `json:"type"`
					Function struct{ Name, Arguments string }
				} `json:"tool_calls"`
				ThinkingBlocks json.RawMessage `json:"thinking_blocks"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(b, &first); err != nil || len(first.Choices) != 1 || len(first.Choices[0].Message.ToolCalls) != 1 {
		t.Fatalf("first turn: want one tool call, got %s (%v)", b, err)
	}
	m := first.Choices[0].Message
	if len(m.ThinkingBlocks) == 0 {
		t.Fatalf("first turn had no thinking_blocks (%s): the case shows nothing", b)
	}
	// toRequestMessage: the assistant message without thinking_blocks, then the
	// tool's result.
	tc := m.ToolCalls[0]
	asst := map[string]any{"role": "assistant", "content": m.Content, "tool_calls": []any{map[string]any{
		"id": tc.ID, "type": tc.Type, "function": map[string]any{"arguments": tc.Function.Arguments, "name": tc.Function.Name},
	}}}
	ab, _ := json.Marshal(asst)
	second := `{"model":"opus5","messages":[` + user + `,` + string(ab) + `,{"role":"tool","tool_call_id":` +
		jsonString(tc.ID) + `,"content":"sunny"}],"tools":` + tools + `,"tool_choice":"auto","stream":false}`
	status, b = nodeSDKPost(t, g, "/v1/chat/completions", second)
	if status != 200 {
		t.Fatalf("runTools' second turn (no thinking asked for by the client): %d %s; want 200, the tool loop answered", status, b)
	}
}
