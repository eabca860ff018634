package providers

import (
	"testing"
)

// claudeCodeFirstTurn is the body Claude Code 2.1.332 sends for `claude -p "Say hello"`
// to Opus 5.5 (trimmed: two of its tools, its texts shortened, no secrets): its
// reminders in a system message after the user's (a mid-conversation system message),
// the billing header first in system, a deferred-tool placeholder.
const claudeCodeFirstTurn = `{"model":"claude-opus-5-5","messages":[` +
	`{"role":"user","content":[{"type":"text","text":"<system-reminder>\nAttribution for git commits\n</system-reminder>\n"},{"type":"text","text":"Say hello"}]},` +
	`{"role":"system","content":[{"type":"text","text":"# Environment\n - Primary working directory: /work\n","cache_control":{"type":"ephemeral"}}]}],` +
	`"system":[{"type":"text","text":"x-anthropic-billing-header: cc_version=2.1.332.1c9; cc_entrypoint=sdk-cli;"},` +
	`{"type":"text","text":"You are a Claude agent.","cache_control":{"type":"ephemeral"}}],` +
	`"tools":[{"name":"ToolSearch","description":"Fetches deferred tools.","input_schema":{"type":"object","properties":{"query":{"type":"string"}},"required":["query"],"additionalProperties":false}},` +
	`{"name":"DeferredToolPlaceholder","description":"Reserved placeholder.","input_schema":{"type":"object","properties":{}},"defer_loading":true}],` +
	`"metadata":{"user_id":"{\"device_id\":\"d1\",\"account_uuid\":\"\",\"session_id\":\"s1\"}"},"max_tokens":32000,` +
	`"thinking":{"type":"adaptive","display":"omitted"},"context_management":{"edits":[{"type":"clear_thinking_20251015","keep":"all"}]},` +
	`"output_config":{"effort":"medium"},"stream":true}`

// The turn after the model called ToolSearch: Claude Code answers with a reference to
// the deferred tool it loads, and a text block.
const claudeCodeToolSearchTurn = `{"model":"claude-opus-5-5","max_tokens":32000,"messages":[` +
	`{"role":"user","content":[{"type":"text","text":"find the web fetch tool"}]},` +
	`{"role":"system","content":[{"type":"text","text":"# Environment","cache_control":{"type":"ephemeral"}}]},` +
	`{"role":"assistant","content":[{"type":"tool_use","id":"call_0","name":"ToolSearch","input":{"query":"select:WebFetch"}}]},` +
	`{"role":"user","content":[{"type":"tool_result","tool_use_id":"call_0","content":[{"type":"tool_reference","tool_name":"WebFetch"}]},` +
	`{"type":"text","text":"Tool loaded.","cache_control":{"type":"ephemeral"}}]}]}`

// Claude Code's mid-conversation system messages and tool search references go up as
// a chat request every chat template takes: the system messages' text folded into
// the turn they follow, the references as text.
func TestMessagesBridgeClaudeCode(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"first turn: the system message ends the user's last text",
			claudeCodeFirstTurn,
			`{"model":"chat","messages":[{"role":"system","content":"You are a Claude agent."},{"role":"user","content":[` +
				`{"type":"text","text":"<system-reminder>\nAttribution for git commits\n</system-reminder>\n"},` +
				`{"type":"text","text":"Say hello\n\n# Environment\n - Primary working directory: /work\n"}]}],` +
				`"tools":[{"type":"function","function":{"name":"ToolSearch","description":"Fetches deferred tools.","parameters":{"type":"object","properties":{"query":{"type":"string"}},"required":["query"],"additionalProperties":false}}},` +
				`{"type":"function","function":{"name":"DeferredToolPlaceholder","description":"Reserved placeholder.","parameters":{"type":"object","properties":{}}}}],` +
				`"max_tokens":32000,"user":"{\"device_id\":\"d1\",\"account_uuid\":\"\",\"session_id\":\"s1\"}","stream":true,"stream_options":{"include_usage":true}}`},
		{"tool search: the reference as the tool's text",
			claudeCodeToolSearchTurn,
			`{"model":"chat","messages":[{"role":"user","content":"find the web fetch tool\n\n# Environment"},` +
				`{"role":"assistant","content":null,"tool_calls":[{"id":"call_0","type":"function","function":{"name":"ToolSearch","arguments":"{\"query\":\"select:WebFetch\"}"}}]},` +
				`{"role":"tool","tool_call_id":"call_0","content":"Tool loaded: WebFetch"},{"role":"user","content":"Tool loaded."}],"max_tokens":32000}`},
		{"references after text, one a line",
			`{"max_tokens":8,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"Found 2"},` +
				`{"type":"tool_reference","tool_name":"WebFetch"},{"type":"tool_reference","tool_name":"WebSearch"}]}]}]}`,
			`{"model":"chat","messages":[{"role":"tool","tool_call_id":"t","content":"Found 2\nTool loaded: WebFetch\nTool loaded: WebSearch"}],"max_tokens":8}`},
		{"a string turn",
			`{"max_tokens":8,"messages":[{"role":"user","content":"hi"},{"role":"system","content":"Be brief."}]}`,
			`{"model":"chat","messages":[{"role":"user","content":"hi\n\nBe brief."}],"max_tokens":8}`},
		{"a turn of tool results alone: the last tool message's text, no user message after them",
			`{"max_tokens":8,"messages":[{"role":"user","content":"x"},{"role":"assistant","content":[{"type":"tool_use","id":"a","name":"f","input":{}},{"type":"tool_use","id":"b","name":"f","input":{}}]},` +
				`{"role":"user","content":[{"type":"tool_result","tool_use_id":"a","content":"one"},{"type":"tool_result","tool_use_id":"b","content":[{"type":"text","text":"two"}]}]},` +
				`{"role":"system","content":[{"type":"text","text":"Reminder"},{"type":"text","text":"Twice"}]}]}`,
			`{"model":"chat","messages":[{"role":"user","content":"x"},{"role":"assistant","content":null,"tool_calls":[` +
				`{"id":"a","type":"function","function":{"name":"f","arguments":"{}"}},{"id":"b","type":"function","function":{"name":"f","arguments":"{}"}}]},` +
				`{"role":"tool","tool_call_id":"a","content":"one"},{"role":"tool","tool_call_id":"b","content":"two\n\nReminder\nTwice"}],"max_tokens":8}`},
		{"an empty tool result",
			`{"max_tokens":8,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"a"}]},{"role":"system","content":"Reminder"}]}`,
			`{"model":"chat","messages":[{"role":"tool","tool_call_id":"a","content":"Reminder"}],"max_tokens":8}`},
		{"an image last: a text part of its own",
			`{"max_tokens":8,"messages":[{"role":"user","content":[{"type":"text","text":"What?"},{"type":"image","source":{"type":"url","url":"https://x.test/a.jpg"}}]},` +
				`{"role":"system","content":"Be brief."}]}`,
			`{"model":"chat","messages":[{"role":"user","content":[{"type":"text","text":"What?"},{"type":"image_url","image_url":{"url":"https://x.test/a.jpg"}},` +
				`{"type":"text","text":"Be brief."}]}],"max_tokens":8}`},
		{"after an assistant turn: a user message of its own",
			`{"max_tokens":8,"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y"},{"role":"system","content":"Go on."}]}`,
			`{"model":"chat","messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y"},{"role":"user","content":"Go on."}],"max_tokens":8}`},
		{"opening messages: the system prompt's",
			`{"max_tokens":8,"system":"S","messages":[{"role":"system","content":"L"},{"role":"user","content":"x"}]}`,
			`{"model":"chat","messages":[{"role":"system","content":"S\n\nL"},{"role":"user","content":"x"}],"max_tokens":8}`},
		{"opening messages without a system prompt",
			`{"max_tokens":8,"messages":[{"role":"system","content":[{"type":"text","text":"L"}]},{"role":"user","content":"x"}]}`,
			`{"model":"chat","messages":[{"role":"system","content":"L"},{"role":"user","content":"x"}],"max_tokens":8}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, _, rerr := msgsChat(c.in, false, true)
			if c.in == claudeCodeFirstTurn {
				got, _, rerr = msgsChat(c.in, true, true)
			}
			if rerr != nil {
				t.Fatalf("refused: %s: %s", rerr.param, rerr.msg)
			}
			if got != c.want {
				t.Fatalf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}
