package gateway

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// codexOwnBody is a turn in the shape Codex CLI sends one of its own models (the
// endpoint is named so that Codex sends its model's tools), trimmed, and without the
// tool_search tool the bridge refuses: its instructions, its permissions in a
// developer message, its freeform apply_patch tool (a lark grammar), exec as a custom
// tool of a namespace, a function tool; items go after the user's message.
func codexOwnBody(items string, stream bool) string {
	s := "true"
	if !stream {
		s = "false"
	}
	return `{"model":"gpt-5.5-codex","instructions":"You are Codex, a coding agent.","input":[` +
		`{"type":"message","role":"developer","content":[{"type":"input_text","text":"<permissions instructions>workspace-write</permissions instructions>"}]},` +
		`{"type":"message","role":"user","content":[{"type":"input_text","text":"Add hello.txt"}]}` + items + `],` +
		`"tools":[{"type":"custom","name":"apply_patch","description":"Use the ` + "`apply_patch`" + ` tool to edit files. This is a FREEFORM tool, so do not wrap the patch in JSON.",` +
		`"format":{"type":"grammar","syntax":"lark","definition":"start: begin_patch hunk+ end_patch\nbegin_patch: \"*** Begin Patch\" LF\n%import common.LF"}},` +
		`{"type":"namespace","name":"functions","description":"Code mode.","tools":[{"type":"custom","name":"exec","description":"Runs JavaScript.","format":{"type":"text"}}]},` +
		`{"type":"function","name":"shell_command","description":"Runs a command.","strict":false,"parameters":{"type":"object","properties":{"command":{"type":"string"}},"required":["command"],"additionalProperties":false}}],` +
		`"tool_choice":"auto","parallel_tool_calls":true,"reasoning":{"effort":"medium","summary":"auto"},"store":false,"stream":` + s + `,` +
		`"include":["reasoning.encrypted_content"],"prompt_cache_key":"01a24ed9-3b09-7a43-9bbe-101e3d2ca099"}`
}

// patchArgs are the arguments the mocked model calls the freeform tools with: a
// patch, in the string parameter input the bridge gave them.
const patchArgs = `{"input":"*** Begin Patch\n*** Add File: hello.txt\n+hello \"world\"\n*** End Patch\n"}`

const patch = "*** Begin Patch\n*** Add File: hello.txt\n+hello \"world\"\n*** End Patch\n"

// Codex with one of its own model names (its tool_search aside), served by a vLLM without the Responses API
// (responses_api: chat): its developer message goes up in the system message, with
// its instructions; its freeform tools as functions taking their input as a string;
// the model's calls of them stream back as custom_tool_call items, their input in
// response.custom_tool_call_input.delta events, buffered or streamed; the next turn's
// custom_tool_call items go up as the calls they were, their outputs as tool
// messages. Before, the bridge refused the custom tool (400 "tools[0].type is not
// supported"), and sent the developer message as role developer, which vLLM hands
// to the chat template as it came (Qwen3's leaves it out, Qwen3.5's refuses it).
func TestCodexCustomToolsThroughChatCompletions(t *testing.T) {
	up, addr := startMock(t, mockllm.Options{Model: "qwen3-coder", MaxTokens: 32, Seed: 5})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
auth: {keys: [{name: dev, key: codex-key}]}
backends:
  vllm: {provider: openai, base_url: "http://`+addr+`/v1", model: qwen3-coder, responses_api: chat, timeout: 5s}
endpoints:
  - {name: gpt-5.5-codex, type: chat, routes: [{backend: vllm}]}
`)
	url := g.url + "/v1/responses"
	calls := []string{"X-Mock-Tool-Calls", "2", "X-Mock-Tool-Arguments", patchArgs}

	status, raw := agentPost(t, url, codexOwnBody("", true), append(append([]string(nil), codexHeaders...), calls...)...)
	if status != 200 {
		t.Fatalf("status %d: %s", status, raw)
	}
	evs := readEvents(t, raw)
	deltas := map[string]string{}
	inputDone := 0
	var out []map[string]any
	for _, ev := range evs {
		var e struct {
			ItemID   string `json:"item_id"`
			Delta    string
			Input    string
			Response struct{ Output []map[string]any }
		}
		if err := json.Unmarshal(ev.data, &e); err != nil {
			t.Fatal(err)
		}
		switch ev.name {
		case "response.custom_tool_call_input.delta":
			deltas[e.ItemID] += e.Delta
		case "response.custom_tool_call_input.done":
			if e.Input != patch || deltas[e.ItemID] != patch {
				t.Errorf("input %q, deltas %q; want %q", e.Input, deltas[e.ItemID], patch)
			}
			inputDone++
		case "response.completed":
			out = e.Response.Output
		}
	}
	if inputDone != 2 || len(out) != 2 {
		t.Fatalf("%d inputs done, output %v: %s", inputDone, out, raw)
	}
	for i, want := range [][2]string{{"apply_patch", ""}, {"exec", "functions"}} {
		item := out[i]
		ns, _ := item["namespace"].(string)
		if item["type"] != "custom_tool_call" || item["name"] != want[0] || ns != want[1] || item["input"] != patch ||
			!strings.HasPrefix(item["id"].(string), "ctc_") || item["call_id"] == "" {
			t.Errorf("item %d: %v", i, item)
		}
	}
	chat := string(up.Stats().LastBody)
	msgs := chatMessages(t, up.Stats().LastBody)
	if len(msgs) != 2 || msgs[0].Role != "system" || msgs[0].text() != "You are Codex, a coding agent.\n\n<permissions instructions>workspace-write</permissions instructions>" ||
		strings.Contains(chat, `"developer"`) || strings.Contains(chat, `"custom"`) ||
		!strings.Contains(chat, `{"type":"function","function":{"name":"apply_patch","description":"Use the `+"`apply_patch`"+` tool to edit files.`) ||
		!strings.Contains(chat, `It must match this lark grammar:\nstart: begin_patch`) ||
		!strings.Contains(chat, `"name":"functions__exec"`) || !strings.Contains(chat, `"required":["input"]`) {
		t.Fatalf("chat body %s", chat)
	}

	// Buffered: the same items.
	status, raw = agentPost(t, url, codexOwnBody("", false), append(append([]string(nil), codexHeaders...), calls...)...)
	var resp struct{ Output []map[string]any }
	if err := json.Unmarshal(raw, &resp); status != 200 || err != nil || len(resp.Output) != 2 ||
		resp.Output[0]["type"] != "custom_tool_call" || resp.Output[0]["input"] != patch || resp.Output[1]["namespace"] != "functions" {
		t.Fatalf("status %d: %s", status, raw)
	}

	// The next turn sends the calls back, and their outputs.
	next := `,{"type":"custom_tool_call","status":"completed","id":"ctc_1","call_id":"call_0","name":"apply_patch","input":` + mustJSON(t, patch) + `},` +
		`{"type":"custom_tool_call","status":"completed","id":"ctc_2","call_id":"call_1","name":"exec","namespace":"functions","input":"text(1)"},` +
		`{"type":"custom_tool_call_output","call_id":"call_0","output":"Success. Updated the following files:\nA hello.txt\n"},` +
		`{"type":"custom_tool_call_output","call_id":"call_1","output":[{"type":"input_text","text":"1"}]}`
	if out = responseStream(t, url, codexOwnBody(next, true)); len(out) != 1 || out[0]["type"] != "message" {
		t.Fatalf("output %v", out)
	}
	msgs = chatMessages(t, up.Stats().LastBody)
	if len(msgs) != 5 || len(msgs[2].ToolCalls) != 2 || msgs[2].ToolCalls[0].Function.Name != "apply_patch" ||
		msgs[2].ToolCalls[1].Function.Name != "functions__exec" || msgs[3].ToolCallID != "call_0" || msgs[4].ToolCallID != "call_1" {
		t.Fatalf("chat messages %s", up.Stats().LastBody)
	}
	var args struct{ Input string }
	if err := json.Unmarshal([]byte(msgs[2].ToolCalls[0].Function.Arguments), &args); err != nil || args.Input != patch {
		t.Fatalf("arguments %q: %v", msgs[2].ToolCalls[0].Function.Arguments, err)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
