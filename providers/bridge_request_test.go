package providers

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// bridgeChat translates a Responses API body as the bridge does for a backend whose
// streams take stream_options.
func bridgeChat(body string, stream bool) (string, bridgeSpans, *requestError, bool) {
	var r respRequest
	out, sp, rerr, prev := appendBridgeRequest(nil, []byte(body), &r, []byte(`"chat"`), stream, true)
	return string(out), sp, rerr, prev
}

func sameJSONText(t *testing.T, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want is not JSON: %v\n%s", err, want)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// Each Responses API request goes up as the chat completions request that asks the
// same.
func TestBridgeRequest(t *testing.T) {
	cases := []struct {
		name, in, want string
		stream         bool
	}{
		{"string input with instructions",
			`{"model":"chat","instructions":"Be brief.","input":"Hi","max_output_tokens":16}`,
			`{"model":"chat","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}],"max_tokens":16}`, false},
		{"stream asks for usage",
			`{"model":"chat","input":"Hi","stream":true,"stream_options":{"include_obfuscation":false}}`,
			`{"model":"chat","messages":[{"role":"user","content":"Hi"}],"stream":true,"stream_options":{"include_usage":true}}`, true},
		{"messages with and without type, parts",
			`{"model":"chat","input":[{"role":"developer","content":"Rules."},` +
				`{"type":"message","role":"user","content":[{"type":"input_text","text":"Look"},{"type":"input_image","image_url":"https://x/y.png","detail":"low"}]},` +
				`{"type":"message","role":"assistant","id":"msg_1","status":"completed","content":[{"type":"output_text","text":"A cat.","annotations":[]}]},` +
				`{"role":"user","content":[{"type":"input_text","text":"More"}]}]}`,
			`{"model":"chat","messages":[{"role":"system","content":"Rules."},` +
				`{"role":"user","content":[{"type":"text","text":"Look"},{"type":"image_url","image_url":{"url":"https://x/y.png","detail":"low"}}]},` +
				`{"role":"assistant","content":"A cat."},{"role":"user","content":"More"}]}`, false},
		{"image by file_id, file, audio",
			`{"model":"chat","input":[{"role":"user","content":[{"type":"input_image","file_id":"file-1"},{"type":"input_file","file_data":"data:application/pdf;base64,AAA","filename":"a.pdf"},{"type":"input_audio","input_audio":{"data":"AAA","format":"wav"}}]}]}`,
			`{"model":"chat","messages":[{"role":"user","content":[{"type":"file","file":{"file_id":"file-1"}},{"type":"file","file":{"file_data":"data:application/pdf;base64,AAA","filename":"a.pdf"}},{"type":"input_audio","input_audio":{"data":"AAA","format":"wav"}}]}]}`, false},
		{"tool loop: message and calls merge, outputs become tool messages, reasoning dropped",
			`{"model":"chat","input":[{"role":"user","content":"Weather?"},{"type":"reasoning","id":"rs_1","summary":[]},` +
				`{"type":"message","role":"assistant","content":[{"type":"output_text","text":"Checking."}]},` +
				`{"type":"function_call","call_id":"c1","name":"get_weather","arguments":"{\"city\":\"Paris\"}"},` +
				`{"type":"function_call","call_id":"c2","name":"get_time","arguments":"{}"},` +
				`{"type":"function_call_output","call_id":"c1","output":"18C"},` +
				`{"type":"function_call_output","call_id":"c2","output":[{"type":"input_text","text":"noon"}]}]}`,
			`{"model":"chat","messages":[{"role":"user","content":"Weather?"},` +
				`{"role":"assistant","content":"Checking.","tool_calls":[{"id":"c1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},{"id":"c2","type":"function","function":{"name":"get_time","arguments":"{}"}}]},` +
				`{"role":"tool","tool_call_id":"c1","content":"18C"},{"role":"tool","tool_call_id":"c2","content":"noon"}]}`, false},
		{"a call with no message before it",
			`{"model":"chat","input":[{"role":"user","content":"x"},{"type":"function_call","call_id":"c1","name":"f","arguments":"{}"},{"type":"function_call_output","call_id":"c1","output":"y"}]}`,
			`{"model":"chat","messages":[{"role":"user","content":"x"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"y"}]}`, false},
		{"assistant refusal",
			`{"model":"chat","input":[{"role":"user","content":"x"},{"role":"assistant","content":[{"type":"refusal","refusal":"No."}]},{"role":"user","content":"why"}]}`,
			`{"model":"chat","messages":[{"role":"user","content":"x"},{"role":"assistant","content":null,"refusal":"No."},{"role":"user","content":"why"}]}`, false},
		{"tools, choice, web search, parallel",
			`{"model":"chat","input":"x","tools":[{"type":"function","name":"f","description":"d","parameters":{"type":"object"},"strict":true},` +
				`{"type":"web_search_preview","search_context_size":"low","user_location":{"type":"approximate","country":"GB","city":null}}],` +
				`"tool_choice":{"type":"function","name":"f"},"parallel_tool_calls":false}`,
			`{"model":"chat","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","description":"d","parameters":{"type":"object"},"strict":true}}],` +
				`"tool_choice":{"type":"function","function":{"name":"f"}},"web_search_options":{"search_context_size":"low","user_location":{"type":"approximate","approximate":{"country":"GB"}}},"parallel_tool_calls":false}`, false},
		{"json_schema, verbosity, effort",
			`{"model":"chat","input":"x","text":{"format":{"type":"json_schema","name":"w","schema":{"type":"object"},"strict":true},"verbosity":"low"},"reasoning":{"effort":"high","summary":"auto"}}`,
			`{"model":"chat","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"w","schema":{"type":"object"},"strict":true}},"verbosity":"low","reasoning_effort":"high"}`, false},
		{"json_object; text format is chat's default",
			`{"model":"chat","input":"x","text":{"format":{"type":"json_object"}}}`,
			`{"model":"chat","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}}`, false},
		{"text format text",
			`{"model":"chat","input":"x","text":{"format":{"type":"text"}},"tool_choice":"required"}`,
			`{"model":"chat","messages":[{"role":"user","content":"x"}],"tool_choice":"required"}`, false},
		{"copied, passed, dropped",
			`{"model":"chat","input":"x","temperature":0.2,"top_p":0.9,"user":"u","safety_identifier":"s","metadata":{"k":"v"},"service_tier":"flex",` +
				`"prompt_cache_key":"pk","top_logprobs":2,"store":true,"include":["reasoning.encrypted_content"],"truncation":"auto","background":false,` +
				`"max_tool_calls":3,"seed":7,"stop":["x"],"n":3,"messages":[],"max_tokens":5,"previous_response_id":null}`,
			`{"model":"chat","messages":[{"role":"user","content":"x"}],"temperature":0.2,"top_p":0.9,"user":"u","safety_identifier":"s",` +
				`"service_tier":"flex","prompt_cache_key":"pk","top_logprobs":2,"logprobs":true,"seed":7,"stop":["x"]}`, false},
		{"escaped keys",
			`{"model":"chat","inp\u0075t":"x","max_output_t\u006fkens":3}`,
			`{"model":"chat","messages":[{"role":"user","content":"x"}],"max_tokens":3}`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, _, rerr, prev := bridgeChat(c.in, c.stream)
			if rerr != nil || prev {
				t.Fatalf("refused: %+v %v", rerr, prev)
			}
			sameJSONText(t, got, c.want)
		})
	}
}

// The spans the bridge hands the chat call point at the model, the stream_options it
// wrote and the prompt_cache_key string.
func TestBridgeRequestSpans(t *testing.T) {
	got, sp, _, _ := bridgeChat(`{"model":"chat","input":"x","prompt_cache_key":"grp-1","stream":true}`, true)
	if s := got[sp.model[0]:sp.model[1]]; s != `"chat"` {
		t.Errorf("model span %q", s)
	}
	if s := got[sp.streamOptions[0]:sp.streamOptions[1]]; s != `{"include_usage":true}` {
		t.Errorf("stream_options span %q", s)
	}
	if s := got[sp.cacheKey[0]:sp.cacheKey[1]]; s != "grp-1" {
		t.Errorf("cache key span %q", s)
	}
	var r respRequest
	out, sp, _, _ := appendBridgeRequest(nil, []byte(`{"model":"chat","input":"x","stream":true}`), &r, []byte(`"m"`), true, false)
	if strings.Contains(string(out), "stream_options") || sp.streamOptions != [2]int{-1, -1} {
		t.Errorf("stream_usage off: %s %v", out, sp.streamOptions)
	}
}

// What chat cannot express is refused 400 naming the parameter, before anything goes
// up; previous_response_id is the backend's lack, not the request's fault.
func TestBridgeRequestRefusals(t *testing.T) {
	cases := []struct{ name, in, param string }{
		{"not JSON", `{"model":`, ""},
		{"no input", `{"model":"chat","instructions":"x"}`, "input"},
		{"empty input", `{"model":"chat","input":[]}`, "input"},
		{"background", `{"model":"chat","input":"x","background":true}`, "background"},
		{"conversation", `{"model":"chat","input":"x","conversation":"conv_1"}`, "conversation"},
		{"stored prompt", `{"model":"chat","input":"x","prompt":{"id":"pmpt_1"}}`, "prompt"},
		{"instructions not a string", `{"model":"chat","input":"x","instructions":[]}`, "instructions"},
		{"item reference", `{"model":"chat","input":[{"role":"user","content":"x"},{"type":"item_reference","id":"msg_1"}]}`, "input[1].type"},
		{"built-in tool call", `{"model":"chat","input":[{"type":"web_search_call","id":"ws_1","status":"completed"}]}`, "input[0].type"},
		{"role", `{"model":"chat","input":[{"role":"tool","content":"x"}]}`, "input[0].role"},
		{"no content", `{"model":"chat","input":[{"role":"user"}]}`, "input[0].content"},
		{"part type", `{"model":"chat","input":[{"role":"user","content":[{"type":"input_video","url":"x"}]}]}`, "input[0].content[0].type"},
		{"image in assistant", `{"model":"chat","input":[{"role":"assistant","content":[{"type":"input_image","image_url":"x"}]}]}`, "input[0].content[0].type"},
		{"image without url", `{"model":"chat","input":[{"role":"user","content":[{"type":"input_text","text":"a"},{"type":"input_image","detail":"low"}]}]}`, "input[0].content[1].image_url"},
		{"file by url", `{"model":"chat","input":[{"role":"user","content":[{"type":"input_text","text":"a"},{"type":"input_file","file_url":"https://x/a.pdf"}]}]}`, "input[0].content[1].file_url"},
		{"call without call_id", `{"model":"chat","input":[{"type":"function_call","name":"f","arguments":"{}"}]}`, "input[0].call_id"},
		{"output without output", `{"model":"chat","input":[{"type":"function_call_output","call_id":"c"}]}`, "input[0].output"},
		{"built-in tool", `{"model":"chat","input":"x","tools":[{"type":"function","name":"f"},{"type":"file_search","vector_store_ids":["vs"]}]}`, "tools[1].type"},
		{"function without name", `{"model":"chat","input":"x","tools":[{"type":"function"}]}`, "tools[0].name"},
		{"two web searches", `{"model":"chat","input":"x","tools":[{"type":"web_search"},{"type":"web_search_preview"}]}`, "tools"},
		{"web search filters", `{"model":"chat","input":"x","tools":[{"type":"web_search","filters":{"allowed_domains":["x.org"]}}]}`, "tools[0].filters"},
		{"tool choice of a built-in tool", `{"model":"chat","input":"x","tool_choice":{"type":"web_search_preview"}}`, "tool_choice"},
		{"tool choice mode", `{"model":"chat","input":"x","tool_choice":"any"}`, "tool_choice"},
		{"format type", `{"model":"chat","input":"x","text":{"format":{"type":"grammar"}}}`, "text.format.type"},
		{"schema without name", `{"model":"chat","input":"x","text":{"format":{"type":"json_schema","schema":{}}}}`, "text.format.name"},
		{"reasoning not an object", `{"model":"chat","input":"x","reasoning":"high"}`, "reasoning"},
		{"max_output_tokens", `{"model":"chat","input":"x","max_output_tokens":0}`, "max_output_tokens"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, rerr, prev := bridgeChat(c.in, false)
			if prev || rerr == nil {
				t.Fatalf("accepted (prev %v)", prev)
			}
			if rerr.param != c.param {
				t.Fatalf("param %q, want %q (%s)", rerr.param, c.param, rerr.msg)
			}
			if rerr.msg == "" {
				t.Fatal("no message")
			}
		})
	}
	if _, _, rerr, prev := bridgeChat(`{"model":"chat","input":"x","previous_response_id":"resp_1","background":true}`, false); !prev || rerr != nil {
		t.Fatalf("previous_response_id: prev %v, %+v", prev, rerr)
	}
}
