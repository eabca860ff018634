package gateway

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// claudeCodeHeaders are the headers Claude Code 2.1.332 sends with every Messages
// call (ANTHROPIC_AUTH_TOKEN as the bearer key; its betas for Opus 5.5).
var claudeCodeHeaders = []string{
	"Authorization", "Bearer cc-key",
	"Anthropic-Version", "2023-06-01",
	"Anthropic-Beta", "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27,per-turn-control-2026-07-01," +
		"mid-conversation-tool-changes-2026-07-01,thinking-token-count-2026-05-13,advanced-tool-use-2025-11-20,effort-2025-11-24",
	"Anthropic-Dangerous-Direct-Browser-Access", "true",
	"User-Agent", "claude-cli/2.1.332 (external, sdk-cli)",
	"X-App", "cli",
	"X-Claude-Code-Session-Id", "6463ee4a-6232-48cd-a3a5-4c75b0ce581f",
}

// claudeCodeBody is the body Claude Code 2.1.332 sends for `claude -p "Say hello"`
// (trimmed: three of its tools, its texts shortened; max_tokens as
// CLAUDE_CODE_MAX_OUTPUT_TOKENS=4096 sets it), asking for model; msgs replaces
// its messages when not empty. Its reminders come in a system message after the
// user's (a mid-conversation system message), as Claude Code sends them to Opus 4.8,
// the Claude 5 models and a model name it does not know.
func claudeCodeBody(model, msgs string) string {
	if msgs == "" {
		msgs = `{"role":"user","content":[{"type":"text","text":"<system-reminder>\nAttribution for git commits\n</system-reminder>\n"},{"type":"text","text":"Say hello"}]},` +
			`{"role":"system","content":[{"type":"text","text":"# Environment\n - Primary working directory: /work\n","cache_control":{"type":"ephemeral"}}]}`
	}
	return `{"model":"` + model + `","messages":[` + msgs + `],` +
		`"system":[{"type":"text","text":"x-anthropic-billing-header: cc_version=2.1.332.1c9; cc_entrypoint=sdk-cli;"},` +
		`{"type":"text","text":"You are a Claude agent.","cache_control":{"type":"ephemeral"}}],` +
		`"tools":[{"name":"ToolSearch","description":"Fetches deferred tools.","input_schema":{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object",` +
		`"properties":{"query":{"type":"string"},"max_results":{"default":5,"type":"number"}},"required":["query"],"additionalProperties":false}},` +
		`{"name":"Bash","description":"Runs a command.","input_schema":{"type":"object","properties":{"command":{"type":"string"}},"required":["command"],"additionalProperties":false}},` +
		`{"name":"DeferredToolPlaceholder","description":"Reserved placeholder; never call this tool.","input_schema":{"type":"object","properties":{}},"defer_loading":true}],` +
		`"metadata":{"user_id":"{\"device_id\":\"d1\",\"account_uuid\":\"\",\"session_id\":\"6463ee4a\"}"},"max_tokens":4096,` +
		`"thinking":{"type":"adaptive","display":"omitted"},"context_management":{"edits":[{"type":"clear_thinking_20251015","keep":"all"}]},` +
		`"output_config":{"effort":"medium"},"stream":true}`
}

// messageStream posts body to url with Claude Code's headers, checks that the answer
// is a whole Messages API stream and returns its events' types.
func messageStream(t *testing.T, url, body string) []string {
	t.Helper()
	status, raw := agentPost(t, url, body, claudeCodeHeaders...)
	return checkMessageStream(t, status, raw)
}

func checkMessageStream(t *testing.T, status int, body []byte) []string {
	t.Helper()
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	var types []string
	for _, ev := range readEvents(t, body) {
		var e struct{ Type string }
		if err := json.Unmarshal(ev.data, &e); err != nil || e.Type != ev.name {
			t.Fatalf("event %s %s", ev.name, ev.data)
		}
		types = append(types, e.Type)
	}
	if len(types) < 4 || types[0] != "message_start" || types[len(types)-1] != "message_stop" {
		t.Fatalf("events %v", types)
	}
	return types
}

// Claude Code on a model served through chat completions (messages_api: chat, as for
// a vLLM without the Messages API): its turns, which hold its reminders in a system
// message after the user's, stream back as messages. Before, the gateway refused the
// system role (400 "role must be user or assistant"), and every call Claude Code made
// failed. The system message's text ends the turn it follows, the way Claude Code
// writes the same reminders for models without such messages, which every chat
// template takes.
func TestClaudeCodeThroughChatCompletions(t *testing.T) {
	g, up, _ := startMessagesBridge(t)
	url := g.url + "/v1/messages?beta=true"

	messageStream(t, url, claudeCodeBody("tgi", ""))
	msgs := chatMessages(t, up.Stats().LastBody)
	if len(msgs) != 2 || msgs[0].Role != "system" || msgs[0].text() != "You are a Claude agent." || msgs[1].Role != "user" ||
		!strings.HasSuffix(msgs[1].text(), "Say hello\n\n# Environment\n - Primary working directory: /work\n") {
		t.Fatalf("chat messages %s", up.Stats().LastBody)
	}

	// The turn after a tool call, the reminders after the tool results: they end the
	// last tool message, so that no user message comes between the results and the
	// answer.
	loop := `{"role":"user","content":[{"type":"text","text":"List the files"}]},` +
		`{"role":"system","content":[{"type":"text","text":"# Environment","cache_control":{"type":"ephemeral"}}]},` +
		`{"role":"assistant","content":[{"type":"text","text":"Listing."},{"type":"tool_use","id":"toolu_01A","name":"Bash","input":{"command":"ls"}}]},` +
		`{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_01A","content":"a.go\nb.go","cache_control":{"type":"ephemeral"}}]},` +
		`{"role":"system","content":"<system-reminder>Two files.</system-reminder>"}`
	messageStream(t, url, claudeCodeBody("tgi", loop))
	msgs = chatMessages(t, up.Stats().LastBody)
	roles := make([]string, len(msgs))
	for i, m := range msgs {
		roles[i] = m.Role
	}
	if strings.Join(roles, ",") != "system,user,assistant,tool" || msgs[1].text() != "List the files\n\n# Environment" ||
		msgs[3].ToolCallID != "toolu_01A" || msgs[3].text() != "a.go\nb.go\n\n<system-reminder>Two files.</system-reminder>" {
		t.Fatalf("chat messages %s", up.Stats().LastBody)
	}
}

// Claude Code's tool search on a model served through chat completions: the model
// called ToolSearch, and Claude Code answers with a reference to the deferred tool it
// loads (WebFetch, declared in tools from then on). Before, the gateway refused the
// reference (400 "a tool result must hold text and image blocks only"); Claude Code
// sent the turn three times, then went on without tool search, every deferred tool
// declared in full. The reference goes up as the tool message's text.
func TestClaudeCodeToolSearchThroughChatCompletions(t *testing.T) {
	g, up, _ := startMessagesBridge(t)
	turn := `{"role":"user","content":[{"type":"text","text":"find the web fetch tool"}]},` +
		`{"role":"system","content":[{"type":"text","text":"# Environment","cache_control":{"type":"ephemeral"}}]},` +
		`{"role":"assistant","content":[{"type":"tool_use","id":"call_0","name":"ToolSearch","input":{"query":"select:WebFetch"}}]},` +
		`{"role":"user","content":[{"type":"tool_result","tool_use_id":"call_0","content":[{"type":"tool_reference","tool_name":"WebFetch"}]},` +
		`{"type":"text","text":"Tool loaded.","cache_control":{"type":"ephemeral"}}]}`
	body := strings.Replace(claudeCodeBody("tgi", turn), `{"name":"DeferredToolPlaceholder"`,
		`{"name":"WebFetch","description":"Fetches a URL.","input_schema":{"type":"object","properties":{"url":{"type":"string"}},"required":["url"]},"defer_loading":true},`+
			`{"name":"DeferredToolPlaceholder"`, 1)
	messageStream(t, g.url+"/v1/messages?beta=true", body)
	msgs := chatMessages(t, up.Stats().LastBody)
	if len(msgs) != 5 || msgs[3].Role != "tool" || msgs[3].text() != "Tool loaded: WebFetch" || msgs[4].Role != "user" || msgs[4].text() != "Tool loaded." {
		t.Fatalf("chat messages %s", up.Stats().LastBody)
	}
	if !strings.Contains(string(up.Stats().LastBody), `{"type":"function","function":{"name":"WebFetch"`) {
		t.Errorf("WebFetch not declared: %s", up.Stats().LastBody)
	}
}

// Claude Code on an Anthropic backend that serves the model it names (an endpoint
// alias of claude-opus-5-5): the call goes up as it came, its betas and its
// mid-conversation system message with it, and streams back. mockllm refused the
// system role as older models do, and Claude Code sent each session's first call
// twice, the second without its reminders in a system message; Opus 4.8 and the
// Claude 5 models take them.
func TestClaudeCodeThroughAnthropic(t *testing.T) {
	up, addr := startMock(t, mockllm.Options{Model: "claude-opus-5-5", API: mockllm.APIAnthropic, APIKey: afAnthropicKey, MaxTokens: 32, Seed: 5})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
auth: {keys: [{name: dev, key: cc-key}]}
backends:
  claude: {provider: anthropic, base_url: "http://`+addr+`/v1", model: claude-opus-5-5, api_key: `+afAnthropicKey+`, timeout: 5s}
endpoints:
  - {name: claude, aliases: [claude-opus-5-5], type: chat, routes: [{backend: claude}]}
`)
	messageStream(t, g.url+"/v1/messages?beta=true", claudeCodeBody("claude-opus-5-5", ""))
	st := up.Stats()
	if st.Requests["/v1/messages"] != 1 || !strings.Contains(string(st.LastBody), `{"role":"system","content":[{"type":"text","text":"# Environment`) ||
		!strings.Contains(st.LastHeaders.Get("Anthropic-Beta"), "advanced-tool-use-2025-11-20") || st.LastHeaders.Get("X-Api-Key") != afAnthropicKey {
		t.Fatalf("upstream saw %v %v %s", st.Requests, st.LastHeaders, st.LastBody)
	}
	count := `{"model":"claude-opus-5-5","messages":[{"role":"user","content":"foo"}],"tools":[]}`
	if status, b := agentPost(t, g.url+"/v1/messages/count_tokens?beta=true", count, claudeCodeHeaders...); status != 200 || !strings.Contains(string(b), `"input_tokens"`) {
		t.Fatalf("count_tokens %d %s", status, b)
	}
}
