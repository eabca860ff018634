package providers

import (
	"strings"
	"testing"
)

// codexTurn is the body Codex CLI 0.171.0 sends `codex exec "Say hello"` with a model
// it has no metadata for (trimmed: two of its functions, its texts shortened, its
// client_metadata cut): its sub-agent tools in a namespace tool, web search without
// live access, nothing stored.
const codexTurn = `{"model":"codex-chat","instructions":null,"input":[` +
	`{"type":"message","role":"developer","content":[{"type":"input_text","text":"<permissions instructions>read-only</permissions instructions>"}]},` +
	`{"type":"message","role":"user","content":[{"type":"input_text","text":"<environment_context>\n  <cwd>/work</cwd>\n</environment_context>"}]},` +
	`{"type":"message","role":"user","content":[{"type":"input_text","text":"Say hello"}]}],` +
	`"tools":[{"type":"function","name":"exec_command","description":"Runs a command in a PTY.","strict":false,` +
	`"parameters":{"type":"object","properties":{"cmd":{"type":"string"}},"required":["cmd"],"additionalProperties":false}},` +
	`{"type":"namespace","name":"multi_agent_v1","description":"Tools for spawning and managing sub-agents.","tools":[` +
	`{"type":"function","name":"close_agent","description":"Close an agent.","strict":false,"parameters":{"type":"object","properties":{"target":{"type":"string"}},"required":["target"],"additionalProperties":false}},` +
	`{"type":"function","name":"spawn_agent","description":"Spawn a sub-agent.","strict":false,"parameters":{"type":"object","properties":{"message":{"type":"string"}},"additionalProperties":false}}]},` +
	`{"type":"web_search","external_web_access":false}],` +
	`"tool_choice":"auto","parallel_tool_calls":true,"reasoning":{"summary":"auto"},"store":false,"stream":true,` +
	`"include":["reasoning.encrypted_content"],"prompt_cache_key":"01a24ed9-3b09-7a43-9bbe-101e3d2ca099",` +
	`"client_metadata":{"x-codex-window-id":"01a24ed9:0"}}`

// Codex's namespace tool goes up as chat functions named "<namespace>__<name>", as
// vLLM's Responses API flattens them; a function_call item of a namespace goes up as
// a call of that name. Before, the bridge refused the namespace tool (400
// "tools[4].type is not supported"), and every call Codex made to a model served
// through chat completions failed.
func TestBridgeCodexRequest(t *testing.T) {
	got, _, rerr, _ := bridgeChat(codexTurn, true)
	if rerr != nil {
		t.Fatalf("refused: %s: %s", rerr.param, rerr.msg)
	}
	sameJSONText(t, got, `{"model":"chat","messages":[`+
		`{"role":"system","content":"<permissions instructions>read-only</permissions instructions>"},`+
		`{"role":"user","content":"<environment_context>\n  <cwd>/work</cwd>\n</environment_context>"},`+
		`{"role":"user","content":"Say hello"}],`+
		`"tools":[{"type":"function","function":{"name":"exec_command","description":"Runs a command in a PTY.","parameters":{"type":"object","properties":{"cmd":{"type":"string"}},"required":["cmd"],"additionalProperties":false},"strict":false}},`+
		`{"type":"function","function":{"name":"multi_agent_v1__close_agent","description":"Close an agent.","parameters":{"type":"object","properties":{"target":{"type":"string"}},"required":["target"],"additionalProperties":false},"strict":false}},`+
		`{"type":"function","function":{"name":"multi_agent_v1__spawn_agent","description":"Spawn a sub-agent.","parameters":{"type":"object","properties":{"message":{"type":"string"}},"additionalProperties":false},"strict":false}}],`+
		`"tool_choice":"auto","web_search_options":{},"parallel_tool_calls":true,"prompt_cache_key":"01a24ed9-3b09-7a43-9bbe-101e3d2ca099",`+
		`"stream":true,"stream_options":{"include_usage":true}}`)

	// The next turn sends the calls back with their namespace, and their outputs.
	next := strings.Replace(codexTurn, `{"type":"message","role":"user","content":[{"type":"input_text","text":"Say hello"}]}]`,
		`{"type":"message","role":"user","content":[{"type":"input_text","text":"Say hello"}]},`+
			`{"type":"function_call","status":"completed","id":"fc_1","name":"exec_command","arguments":"{\"cmd\":\"ls\"}","call_id":"call_0"},`+
			`{"type":"function_call","status":"completed","id":"fc_2","name":"close_agent","namespace":"multi_agent_v1","arguments":"{\"target\":\"a1\"}","call_id":"call_1"},`+
			`{"type":"function_call_output","id":"fco_1","call_id":"call_0","output":"a.go"},`+
			`{"type":"function_call_output","id":"fco_2","call_id":"call_1","output":"closed"}]`, 1)
	got, _, rerr, _ = bridgeChat(next, false)
	if rerr != nil {
		t.Fatalf("refused: %s: %s", rerr.param, rerr.msg)
	}
	if !strings.Contains(got, `{"role":"assistant","content":null,"tool_calls":[{"id":"call_0","type":"function","function":{"name":"exec_command","arguments":"{\"cmd\":\"ls\"}"}},`+
		`{"id":"call_1","type":"function","function":{"name":"multi_agent_v1__close_agent","arguments":"{\"target\":\"a1\"}"}}]},`+
		`{"role":"tool","tool_call_id":"call_0","content":"a.go"},{"role":"tool","tool_call_id":"call_1","content":"closed"}`) {
		t.Fatalf("chat body %s", got)
	}

	// A forced namespaced function is forced by its chat name.
	forced := strings.Replace(codexTurn, `"tool_choice":"auto"`, `"tool_choice":{"type":"function","name":"spawn_agent","namespace":"multi_agent_v1"}`, 1)
	if got, _, rerr, _ = bridgeChat(forced, false); rerr != nil || !strings.Contains(got, `"tool_choice":{"type":"function","function":{"name":"multi_agent_v1__spawn_agent"}}`) {
		t.Fatalf("forced: %v %s", rerr, got)
	}
}

// What chat cannot express of Codex's other shapes is refused, naming it: the
// local_shell tool of older models, a namespace without its tools. (Its freeform
// tools, custom tools in a namespace and additional_tools items go up:
// bridge_custom_test.go.)
func TestBridgeCodexRefusals(t *testing.T) {
	for _, c := range []struct{ name, in, param, msg string }{
		{"local_shell", strings.Replace(codexTurn, `{"type":"web_search","external_web_access":false}`, `{"type":"local_shell"}`, 1),
			"tools[2].type", "takes function and custom tools, namespaces of them and web search only"},
		{"namespace without tools", strings.Replace(codexTurn, `"tools":[{"type":"function","name":"close_agent"`, `"tools":null,"x":[{"type":"function","name":"close_agent"`, 1),
			"tools[1].tools", "must be a list"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, rerr, _ := bridgeChat(c.in, false)
			if rerr == nil {
				t.Fatal("not refused")
			}
			if rerr.param != c.param || !strings.Contains(rerr.msg, c.msg) {
				t.Errorf("refused %q: %q; want %q, %q", rerr.param, rerr.msg, c.param, c.msg)
			}
		})
	}
}

// A chat call of a namespaced function comes back as a function_call item naming the
// function and its namespace, in an answer and in a stream; a name of no namespaced
// function (one with "__" of its own) comes back as it is.
func TestBridgeCodexAnswer(t *testing.T) {
	const calls = `{"index":0,"id":"call_0","type":"function","function":{"name":"multi_agent_v1__close_agent","arguments":"{\"target\":\"a1\"}"}},` +
		`{"index":1,"id":"call_1","type":"function","function":{"name":"mcp__files__read","arguments":"{}"}},` +
		`{"index":2,"id":"call_2","type":"function","function":{"name":"multi_agent_v1__spawn","arguments":"{}"}}`
	chat := `{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":null,` +
		`"tool_calls":[` + calls + `]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}`
	want := [][2]string{{"close_agent", "multi_agent_v1"}, {"mcp__files__read", ""}, {"multi_agent_v1__spawn", ""}}
	resp := bridgeAnswerOf(t, codexTurn, chat, Usage{Input: 12, Output: 3})
	if len(resp.Output) != 3 {
		t.Fatalf("output %s", resp.RawJSON())
	}
	for i, item := range resp.Output {
		if item.Type != "function_call" || item.Name != want[i][0] || item.Namespace != want[i][1] {
			t.Errorf("item %d: %s", i, item.RawJSON())
		}
	}

	s := bridgeStreamOf(codexTurn,
		delta(`{"role":"assistant","content":""}`, ""),
		delta(`{"tool_calls":[{"index":0,"id":"call_0","type":"function","function":{"name":"multi_agent_v1__close_agent","arguments":""}}]}`, ""),
		delta(`{"tool_calls":[{"index":0,"function":{"arguments":"{\"target\":\"a1\"}"}}]}`, ""),
		delta(`{"tool_calls":[{"index":1,"id":"call_1","type":"function","function":{"name":"mcp__files__read","arguments":"{}"}}]}`, ""),
		delta(`{}`, "tool_calls"), usageChunk, "[DONE]")
	got := readBridged(s)
	_ = s.Close()
	if got.err != nil {
		t.Fatal(got.err)
	}
	evs := checkEvents(t, got.events)
	added, done := 0, 0
	for _, ev := range evs {
		switch ev.Type {
		case "response.output_item.added", "response.output_item.done":
			w := want[ev.OutputIndex]
			if ev.Item.Name != w[0] || ev.Item.Namespace != w[1] {
				t.Errorf("%s: %s", ev.Type, ev.RawJSON())
			}
			if ev.Type == "response.output_item.added" {
				added++
			} else {
				done++
			}
		case "response.completed":
			if len(ev.Response.Output) != 2 || ev.Response.Output[0].Namespace != "multi_agent_v1" || ev.Response.Output[0].Name != "close_agent" {
				t.Errorf("completed: %s", ev.RawJSON())
			}
		}
	}
	if added != 2 || done != 2 {
		t.Errorf("%d items added, %d done: %s", added, done, types(evs))
	}
}
