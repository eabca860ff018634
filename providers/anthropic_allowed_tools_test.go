package providers

import (
	"encoding/json"
	"strings"
	"testing"
)

// allowedToolsBody is a chat request with three functions and tool_choice choice.
func allowedToolsBody(choice string) string {
	fn := func(name string) string {
		return `{"type":"function","function":{"name":"` + name + `","parameters":{"type":"object","properties":{}}}}`
	}
	return `{"model":"chat","messages":[{"role":"user","content":"Hi"}],"tools":[` +
		fn("get_weather") + `,` + fn("get_time") + `,` + fn("send_mail") + `],"tool_choice":` + choice + `}`
}

// tool_choice allowed_tools (chat's way of letting the model call only some of the
// tools a request lists) has no counterpart in the Messages API: only the allowed
// functions are sent, in the order of tools, with auto (mode auto) or any (mode
// required), so the model can call nothing else.
func TestAnthropicAllowedTools(t *testing.T) {
	allowed := func(mode string, names ...string) string {
		var list []string
		for _, n := range names {
			list = append(list, `{"type":"function","function":{"name":"`+n+`"}}`)
		}
		return `{"type":"allowed_tools","allowed_tools":{"mode":"` + mode + `","tools":[` + strings.Join(list, ",") + `]}}`
	}
	for _, c := range []struct {
		name, body, tools, choice string
	}{
		{"auto, two of three", allowedToolsBody(allowed("auto", "send_mail", "get_weather")),
			`["get_weather","send_mail"]`, `{"type":"auto"}`},
		{"required, one", allowedToolsBody(allowed("required", "get_time")),
			`["get_time"]`, `{"type":"any"}`},
		{"required, every one, no parallel calls", strings.Replace(allowedToolsBody(allowed("required", "get_time", "send_mail", "get_weather")),
			`"tool_choice"`, `"parallel_tool_calls":false,"tool_choice"`, 1),
			`["get_weather","get_time","send_mail"]`, `{"type":"any","disable_parallel_tool_use":true}`},
		{"a name escaped", allowedToolsBody(allowed("auto", `get\u005ftime`)),
			`["get_time"]`, `{"type":"auto"}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := anthropicFields(t, c.body)
			var tools []struct {
				Name string `json:"name"`
			}
			if err := json.Unmarshal(m["tools"], &tools); err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, tl := range tools {
				names = append(names, `"`+tl.Name+`"`)
			}
			if got := "[" + strings.Join(names, ",") + "]"; got != c.tools {
				t.Errorf("tools sent %s, want %s", got, c.tools)
			}
			if got := string(m["tool_choice"]); got != c.choice {
				t.Errorf("tool_choice = %s, want %s", got, c.choice)
			}
		})
	}
}

// An allowed_tools choice that names no listed function, lists none, has another mode
// or allows a tool of another type is refused before any upstream, naming where; a
// tool left out is still checked as every tool is.
func TestAnthropicAllowedToolsRefused(t *testing.T) {
	for _, c := range []struct{ name, body, param string }{
		{"unknown function", allowedToolsBody(`{"type":"allowed_tools","allowed_tools":{"mode":"auto","tools":[{"type":"function","function":{"name":"get_time"}},{"type":"function","function":{"name":"delete_all"}}]}}`),
			"tool_choice.allowed_tools.tools[1].function.name"},
		{"no tools", allowedToolsBody(`{"type":"allowed_tools","allowed_tools":{"mode":"auto","tools":[]}}`), "tool_choice.allowed_tools.tools"},
		{"no allowed_tools", allowedToolsBody(`{"type":"allowed_tools"}`), "tool_choice.allowed_tools.tools"},
		{"mode none", allowedToolsBody(`{"type":"allowed_tools","allowed_tools":{"mode":"none","tools":[{"type":"function","function":{"name":"get_time"}}]}}`),
			"tool_choice.allowed_tools.mode"},
		{"a custom tool", allowedToolsBody(`{"type":"allowed_tools","allowed_tools":{"mode":"auto","tools":[{"type":"custom","custom":{"name":"get_time"}}]}}`),
			"tool_choice.allowed_tools.tools[0].type"},
		{"a name not a string", allowedToolsBody(`{"type":"allowed_tools","allowed_tools":{"mode":"auto","tools":[{"type":"function","function":{"name":7}}]}}`),
			"tool_choice.allowed_tools.tools[0].function.name"},
		{"a tool left out malformed", strings.Replace(allowedToolsBody(`{"type":"allowed_tools","allowed_tools":{"mode":"auto","tools":[{"type":"function","function":{"name":"get_weather"}}]}}`),
			`"name":"send_mail","parameters":{"type":"object","properties":{}}`, `"name":"send_mail","parameters":"none"`, 1),
			"tools[2].function.parameters"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, rerr := appendAnthropicRequest(nil, []byte(c.body), quoteModel("claude-x"), 1024, claudeModel{}, false)
			if rerr == nil || rerr.param != c.param {
				t.Fatalf("refused %v, want param %s: %s", rerr, c.param, out)
			}
		})
	}
}

// With thinking on, allowed_tools in mode required forces a tool call, which the API
// refuses with thinking, and is refused as required is; mode auto goes.
func TestAnthropicAllowedToolsThinking(t *testing.T) {
	for _, c := range []struct {
		mode    string
		refused bool
	}{{"required", true}, {"auto", false}} {
		body := strings.Replace(allowedToolsBody(`{"type":"allowed_tools","allowed_tools":{"mode":"`+c.mode+`","tools":[{"type":"function","function":{"name":"get_time"}}]}}`),
			`"tool_choice"`, `"reasoning_effort":"low","tool_choice"`, 1)
		out, rerr := appendAnthropicRequest(nil, []byte(body), quoteModel("claude-x"), 1024, claudeModel{}, false)
		switch {
		case c.refused && (rerr == nil || rerr.param != "tool_choice"):
			t.Errorf("mode %s: not refused naming tool_choice: %v %s", c.mode, rerr, out)
		case !c.refused && rerr != nil:
			t.Errorf("mode %s: refused: %s: %s", c.mode, rerr.param, rerr.msg)
		}
		if got := forcesTool([]byte(`{"type":"allowed_tools","allowed_tools":{"mode":"` + c.mode + `","tools":[]}}`)); got != c.refused {
			t.Errorf("forcesTool(allowed_tools %s) = %v", c.mode, got)
		}
	}
}

// Against mockllm speaking the Messages API (which calls the first tool it is sent for
// tool_choice any): allowed_tools required, allowing only the second function, is
// answered with a call of that one, read back as chat's tool_calls.
func TestAnthropicAllowedToolsAgainstMockllm(t *testing.T) {
	b, _ := startMockAnthropic(t)
	body := allowedToolsBody(`{"type":"allowed_tools","allowed_tools":{"mode":"required","tools":[{"type":"function","function":{"name":"get_time"}}]}}`)
	cc, _ := sendChat(t, b, body)
	if len(cc.Choices) != 1 || len(cc.Choices[0].Message.ToolCalls) != 1 {
		t.Fatalf("want one tool call, got %+v", cc.Choices)
	}
	if got := cc.Choices[0].Message.ToolCalls[0].Function.Name; got != "get_time" {
		t.Errorf("called %q, want get_time, the one allowed", got)
	}
	if got := cc.Choices[0].FinishReason; got != "tool_calls" {
		t.Errorf("finish_reason %q, want tool_calls", got)
	}
}
