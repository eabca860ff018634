package gateway

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// codexHeaders are headers Codex CLI 0.171.0 sends with every Responses call (its key
// from the provider's env_key as a bearer token).
var codexHeaders = []string{
	"Authorization", "Bearer codex-key",
	"Accept", "text/event-stream",
	"Originator", "codex_exec",
	"Session-Id", "01a24ed9-3b09-7a43-9bbe-101e3d2ca099",
	"User-Agent", "codex_exec/0.171.0 (Debian 12.0.0; x86_64) xterm (codex_exec; 0.171.0)",
	"X-Codex-Window-Id", "01a24ed9-3b09-7a43-9bbe-101e3d2ca099:0",
}

// codexBody is the body Codex CLI 0.171.0 sends `codex exec "Say hello"` with a model
// it has no metadata for, asking for model (trimmed: two of its functions, its texts
// shortened, its client_metadata cut); items go after the user's message.
func codexBody(model, items string) string {
	return `{"model":"` + model + `","input":[` +
		`{"type":"message","role":"developer","content":[{"type":"input_text","text":"<permissions instructions>read-only</permissions instructions>"}]},` +
		`{"type":"message","role":"user","content":[{"type":"input_text","text":"<environment_context>\n  <cwd>/work</cwd>\n</environment_context>"}]},` +
		`{"type":"message","role":"user","content":[{"type":"input_text","text":"Say hello"}]}` + items + `],` +
		`"tools":[{"type":"function","name":"exec_command","description":"Runs a command in a PTY.","strict":false,` +
		`"parameters":{"type":"object","properties":{"cmd":{"type":"string"}},"required":["cmd"],"additionalProperties":false}},` +
		`{"type":"namespace","name":"multi_agent_v1","description":"Tools for spawning and managing sub-agents.","tools":[` +
		`{"type":"function","name":"close_agent","description":"Close an agent.","strict":false,"parameters":{"type":"object","properties":{"target":{"type":"string"}},"required":["target"],"additionalProperties":false}},` +
		`{"type":"function","name":"spawn_agent","description":"Spawn a sub-agent.","strict":false,"parameters":{"type":"object","properties":{"message":{"type":"string"}},"additionalProperties":false}}]},` +
		`{"type":"web_search","external_web_access":false}],` +
		`"tool_choice":"auto","parallel_tool_calls":true,"reasoning":{"summary":"auto"},"store":false,"stream":true,` +
		`"include":["reasoning.encrypted_content"],"prompt_cache_key":"01a24ed9-3b09-7a43-9bbe-101e3d2ca099",` +
		`"client_metadata":{"x-codex-window-id":"01a24ed9:0"}}`
}

// responseStream posts a Codex turn to url (with the headers hdr besides Codex's),
// checks that the answer is a whole Responses API stream and returns the output items
// of its response.completed.
func responseStream(t *testing.T, url, body string, hdr ...string) []map[string]any {
	t.Helper()
	status, raw := agentPost(t, url, body, append(append([]string(nil), codexHeaders...), hdr...)...)
	if status != 200 {
		t.Fatalf("status %d: %s", status, raw)
	}
	evs := readEvents(t, raw)
	if len(evs) < 3 || evs[0].name != "response.created" || evs[len(evs)-1].name != "response.completed" {
		t.Fatalf("stream %s", raw)
	}
	var done struct {
		Response struct {
			Output []map[string]any `json:"output"`
		} `json:"response"`
	}
	if err := json.Unmarshal(evs[len(evs)-1].data, &done); err != nil {
		t.Fatal(err)
	}
	return done.Response.Output
}

// Codex on a model served through chat completions (responses_api: chat, as for a vLLM
// without the Responses API): its turns, whose sub-agent tools come in a namespace
// tool, stream back as responses, a call of a namespaced function as a function_call
// item naming its namespace, which Codex dispatches by, and the next turn's
// function_call items go up as the calls they were. Before, the bridge refused the
// namespace tool, and every call Codex made failed with 400 "tools[4].type is not
// supported".
func TestCodexThroughChatCompletions(t *testing.T) {
	g, up := startBridged(t)
	url := g.url + "/v1/responses"
	out := responseStream(t, url, codexBody("tgi", ""), "X-Mock-Tool-Calls", "2")
	if len(out) != 2 || out[0]["name"] != "exec_command" || out[0]["namespace"] != nil ||
		out[1]["name"] != "close_agent" || out[1]["namespace"] != "multi_agent_v1" || out[1]["arguments"] != `{"n":1}` {
		t.Fatalf("output %v", out)
	}
	chat := string(up.Stats().LastBody)
	if !strings.Contains(chat, `{"type":"function","function":{"name":"multi_agent_v1__spawn_agent","description":"Spawn a sub-agent."`) ||
		strings.Contains(chat, `"namespace"`) || strings.Contains(chat, `"store"`) || strings.Contains(chat, `"include"`) {
		t.Fatalf("chat body %s", chat)
	}

	next := `,{"type":"function_call","status":"completed","id":"fc_1","name":"exec_command","arguments":"{\"n\":0}","call_id":"call_0"},` +
		`{"type":"function_call","status":"completed","id":"fc_2","name":"close_agent","namespace":"multi_agent_v1","arguments":"{\"n\":1}","call_id":"call_1"},` +
		`{"type":"function_call_output","id":"fco_1","call_id":"call_0","output":"failed to parse function arguments: missing field ` + "`cmd`" + `"},` +
		`{"type":"function_call_output","id":"fco_2","call_id":"call_1","output":"failed to parse function arguments: missing field ` + "`target`" + `"}`
	if out = responseStream(t, url, codexBody("tgi", next)); len(out) != 1 || out[0]["type"] != "message" {
		t.Fatalf("output %v", out)
	}
	msgs := chatMessages(t, up.Stats().LastBody)
	if len(msgs) != 6 || len(msgs[3].ToolCalls) != 2 || msgs[3].ToolCalls[1].Function.Name != "multi_agent_v1__close_agent" ||
		msgs[4].ToolCallID != "call_0" || msgs[5].ToolCallID != "call_1" {
		t.Fatalf("chat messages %s", up.Stats().LastBody)
	}
}

// Codex on a backend that serves the Responses API itself (vLLM, mocked): the call goes
// up as it came, namespace tool, store false and include with it, and streams back.
func TestCodexThroughNativeResponses(t *testing.T) {
	up, addr := startMock(t, mockllm.Options{Model: "vllm-model", MaxTokens: 16, Seed: 5})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
auth: {keys: [{name: dev, key: codex-key}]}
backends:
  vllm: {provider: openai, base_url: "http://`+addr+`/v1", model: vllm-model, timeout: 5s}
endpoints:
  - {name: codex, type: chat, routes: [{backend: vllm}]}
`)
	if out := responseStream(t, g.url+"/v1/responses", codexBody("codex", "")); len(out) != 1 || out[0]["type"] != "message" {
		t.Fatalf("output %v", out)
	}
	st := up.Stats()
	body := string(st.LastBody)
	if st.Requests["/v1/responses"] != 1 || !strings.HasPrefix(body, `{"model":"vllm-model","input":[`) ||
		!strings.Contains(body, `{"type":"namespace","name":"multi_agent_v1"`) || !strings.Contains(body, `"store":false`) ||
		!strings.Contains(body, `"include":["reasoning.encrypted_content"]`) || st.LastHeaders.Get("Originator") != "codex_exec" {
		t.Fatalf("upstream saw %v %v %s", st.Requests, st.LastHeaders, body)
	}
}
