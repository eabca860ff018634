package providers

import "testing"

// allowedToolsResp is a Responses API request with two functions and web search, and
// tool_choice choice.
func allowedToolsResp(choice string) string {
	return `{"model":"chat","input":"x","tools":[{"type":"function","name":"get_weather"},{"type":"function","name":"get_time"},` +
		`{"type":"web_search","search_context_size":"low"}],"tool_choice":` + choice + `}`
}

// tool_choice allowed_tools has no counterpart in chat completions: the bridge sends
// up only the tools it names, with auto or required by its mode, so that the model can
// call nothing else.
func TestBridgeAllowedTools(t *testing.T) {
	cases := []struct{ name, choice, want string }{
		{"auto, one function",
			`{"type":"allowed_tools","mode":"auto","tools":[{"type":"function","name":"get_time"}]}`,
			`{"model":"chat","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"get_time"}}],"tool_choice":"auto"}`},
		{"required, a function and web search",
			`{"type":"allowed_tools","mode":"required","tools":[{"type":"web_search"},{"type":"function","name":"get_weather"}]}`,
			`{"model":"chat","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"get_weather"}}],"tool_choice":"required","web_search_options":{"search_context_size":"low"}}`},
		{"auto, web search alone",
			`{"type":"allowed_tools","mode":"auto","tools":[{"type":"web_search"}]}`,
			`{"model":"chat","messages":[{"role":"user","content":"x"}],"web_search_options":{"search_context_size":"low"}}`},
		{"a name escaped",
			`{"type":"allowed_tools","mode":"auto","tools":[{"type":"function","name":"get\u005ftime"}]}`,
			`{"model":"chat","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"get_time"}}],"tool_choice":"auto"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, _, rerr, prev := bridgeChat(allowedToolsResp(c.choice), false)
			if rerr != nil || prev {
				t.Fatalf("refused: %+v %v", rerr, prev)
			}
			sameJSONText(t, got, c.want)
		})
	}
}

// An allowed_tools choice the Responses API would refuse, or chat cannot express, is
// refused before anything goes up, naming where.
func TestBridgeAllowedToolsRefused(t *testing.T) {
	cases := []struct{ name, choice, param string }{
		{"unknown function", `{"type":"allowed_tools","mode":"auto","tools":[{"type":"function","name":"get_time"},{"type":"function","name":"rm_rf"}]}`, "tool_choice.tools[1].name"},
		{"no tools", `{"type":"allowed_tools","mode":"auto","tools":[]}`, "tool_choice.tools"},
		{"tools missing", `{"type":"allowed_tools","mode":"auto"}`, "tool_choice.tools"},
		{"mode none", `{"type":"allowed_tools","mode":"none","tools":[{"type":"function","name":"get_time"}]}`, "tool_choice.mode"},
		{"a name not a string", `{"type":"allowed_tools","mode":"auto","tools":[{"type":"function","name":1}]}`, "tool_choice.tools[0].name"},
		{"a built-in tool chat lacks", `{"type":"allowed_tools","mode":"auto","tools":[{"type":"file_search"}]}`, "tool_choice.tools[0].type"},
		{"required, web search alone", `{"type":"allowed_tools","mode":"required","tools":[{"type":"web_search"}]}`, "tool_choice.mode"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, rerr, prev := bridgeChat(allowedToolsResp(c.choice), false)
			if prev || rerr == nil {
				t.Fatalf("accepted (prev %v)", prev)
			}
			if rerr.param != c.param {
				t.Fatalf("param %q, want %q (%s)", rerr.param, c.param, rerr.msg)
			}
		})
	}
	// Web search named but not among the request's tools.
	_, _, rerr, _ := bridgeChat(`{"model":"chat","input":"x","tools":[{"type":"function","name":"f"}],"tool_choice":{"type":"allowed_tools","mode":"auto","tools":[{"type":"web_search"}]}}`, false)
	if rerr == nil || rerr.param != "tool_choice.tools[0].type" {
		t.Fatalf("web search allowed without the tool: %+v", rerr)
	}
}
