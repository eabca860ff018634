package providers

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/openai/openai-go/v3/responses"
)

// applyPatchGrammar is the head of the lark grammar of Codex CLI's freeform
// apply_patch tool.
const applyPatchGrammar = `start: begin_patch hunk+ end_patch\nbegin_patch: \"*** Begin Patch\" LF\nend_patch: \"*** End Patch\" LF?\n%import common.LF`

// codexCustomTurn is a turn in the shape Codex CLI sends its own models (trimmed, and
// without the tool_search tool the bridge refuses): its freeform apply_patch tool (a
// lark grammar), exec as a custom tool of a namespace (code mode), and a history of
// custom tool calls and their outputs.
const codexCustomTurn = `{"model":"gpt-5.5-codex","instructions":"You are Codex.","input":[` +
	`{"type":"message","role":"developer","content":[{"type":"input_text","text":"<permissions instructions>workspace-write</permissions instructions>"}]},` +
	`{"type":"message","role":"user","content":[{"type":"input_text","text":"Fix the bug"}]},` +
	`{"type":"custom_tool_call","status":"completed","call_id":"call_p","name":"apply_patch","input":"*** Begin Patch\n*** Update File: a.go\n@@\n-x := 1\n+x := \"y\\n\"\n*** End Patch\n"},` +
	`{"type":"custom_tool_call_output","call_id":"call_p","output":"Success. Updated the following files:\nM a.go\n"},` +
	`{"type":"custom_tool_call","call_id":"call_e","name":"exec","namespace":"functions","input":"text(await tools.ls({}))"},` +
	`{"type":"custom_tool_call_output","call_id":"call_e","output":[{"type":"input_text","text":"a.go"}]}],` +
	`"tools":[{"type":"function","name":"shell_command","description":"Runs a shell command.","strict":false,` +
	`"parameters":{"type":"object","properties":{"command":{"type":"string"}},"required":["command"],"additionalProperties":false}},` +
	`{"type":"custom","name":"apply_patch","description":"Use the ` + "`apply_patch`" + ` tool to edit files. This is a FREEFORM tool, so do not wrap the patch in JSON.",` +
	`"format":{"type":"grammar","syntax":"lark","definition":"` + applyPatchGrammar + `"}},` +
	`{"type":"namespace","name":"functions","description":"Code mode.","tools":[{"type":"custom","name":"exec","description":"Runs JavaScript.","format":{"type":"text"}}]}],` +
	`"tool_choice":"auto","parallel_tool_calls":false,"reasoning":{"effort":"medium","summary":"auto"},"store":false,"stream":true,` +
	`"include":["reasoning.encrypted_content"],"prompt_cache_key":"k1"}`

// inputFunction is the parameters of the function a custom tool goes up as, whose
// input is described as desc.
func inputFunction(desc string) string {
	return `{"type":"object","properties":{"input":{"type":"string","description":"` + desc + `"}},"required":["input"],"additionalProperties":false}`
}

const customNote = `This tool takes free-form text, not JSON: give its whole input, as it is, in the string parameter input.`

// A custom tool goes up as a function taking one string parameter, input, which its
// description explains (a grammar as text: chat cannot enforce it), in a namespace
// too; a custom_tool_call item as the call of that function with {"input":...}, its
// output as the tool message. Before, the bridge refused the custom tool (400
// "tools[1].type is not supported"), and every turn Codex sent one of its own models
// failed.
func TestBridgeCustomToolRequest(t *testing.T) {
	got, _, rerr, _ := bridgeChat(codexCustomTurn, true)
	if rerr != nil {
		t.Fatalf("refused: %s: %s", rerr.param, rerr.msg)
	}
	sameJSONText(t, got, `{"model":"chat","messages":[`+
		`{"role":"system","content":"You are Codex.\n\n<permissions instructions>workspace-write</permissions instructions>"},`+
		`{"role":"user","content":"Fix the bug"},`+
		`{"role":"assistant","content":null,"tool_calls":[{"id":"call_p","type":"function","function":{"name":"apply_patch",`+
		`"arguments":"{\"input\":\"*** Begin Patch\\n*** Update File: a.go\\n@@\\n-x := 1\\n+x := \\\"y\\\\n\\\"\\n*** End Patch\\n\"}"}}]},`+
		`{"role":"tool","tool_call_id":"call_p","content":"Success. Updated the following files:\nM a.go\n"},`+
		`{"role":"assistant","content":null,"tool_calls":[{"id":"call_e","type":"function","function":{"name":"functions__exec","arguments":"{\"input\":\"text(await tools.ls({}))\"}"}}]},`+
		`{"role":"tool","tool_call_id":"call_e","content":"a.go"}],`+
		`"tools":[{"type":"function","function":{"name":"shell_command","description":"Runs a shell command.","parameters":{"type":"object","properties":{"command":{"type":"string"}},"required":["command"],"additionalProperties":false},"strict":false}},`+
		`{"type":"function","function":{"name":"apply_patch","description":"Use the `+"`apply_patch`"+` tool to edit files. This is a FREEFORM tool, so do not wrap the patch in JSON.\n\n`+customNote+`",`+
		`"parameters":`+inputFunction(`The tool's whole input, free-form text. It must match this lark grammar:\n`+applyPatchGrammar)+`}},`+
		`{"type":"function","function":{"name":"functions__exec","description":"Runs JavaScript.\n\n`+customNote+`","parameters":`+inputFunction(`The tool's whole input, free-form text.`)+`}}],`+
		`"tool_choice":"auto","parallel_tool_calls":false,"reasoning_effort":"medium","prompt_cache_key":"k1","stream":true,"stream_options":{"include_usage":true}}`)

	// The arguments a custom_tool_call goes up with decode to {"input": its input}.
	var chat struct {
		Messages []struct {
			ToolCalls []struct {
				Function struct{ Arguments string }
			} `json:"tool_calls"`
		}
	}
	if err := json.Unmarshal([]byte(got), &chat); err != nil {
		t.Fatal(err)
	}
	var args struct{ Input string }
	if err := json.Unmarshal([]byte(chat.Messages[2].ToolCalls[0].Function.Arguments), &args); err != nil {
		t.Fatal(err)
	}
	if want := "*** Begin Patch\n*** Update File: a.go\n@@\n-x := 1\n+x := \"y\\n\"\n*** End Patch\n"; args.Input != want {
		t.Errorf("input %q; want %q", args.Input, want)
	}

	for _, c := range []struct{ name, choice, want string }{
		{"forced", `{"type":"custom","name":"apply_patch"}`, `"tool_choice":{"type":"function","function":{"name":"apply_patch"}}`},
		{"forced in a namespace", `{"type":"custom","name":"exec","namespace":"functions"}`, `"tool_choice":{"type":"function","function":{"name":"functions__exec"}}`},
		{"allowed", `{"type":"allowed_tools","mode":"required","tools":[{"type":"custom","name":"apply_patch"}]}`, `"tool_choice":"required"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, _, rerr, _ := bridgeChat(strings.Replace(codexCustomTurn, `"tool_choice":"auto"`, `"tool_choice":`+c.choice, 1), false)
			if rerr != nil {
				t.Fatalf("refused: %s: %s", rerr.param, rerr.msg)
			}
			if !strings.Contains(got, c.want) {
				t.Fatalf("chat body %s", got)
			}
			if c.name == "allowed" && (strings.Contains(got, `"shell_command"`) || !strings.Contains(got, `"name":"apply_patch","description"`)) {
				t.Errorf("allowed_tools sent other tools: %s", got)
			}
		})
	}
}

// An additional_tools item's tools ("made available at this item", the role that
// gives them a developer) go up with the request's: chat has tools for the whole
// request, and the answer, after the whole input, may call them either way. Calls of
// them come back as the tools' own (a namespace's, a custom tool's). Before, the
// bridge refused the item (400 "input[0].type is not supported").
func TestBridgeAdditionalTools(t *testing.T) {
	const req = `{"model":"gpt-6.2-sol","input":[{"type":"additional_tools","role":"developer","tools":[` +
		`{"type":"namespace","name":"functions","description":"Code mode.","tools":[{"type":"custom","name":"exec","format":{"type":"text"}}]},` +
		`{"type":"function","name":"wait","parameters":{"type":"object","properties":{}}}]},` +
		`{"role":"user","content":"List the files"},` +
		`{"type":"additional_tools","tools":[{"type":"custom","name":"apply_patch"}]}],` +
		`"tools":[{"type":"function","name":"shell_command","parameters":{"type":"object"}}],"tool_choice":{"type":"allowed_tools","mode":"auto","tools":[{"type":"function","name":"wait"},{"type":"custom","name":"apply_patch"}]}}`
	got, _, rerr, _ := bridgeChat(strings.Replace(req, `,"tool_choice":{"type":"allowed_tools","mode":"auto","tools":[{"type":"function","name":"wait"},{"type":"custom","name":"apply_patch"}]}`, "", 1), false)
	if rerr != nil {
		t.Fatalf("refused: %s: %s", rerr.param, rerr.msg)
	}
	sameJSONText(t, got, `{"model":"chat","messages":[{"role":"user","content":"List the files"}],"tools":[`+
		`{"type":"function","function":{"name":"shell_command","parameters":{"type":"object"}}},`+
		`{"type":"function","function":{"name":"functions__exec","description":"`+customNote+`","parameters":`+inputFunction(`The tool's whole input, free-form text.`)+`}},`+
		`{"type":"function","function":{"name":"wait","parameters":{"type":"object","properties":{}}}},`+
		`{"type":"function","function":{"name":"apply_patch","description":"`+customNote+`","parameters":`+inputFunction(`The tool's whole input, free-form text.`)+`}}]}`)

	// allowed_tools may name them.
	got, _, rerr, _ = bridgeChat(req, false)
	if rerr != nil {
		t.Fatalf("refused: %s: %s", rerr.param, rerr.msg)
	}
	if !strings.Contains(got, `"tool_choice":"auto"`) || strings.Contains(got, `shell_command`) || strings.Contains(got, `functions__exec`) ||
		!strings.Contains(got, `"name":"wait"`) || !strings.Contains(got, `"name":"apply_patch"`) {
		t.Errorf("chat body %s", got)
	}

	chat := `{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[` +
		`{"id":"call_0","type":"function","function":{"name":"functions__exec","arguments":"{\"input\":\"text(1)\"}"}},` +
		`{"id":"call_1","type":"function","function":{"name":"wait","arguments":"{}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}`
	resp := customAnswerOf(t, req, chat)
	if len(resp.Output) != 2 || resp.Output[0].Type != "custom_tool_call" || resp.Output[0].Name != "exec" || resp.Output[0].Namespace != "functions" ||
		resp.Output[0].Input != "text(1)" || resp.Output[1].Type != "function_call" || resp.Output[1].Name != "wait" {
		t.Errorf("output %s", resp.RawJSON())
	}
}

// translatedRequest reads and translates req as the bridge does before it sends the
// chat call, which the answer's translation reads.
func translatedRequest(t *testing.T, req string) *respRequest {
	t.Helper()
	r := new(respRequest)
	if _, _, rerr, _ := appendBridgeRequest(nil, []byte(req), r, []byte(`"chat"`), false, true); rerr != nil {
		t.Fatalf("refused: %s: %s", rerr.param, rerr.msg)
	}
	return r
}

// customAnswerOf translates a chat completion as the bridge does for the request req.
func customAnswerOf(t *testing.T, req, chat string) responses.Response {
	t.Helper()
	var e bridgeEcho
	e.render(translatedRequest(t, req))
	u := Usage{Input: 9, Output: 4}
	out, ok := appendBridgeAnswer(nil, []byte(chat), &e, []byte(`"backend-model"`), &u)
	if !ok {
		t.Fatalf("not translated: %s", chat)
	}
	var resp responses.Response
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatalf("SDK cannot read %s: %v", out, err)
	}
	return resp
}

// customStreamOf is the bridge's stream over a chat stream of data, for request req.
func customStreamOf(t *testing.T, req string, data ...string) *bridgeStream {
	t.Helper()
	s := acquireBridgeStream()
	s.in = newChunkEvents(data...)
	s.chat = bodyPool.Get().(*[]byte)
	s.echo.render(translatedRequest(t, req))
	s.model = append(s.model[:0], `"backend-model"`...)
	return s
}

// patchInput is an apply_patch input with what a JSON string escapes, characters of
// two, three and four bytes in UTF-8, and a surrogate pair.
const patchInput = "*** Begin Patch\n*** Add File: b.txt\n+h\u00e9llo \"q\" \\ \u20ac\u4e16 \U0001F600\t\U0001F600\n*** End Patch\n"

// chatArguments is the arguments member (a JSON string) of a chat call of a custom
// tool whose input is in: {"input":in} as the model wrote it, surrogate pairs and all.
func chatArguments(in string) string {
	inner, _ := json.Marshal(map[string]string{"input": in})
	// The model wrote the emoji's second occurrence as a surrogate pair.
	s := strings.Replace(string(inner), `\t`+"\U0001F600", `\t\ud83d\ude00`, 1)
	outer, _ := json.Marshal(s)
	return string(outer)
}

// A chat call of a custom tool comes back as a custom_tool_call item whose input is
// the value of its input argument, decoded as the client decodes it; in a namespace
// with it; a function's call still as a function_call; arguments of another shape
// than {"input":"..."} as the input whole.
func TestBridgeCustomToolAnswer(t *testing.T) {
	chat := `{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[` +
		`{"id":"call_0","type":"function","function":{"name":"apply_patch","arguments":` + chatArguments(patchInput) + `}},` +
		`{"id":"call_1","type":"function","function":{"name":"functions__exec","arguments":"{\"input\": \"text(1)\", \"extra\": true}"}},` +
		`{"id":"call_2","type":"function","function":{"name":"shell_command","arguments":"{\"command\":\"ls\"}"}},` +
		`{"id":"call_3","type":"function","function":{"name":"apply_patch","arguments":"{\"patch\":\"x\"}"}},` +
		`{"id":"call_4","type":"function","function":{"name":"apply_patch","arguments":{"input":"as an object"}}}]},` +
		`"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}`
	resp := customAnswerOf(t, codexCustomTurn, chat)
	want := []struct{ typ, name, ns, input string }{
		{"custom_tool_call", "apply_patch", "", patchInput},
		{"custom_tool_call", "exec", "functions", "text(1)"},
		{"function_call", "shell_command", "", ""},
		{"custom_tool_call", "apply_patch", "", `{"patch":"x"}`},
		{"custom_tool_call", "apply_patch", "", "as an object"},
	}
	if len(resp.Output) != len(want) {
		t.Fatalf("output %s", resp.RawJSON())
	}
	for i, w := range want {
		item := resp.Output[i]
		if item.Type != w.typ || item.Name != w.name || item.Namespace != w.ns || item.Input != w.input || item.Status != "completed" {
			t.Errorf("item %d: %s; want %+v", i, item.RawJSON(), w)
		}
		if w.typ == "custom_tool_call" && (!strings.HasPrefix(item.ID, "ctc_") || item.CallID != "call_"+string(rune('0'+i))) {
			t.Errorf("item %d: id %s, call_id %s", i, item.ID, item.CallID)
		}
	}
	if resp.Output[2].Arguments.OfString != `{"command":"ls"}` {
		t.Errorf("function call %s", resp.Output[2].RawJSON())
	}

	// Cut short, the call's item is incomplete, its input what came.
	cut := `{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[` +
		`{"id":"call_0","type":"function","function":{"name":"apply_patch","arguments":"{\"input\":\"*** Begin Patch\\n*** Add Fi"}}]},"finish_reason":"length"}],"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}`
	resp = customAnswerOf(t, codexCustomTurn, cut)
	if resp.Status != "incomplete" || len(resp.Output) != 1 || resp.Output[0].Status != "incomplete" || resp.Output[0].Input != "*** Begin Patch\n*** Add Fi" {
		t.Errorf("cut: %s", resp.RawJSON())
	}
}

// splitArguments splits a chat call's arguments (a JSON string) into pieces of n bytes
// of its decoded text at most, each a JSON string: how a server streams them, token
// by token.
func splitArguments(args string, n int) []string {
	var text string
	_ = json.Unmarshal([]byte(args), &text)
	var out []string
	for len(text) > 0 {
		k := min(n, len(text))
		for k < len(text) && !utf8.RuneStart(text[k]) {
			k++
		}
		piece, _ := json.Marshal(text[:k])
		out = append(out, string(piece))
		text = text[k:]
	}
	return out
}

// A streamed call of a custom tool comes back as a custom_tool_call item whose input
// streams as response.custom_tool_call_input.delta events, each a piece of the input
// decodable alone (a piece ending in an escape or a surrogate pair waits for its
// end), then .done with the whole input, which the item done and the completed
// response hold too.
func TestBridgeCustomToolStream(t *testing.T) {
	for _, size := range []int{1, 2, 3, 5, 7, 64} {
		data := []string{delta(`{"role":"assistant","content":""}`, ""),
			delta(`{"tool_calls":[{"index":0,"id":"call_0","type":"function","function":{"name":"apply_patch","arguments":""}}]}`, "")}
		for _, p := range splitArguments(chatArguments(patchInput), size) {
			data = append(data, delta(`{"tool_calls":[{"index":0,"function":{"arguments":`+p+`}}]}`, ""))
		}
		data = append(data,
			delta(`{"tool_calls":[{"index":1,"id":"call_1","type":"function","function":{"name":"functions__exec","arguments":"{\"input\":\"text(1)\"}"}}]}`, ""),
			delta(`{"tool_calls":[{"index":2,"id":"call_2","type":"function","function":{"name":"apply_patch","arguments":"[1,"}}]}`, ""),
			delta(`{"tool_calls":[{"index":2,"function":{"arguments":"2]"}}]}`, ""),
			delta(`{"tool_calls":[{"index":3,"id":"call_3","type":"function","function":{"name":"shell_command","arguments":"{}"}}]}`, ""),
			delta(`{}`, "tool_calls"), usageChunk, "[DONE]")
		s := customStreamOf(t, codexCustomTurn, data...)
		got := readBridged(s)
		_ = s.Close()
		if got.err != nil {
			t.Fatal(got.err)
		}
		evs := checkEvents(t, got.events)
		wantInput := []string{patchInput, "text(1)", "[1,2]"}
		joined := make([]string, 3)
		done := 0
		for _, ev := range evs {
			switch ev.Type {
			case "response.custom_tool_call_input.delta":
				if !utf8.ValidString(ev.Delta) || strings.ContainsRune(ev.Delta, utf8.RuneError) {
					t.Errorf("size %d: delta %q is no text by itself", size, ev.Delta)
				}
				joined[ev.OutputIndex] += ev.Delta
			case "response.custom_tool_call_input.done":
				if ev.Input != wantInput[ev.OutputIndex] || joined[ev.OutputIndex] != ev.Input {
					t.Errorf("size %d: done %q, deltas %q; want %q", size, ev.Input, joined[ev.OutputIndex], wantInput[ev.OutputIndex])
				}
				done++
			case "response.function_call_arguments.delta", "response.function_call_arguments.done":
				if ev.OutputIndex != 3 {
					t.Errorf("size %d: %s", size, ev.RawJSON())
				}
			case "response.output_item.added", "response.output_item.done":
				item := ev.Item
				switch {
				case ev.OutputIndex == 3:
					if item.Type != "function_call" || item.Name != "shell_command" {
						t.Errorf("size %d: %s", size, ev.RawJSON())
					}
				case item.Type != "custom_tool_call" || !strings.HasPrefix(item.ID, "ctc_"):
					t.Errorf("size %d: %s", size, ev.RawJSON())
				case ev.Type == "response.output_item.added" && item.Input != "":
					t.Errorf("size %d: added with input: %s", size, ev.RawJSON())
				case ev.Type == "response.output_item.done" && item.Input != wantInput[ev.OutputIndex]:
					t.Errorf("size %d: done %s", size, ev.RawJSON())
				}
			case "response.completed":
				out := ev.Response.Output
				if len(out) != 4 || out[0].Input != wantInput[0] || out[1].Namespace != "functions" || out[1].Name != "exec" || out[2].Input != "[1,2]" {
					t.Errorf("size %d: completed %s", size, ev.RawJSON())
				}
			}
		}
		if done != 3 {
			t.Errorf("size %d: %d input.done events: %s", size, done, types(evs))
		}
	}
}

// inputPieces feeds the pieces of a call's arguments (their decoded text) to an
// inputScan, and returns the pieces of the input it gives, and whether the arguments
// were {"input":"..."}.
func inputPieces(pieces []string) (out []string, found bool) {
	var s inputScan
	var buf []byte
	for i, p := range pieces {
		at := len(buf)
		buf = s.feed(buf, []byte(p))
		if i == len(pieces)-1 {
			buf = s.finish(buf)
		}
		if len(buf) > at {
			out = append(out, string(buf[at:]))
		}
	}
	return out, s.found()
}

// The input a model writes in its arguments comes out in pieces, cut anywhere, that a
// JSON decoder reads each alone, and that join into the input; what is no JSON (a raw
// control character, a backslash before no escape, a \u without its digits) comes
// out escaped, as its text.
func TestInputScan(t *testing.T) {
	for _, c := range []struct{ name, args, want string }{
		{"plain", `{"input":"*** Begin Patch"}`, "*** Begin Patch"},
		{"spaces and members after", " {\n \"input\" :\t\"x\" , \"more\": 1}", "x"},
		{"escapes", `{"input":"a\"b\\c\/d\n\t\u00e9\u20AC"}`, "a\"b\\c/d\n\t\u00e9\u20ac"},
		{"surrogate pair", `{"input":"\ud83d\ude00!"}`, "\U0001F600!"},
		{"high surrogate alone", `{"input":"\ud83dx\ud83d"}`, "\ufffdx\ufffd"},
		{"high surrogate, another escape", `{"input":"\ud83d\n"}`, "\ufffd\n"},
		{"UTF-8", "{\"input\":\"h\u00e9 \u4e16 \U0001F600\"}", "h\u00e9 \u4e16 \U0001F600"},
		{"raw control characters", "{\"input\":\"a\nb\x01\"}", "a\nb\x01"},
		{"backslash before no escape", `{"input":"C:\dir\x"}`, `C:\dir\x`},
		{"\\u without its digits", `{"input":"\u00zz\ud83d\u12"}`, `\u00zz` + "\ufffd" + `\u12`},
		{"empty", `{"input":""}`, ""},
		{"cut in the string", `{"input":"abc\u00`, "abc"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for i := 0; i <= len(c.args); i++ {
				for j := i; j <= len(c.args); j++ {
					pieces, found := inputPieces([]string{c.args[:i], c.args[i:j], c.args[j:]})
					if !found {
						t.Fatalf("cut at %d, %d: not found", i, j)
					}
					var joined string
					for _, p := range pieces {
						var text string
						if err := json.Unmarshal([]byte(`"`+p+`"`), &text); err != nil {
							t.Fatalf("cut at %d, %d: piece %q: %v", i, j, p, err)
						}
						if c.name != "high surrogate alone" && c.name != "high surrogate, another escape" && c.name != "\\u without its digits" &&
							strings.ContainsRune(text, utf8.RuneError) {
							t.Fatalf("cut at %d, %d: piece %q decodes to %q", i, j, p, text)
						}
						joined += text
					}
					if joined != c.want {
						t.Fatalf("cut at %d, %d: %q; want %q", i, j, joined, c.want)
					}
				}
			}
		})
	}
	for _, args := range []string{`{"patch":"x"}`, `{"inputs":"x"}`, `{"input":5}`, `["input"]`, `{"inpu\u0074":"x"}`, `{}`, ``, `{"input":`} {
		if pieces, found := inputPieces([]string{args}); found || len(pieces) > 0 {
			t.Errorf("%s: found %v, pieces %q", args, found, pieces)
		}
	}
}

// What a custom tool needs that chat cannot give is refused, naming it.
func TestBridgeCustomToolRefusals(t *testing.T) {
	for _, c := range []struct{ name, from, to, param, msg string }{
		{"format of another type", `"format":{"type":"text"}`, `"format":{"type":"regex"}`, "tools[2].tools[0].format", "must be"},
		{"grammar without a definition", `"syntax":"lark","definition"`, `"syntax":"lark","grammar"`, "tools[1].format", "must be"},
		{"grammar of another syntax", `"syntax":"lark"`, `"syntax":"peg"`, "tools[1].format", "must be"},
		{"custom tool without a name", `{"type":"custom","name":"apply_patch",`, `{"type":"custom",`, "tools[1].name", "must be a string"},
		{"custom_tool_call without input", `"name":"exec","namespace":"functions","input":"text(await tools.ls({}))"`, `"name":"exec","namespace":"functions"`, "input[4].input", "must be a string"},
		{"custom_tool_call_output without output", `{"type":"custom_tool_call_output","call_id":"call_p","output":"Success. Updated the following files:\nM a.go\n"}`,
			`{"type":"custom_tool_call_output","call_id":"call_p"}`, "input[3].output", "is required"},
		{"tool_search", `{"type":"namespace","name":"functions"`, `{"type":"tool_search","execution":"client"},{"type":"namespace","name":"functions"`, "tools[2].type", "no tool search"},
		{"tool_search_call item", `{"type":"message","role":"user"`, `{"type":"tool_search_call","call_id":"ts_1","arguments":{"query":"x"}},{"type":"message","role":"user"`, "input[1].type", "is not supported"},
		{"additional_tools of another role", `"input":[`, `"input":[{"type":"additional_tools","role":"user","tools":[]},`, "input[0].role", "must be developer"},
		{"additional_tools without tools", `"input":[`, `"input":[{"type":"additional_tools","role":"developer"},`, "input[0].tools", "must be a list"},
		{"web search in additional_tools", `"input":[`, `"input":[{"type":"additional_tools","tools":[{"type":"web_search"}]},`, "input[0].tools[0].type", "send the web search tool in tools"},
		{"a built-in tool in additional_tools", `"input":[`, `"input":[{"type":"additional_tools","tools":[{"type":"custom","name":"a"},{"type":"local_shell"}]},`, "input[0].tools[1].type", "is not supported"},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := strings.Replace(codexCustomTurn, c.from, c.to, 1)
			if in == codexCustomTurn {
				t.Fatal("the case changes nothing")
			}
			_, _, rerr, _ := bridgeChat(in, false)
			if rerr == nil {
				t.Fatal("not refused")
			}
			if rerr.param != c.param || !strings.Contains(rerr.msg, c.msg) {
				t.Errorf("refused %q: %q; want %q, %q", rerr.param, rerr.msg, c.param, c.msg)
			}
		})
	}
}

// FuzzInputScan checks that where the arguments are cut into pieces changes nothing
// of what the scan gives (the pieces join into what it gives the whole), and that
// each piece is a JSON string's inside.
func FuzzInputScan(f *testing.F) {
	for _, s := range []string{`{"input":"a\nb\"c"}`, `{"input":"\ud83d\ude00\ud83d\n"}`, "{\"input\":\"h\u00e9\U0001F600\"}",
		`{"input":"\x\u12"}`, "{\"input\":\"a\x01\"}", `{"x":1}`, ` { "input" : "" , "y": 2 }`} {
		f.Add(s, uint8(3), uint8(9))
	}
	f.Fuzz(func(t *testing.T, args string, a, b uint8) {
		whole, found := inputPieces([]string{args})
		i := int(a) % (len(args) + 1)
		j := i + int(b)%(len(args)-i+1)
		pieces, cutFound := inputPieces([]string{args[:i], args[i:j], args[j:]})
		if found != cutFound || strings.Join(pieces, "") != strings.Join(whole, "") {
			t.Fatalf("cut at %d, %d: %q (found %v); whole %q (found %v)", i, j, pieces, cutFound, whole, found)
		}
		for _, p := range pieces {
			if !json.Valid([]byte(`"` + p + `"`)) {
				t.Fatalf("piece %q is no JSON string's inside", p)
			}
		}
	})
}

// A server that names a call after its first arguments (the head's name empty): the
// call's item is added when the name comes, the custom tool's call, and its input
// deltas, the held piece's included, join into the input whole.
func TestBridgeCustomToolNamedLate(t *testing.T) {
	s := customStreamOf(t, codexCustomTurn, delta(`{"role":"assistant","content":""}`, ""),
		delta(`{"tool_calls":[{"index":0,"id":"call_0","type":"function","function":{"name":"","arguments":"{\"input\":\"ab"}}]}`, ""),
		delta(`{"tool_calls":[{"index":0,"function":{"name":"apply_patch","arguments":"c\"}"}}]}`, ""),
		delta(`{}`, "tool_calls"), usageChunk, "[DONE]")
	got := readBridged(s)
	_ = s.Close()
	if got.err != nil {
		t.Fatal(got.err)
	}
	evs := checkEvents(t, got.events)
	if want := "created in_progress output_item.added custom_tool_call_input.delta custom_tool_call_input.delta custom_tool_call_input.done output_item.done completed"; types(evs) != want {
		t.Fatalf("events %s; want %s", types(evs), want)
	}
	if added := evs[2].Item; added.Type != "custom_tool_call" || !strings.HasPrefix(added.ID, "ctc_") || added.Name != "apply_patch" {
		t.Errorf("added %s", evs[2].RawJSON())
	}
	if d := evs[3].Delta + evs[4].Delta; d != "abc" {
		t.Errorf("deltas join into %q", d)
	}
	last := evs[len(evs)-1]
	if out := last.Response.Output; len(out) != 1 || out[0].Type != "custom_tool_call" || out[0].Name != "apply_patch" || out[0].Input != "abc" {
		t.Fatalf("%s: %s", types(evs), last.RawJSON())
	}
}
