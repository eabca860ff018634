package providers

import (
	"encoding/json"
	"strings"
	"testing"
)

// The Messages API refuses a request whose messages hold tool_use or tool_result
// blocks without a tools list ("Requests which include `tool_use` or `tool_result`
// blocks must define tools.", 400 invalid_request_error). OpenAI takes such a history
// without tools, and clients send it: a last call that asks for a summary after a tool
// loop, with the tools left out so that the model answers in text.
func TestAnthropicToolHistoryWithoutToolsDeclaresTools(t *testing.T) {
	m := anthropicFields(t, `{"model":"chat","messages":[
		{"role":"user","content":"Weather in Paris?"},
		{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
		{"role":"tool","tool_call_id":"call_1","content":"18C, sunny"},
		{"role":"user","content":"Summarise that in one line."}]}`)
	var msgs []struct {
		Content []struct {
			Type string `json:"type"`
		} `json:"content"`
	}
	if err := json.Unmarshal(m["messages"], &msgs); err != nil {
		t.Fatal(err)
	}
	toolBlocks := 0
	for _, msg := range msgs {
		for _, b := range msg.Content {
			if b.Type == "tool_use" || b.Type == "tool_result" {
				toolBlocks++
			}
		}
	}
	var tools []json.RawMessage
	_ = json.Unmarshal(m["tools"], &tools)
	if toolBlocks > 0 && len(tools) == 0 {
		t.Errorf("%d tool_use/tool_result blocks sent without tools, which the Messages API refuses: messages = %s", toolBlocks, m["messages"])
	}
	// The model reads the history as it was and calls nothing, as OpenAI's would
	// without tools.
	if got, want := string(m["tools"]), `[{"name":"get_weather","input_schema":{"type":"object"}}]`; got != want {
		t.Errorf("tools = %s, want %s", got, want)
	}
	if got := string(m["tool_choice"]); got != `{"type":"none"}` {
		t.Errorf("tool_choice = %s, want {\"type\":\"none\"}", got)
	}
}

// Each function the history calls is declared once, whatever the number of calls or
// the spelling of its name: the API refuses a tool name declared twice. The client's
// tool_choice and parallel_tool_calls, which OpenAI ignores without tools, give way to
// none: the declared tools stand only for the history.
func TestAnthropicToolHistoryToolsDeclaredOnce(t *testing.T) {
	call := func(id, name string) string {
		return `{"id":"` + id + `","type":"function","function":{"name":"` + name + `","arguments":"{}"}}`
	}
	result := func(id string) string { return `{"role":"tool","tool_call_id":"` + id + `","content":"ok"}` }
	body := `{"model":"chat","tool_choice":"required","parallel_tool_calls":false,"messages":[
		{"role":"user","content":"Plan my trip."},
		{"role":"assistant","content":null,"tool_calls":[` + call("c1", "get_weather") + `,` + call("c2", "get_weather") + `]},` +
		result("c1") + `,` + result("c2") + `,
		{"role":"assistant","content":"Now flights.","tool_calls":[` + call("c3", "find_flights") + `,` + call("c4", `get\u005fweather`) + `]},` +
		result("c3") + `,` + result("c4") + `,
		{"role":"user","content":"Sum it up."}]}`
	m := anthropicFields(t, body)
	var tools []struct {
		Name        string          `json:"name"`
		Description *string         `json:"description"`
		InputSchema json.RawMessage `json:"input_schema"`
	}
	if err := json.Unmarshal(m["tools"], &tools); err != nil {
		t.Fatalf("tools = %s: %v", m["tools"], err)
	}
	var names []string
	for _, tool := range tools {
		names = append(names, tool.Name)
		if tool.Description != nil || string(tool.InputSchema) != `{"type":"object"}` {
			t.Errorf("tool %s declared as %+v, want no description and input_schema {\"type\":\"object\"}", tool.Name, tool)
		}
	}
	if got := strings.Join(names, " "); got != "get_weather find_flights" {
		t.Errorf("declared tools %q, want get_weather find_flights", got)
	}
	if got := string(m["tool_choice"]); got != `{"type":"none"}` {
		t.Errorf("tool_choice = %s, want {\"type\":\"none\"}", got)
	}
}

// Nothing is added where the request has tools of its own, or a history without tool
// calls.
func TestAnthropicToolHistoryNothingAdded(t *testing.T) {
	for name, c := range map[string]struct{ body, tools, choice string }{
		"request tools": {
			body: `{"model":"chat","messages":[{"role":"user","content":"Weather?"},
				{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},
				{"role":"tool","tool_call_id":"c1","content":"18C"}],
				"tools":[{"type":"function","function":{"name":"get_weather","description":"Weather.","parameters":{"type":"object"}}}]}`,
			tools: `[{"name":"get_weather","description":"Weather.","input_schema":{"type":"object"}}]`,
		},
		"no tool calls": {
			body: `{"model":"chat","tool_choice":"auto","messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello!"},{"role":"user","content":"Bye"}]}`,
		},
	} {
		t.Run(name, func(t *testing.T) {
			m := anthropicFields(t, c.body)
			if string(m["tools"]) != c.tools || string(m["tool_choice"]) != c.choice {
				t.Errorf("tools = %s, tool_choice = %s; want %q, %q", m["tools"], m["tool_choice"], c.tools, c.choice)
			}
		})
	}
}
