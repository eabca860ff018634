package providers

import (
	"testing"
)

// toolLoopBody is a chat request continuing a tool-use loop: the user's question, the
// assistant's tool call (with assistantExtra in its message), the tool's result, then
// tail (more messages, or none), and rest (more request members).
func toolLoopBody(assistantExtra, tail, rest string) string {
	return `{"model":"c","messages":[{"role":"user","content":"What does get_weather say for Paris?"},` +
		`{"role":"assistant","content":null,"tool_calls":[{"id":"t1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]` +
		assistantExtra + `},{"role":"tool","tool_call_id":"t1","content":"sunny"}` + tail + `],` +
		`"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]` +
		rest + `}`
}

// A Claude 5 model thinks by its own default, and with thinking on the API refuses a
// tool-use loop whose last assistant turn does not begin with its thinking block.
// OpenAI clients replay answers without the gateway's thinking_blocks (the Node SDK's
// runTools keeps only OpenAI's request fields), so a loop they continue goes with
// thinking disabled; one that sends the blocks back keeps the model's default, and a
// client's own reasoning_effort, or a model that always thinks, is left as it is.
func TestAnthropicToolLoopWithoutThinkingBlocksTurnsDefaultThinkingOff(t *testing.T) {
	const signed = `,"thinking_blocks":[{"type":"thinking","thinking":"Checking the weather.","signature":"c2ln"}]`
	const off = `{"type":"disabled"}`
	for _, tc := range []struct {
		name, model, body string
		// thinking is the thinking member sent, "" for none.
		thinking string
	}{
		{"runTools replay, no thinking_blocks", "claude-opus-5", toolLoopBody("", "", ""), off},
		{"thinking_blocks null", "claude-opus-5", toolLoopBody(`,"thinking_blocks":null`, "", ""), off},
		{"thinking_blocks empty", "claude-opus-5", toolLoopBody(`,"thinking_blocks":[]`, "", ""), off},
		{"unsigned thinking block, never sent", "claude-opus-5",
			toolLoopBody(`,"thinking_blocks":[{"type":"thinking","thinking":"a","signature":""}]`, "", ""), off},
		{"user text after the tool result, one turn with it", "claude-opus-5",
			toolLoopBody("", `,{"role":"user","content":"And in Lyon?"}`, ""), off},
		{"haiku 5.5", "claude-haiku-5-5", toolLoopBody("", "", ""), off},
		{"thinking block sent back", "claude-opus-5", toolLoopBody(signed, "", ""), ""},
		{"redacted thinking sent back", "claude-opus-5",
			toolLoopBody(`,"thinking_blocks":[{"type":"redacted_thinking","data":"ZGF0YQ=="}]`, "", ""), ""},
		{"loop ended by an answer", "claude-opus-5",
			toolLoopBody("", `,{"role":"assistant","content":"It is sunny."},{"role":"user","content":"Thanks"}`, ""), ""},
		{"reasoning_effort asked for", "claude-opus-5", toolLoopBody("", "", `,"reasoning_effort":"high"`), `{"type":"adaptive"}`},
		{"thinking object asked for", "claude-opus-5", toolLoopBody("", "", `,"thinking":{"type":"adaptive"}`), `{"type":"adaptive"}`},
		{"model that always thinks", "claude-fable-5", toolLoopBody("", "", ""), ""},
		{"model without default thinking", "claude-sonnet-4-5", toolLoopBody("", "", ""), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, rerr := translateOrRefusal(t, tc.model, tc.body)
			if rerr != nil {
				t.Fatalf("refused: %s: %s", rerr.param, rerr.msg)
			}
			if string(m["thinking"]) != tc.thinking {
				t.Errorf("%s: sent thinking %s (output_config %s), want %q", tc.model, m["thinking"], m["output_config"], tc.thinking)
			}
		})
	}
}
