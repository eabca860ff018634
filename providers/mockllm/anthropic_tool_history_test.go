package mockllm

import (
	"strings"
	"testing"
)

// toolTurns are the messages of a tool-use history: the user's question, then the
// turns given.
func toolTurns(tools string, msgs ...string) string {
	s := `{"model":"claude-mock","max_tokens":50,`
	if tools != "" {
		s += tools + ","
	}
	return s + `"messages":[{"role":"user","content":"get_weather for Oslo"},` + strings.Join(msgs, ",") + `]}`
}

// toolUse is an assistant turn calling get_weather, with tool_use id id.
func toolUse(id string) string {
	return `{"role":"assistant","content":[{"type":"tool_use","id":` + quote(id) + `,"name":"get_weather","input":{"city":"Oslo"}}]}`
}

// toolResult is a user turn answering the tool_use of id id.
func toolResult(id string) string {
	return `{"role":"user","content":[{"type":"tool_result","tool_use_id":` + quote(id) + `,"content":"12C"}]}`
}

// TestMessagesToolHistoryRules: a tool-use history must pair every tool_use with a
// tool_result in the very next user message, by id; ids are unique and match
// ^[a-zA-Z0-9_-]+$; tool names are unique; and a request holding tool_use or
// tool_result blocks must define tools. The gateway's translation rewrites ids and
// declares history tools for exactly these refusals.
func TestMessagesToolHistoryRules(t *testing.T) {
	h := startAnthropic(t)
	cases := []struct {
		name, body, want string
	}{
		{"tool_result for an id never used", toolTurns(weatherTool, toolUse("toolu_1"), toolResult("toolu_2")),
			"messages.2.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_2. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."},
		{"tool_use without a tool_result next", toolTurns(weatherTool, toolUse("toolu_1"), `{"role":"user","content":"and now?"}`),
			"messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1. Each `tool_use` block must have a corresponding `tool_result` block in the next message."},
		{"tool_use id repeated across turns", toolTurns(weatherTool, toolUse("call_0"), toolResult("call_0"), toolUse("call_0"), toolResult("call_0")),
			"messages.3.content.0: `tool_use` ids must be unique"},
		{"tool_use id outside the pattern", toolTurns(weatherTool, toolUse("functions.get_weather:0"), toolResult("functions.get_weather:0")),
			"messages.1.content.0.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'"},
		{"tool history without tools", toolTurns("", toolUse("toolu_1"), toolResult("toolu_1")),
			"Requests which include `tool_use` or `tool_result` blocks must define tools."},
		{"tool history with an empty tools list", toolTurns(`"tools":[]`, toolUse("toolu_1"), toolResult("toolu_1")),
			"must define tools"},
		{"two tools of one name", messagesBody("hi", `"tools":[{"name":"a","input_schema":{"type":"object"}},{"name":"a","input_schema":{"type":"object"}}]`),
			"tools: Tool names must be unique."},
		{"one of two calls answered", toolTurns(weatherTool,
			`{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}},{"type":"tool_use","id":"toolu_2","name":"get_time","input":{}}]}`,
			toolResult("toolu_2")),
			"messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1."},
		{"tool_result after text", toolTurns(weatherTool, toolUse("toolu_1"),
			`{"role":"user","content":[{"type":"text","text":"here:"},{"type":"tool_result","tool_use_id":"toolu_1","content":"12C"}]}`),
			"`tool_use` ids were found without `tool_result` blocks immediately after: toolu_1"},
		{"tool_result answering an older turn", toolTurns(weatherTool, toolUse("toolu_1"), toolResult("toolu_1"), toolUse("toolu_2"), toolResult("toolu_1")),
			"messages.4.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_1."},
		{"tool calls answered by the assistant", toolTurns(weatherTool, toolUse("toolu_1"), `{"role":"assistant","content":"done"}`),
			"`tool_use` ids were found without `tool_result` blocks immediately after: toolu_1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { anthRefused(t, h, tc.body, tc.want) })
	}
}

// TestMessagesToolHistoryAccepted: histories the API takes: parallel calls answered in
// any order with text after the results, a loop of several turns, and a final
// assistant turn whose call is yet to be answered.
func TestMessagesToolHistoryAccepted(t *testing.T) {
	h := startAnthropic(t)
	for _, tc := range []struct{ name, body string }{
		{"parallel calls, results in another order, text after them", strings.Replace(benchToolLoop, `"mock-1"`, `"claude-mock"`, 1)},
		{"a loop of two turns", toolTurns(weatherTool, toolUse("toolu_1"), toolResult("toolu_1"), toolUse("toolu_2"), toolResult("toolu_2"))},
		{"ids of letters, digits, _ and -", toolTurns(weatherTool, toolUse("call_A-9"), toolResult("call_A-9"))},
		{"a final call unanswered", toolTurns(weatherTool, toolUse("toolu_1"))},
	} {
		t.Run(tc.name, func(t *testing.T) { anthAccepted(t, h, tc.body) })
	}
}
