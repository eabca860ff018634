package providers

import "testing"

// What a provider says of an answer read whole that came without usage
// (Result.NoUsage, and the size of its generated text, OutputBytes, as a stream's
// events count it): the gateway charges it its prompt's estimate and that text.

func TestScanAnswerNoUsage(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		noUsage    bool
		bytes      int
	}{
		{"chat with usage", `{"choices":[{"index":0,"message":{"role":"assistant","content":"Hello"}}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`, false, 0},
		{"chat without usage", `{"choices":[{"index":0,"message":{"role":"assistant","content":"Hello"}}]}`, true, 5},
		{"usage null", `{"choices":[{"index":0,"message":{"role":"assistant","content":"Hello"}}],"usage":null}`, true, 5},
		{"usage before the choices", `{"usage":null,"choices":[{"index":0,"message":{"content":"Hello"}}]}`, true, 5},
		{"a usage with no believable count is a usage", `{"choices":[{"index":0,"message":{"content":"Hello"}}],"usage":{"prompt_tokens":-1,"completion_tokens":1}}`, false, 0},
		{"a usage with total_tokens alone is a usage", `{"choices":[{"index":0,"message":{"content":"Hello"}}],"usage":{"total_tokens":9}}`, false, 0},
		{"escapes as written, space around colons", `{"choices": [{"index": 0, "message": {"content" : "a\n\u00e9"}}]}`, true, 9},
		{"reasoning under both names counts once, the larger", `{"choices":[{"index":0,"message":{"content":"ab","reasoning_content":"hmm","reasoning":"hmm!"}}]}`, true, 6},
		{"refusal", `{"choices":[{"index":0,"message":{"content":null,"refusal":"No."}}]}`, true, 3},
		{"tool calls' arguments", `{"choices":[{"index":0,"message":{"content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}},{"id":"c2","type":"function","function":{"name":"g","arguments":"{}"}}]}}]}`, true, 11},
		{"content parts", `{"choices":[{"index":0,"message":{"content":[{"type":"text","text":"Hi there"}]}}]}`, true, 8},
		{"logprobs are no text", `{"choices":[{"index":0,"message":{"content":"x"},"logprobs":{"content":[{"token":"x","logprob":-1,"top_logprobs":[]}]}}]}`, true, 1},
		{"several choices", `{"choices":[{"index":0,"message":{"content":"ab"}},{"index":1,"message":{"content":"cde"}}]}`, true, 5},
		{"legacy completion", `{"object":"text_completion","choices":[{"index":0,"text":" world","logprobs":null,"finish_reason":"length"}]}`, true, 6},
		{"Responses API answer", `{"id":"resp_1","object":"response","status":"completed","instructions":"Be brief.","reasoning":{"effort":"low","summary":null},` +
			`"output":[{"type":"reasoning","id":"rs_1","summary":[{"type":"summary_text","text":"abc"}]},` +
			`{"type":"message","id":"m1","role":"assistant","content":[{"type":"output_text","text":"Hello","annotations":[]},{"type":"refusal","refusal":"no"}]},` +
			`{"type":"function_call","call_id":"c","name":"f","arguments":"{}"},{"type":"custom_tool_call","call_id":"d","name":"p","input":"patch"}],` +
			`"text":{"format":{"type":"text"}},"usage":null}`, true, 17},
		{"Responses API answer with usage", `{"id":"resp_1","object":"response","status":"completed","output":[],"usage":{"input_tokens":3,"output_tokens":0,"total_tokens":3}}`, false, 0},
		{"background response, queued", `{"id":"resp_1","object":"response","status":"queued","background":true,"output":[],"usage":null}`, false, 0},
		{"background response, in progress", `{"id":"resp_1","object":"response","status":"in_progress","output":[],"usage":null}`, false, 0},
		{"error object", `{"error":{"message":"upstream failed","code":502}}`, false, 0},
		{"embeddings without usage", `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1]}]}`, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var res Result
			if ok, _ := scanAnswerTo([]byte(tc.body), &res.Usage, &res); !ok {
				t.Fatal("not read as an answer")
			}
			if res.NoUsage != tc.noUsage || res.OutputBytes != tc.bytes {
				t.Errorf("NoUsage %v, OutputBytes %d; want %v, %d", res.NoUsage, res.OutputBytes, tc.noUsage, tc.bytes)
			}
		})
	}
	var res Result
	if ok, _ := scanAnswerTo([]byte(`{"choices":[{"message":{"content":"Hello"}}]`), &res.Usage, &res); ok || res.NoUsage {
		t.Errorf("an answer cut short: ok %v, NoUsage %v; want neither", ok, res.NoUsage)
	}
}

func TestMessageAnswerNoUsage(t *testing.T) {
	const content = `"content":[{"type":"thinking","thinking":"hmm","signature":"c2ln"},{"type":"redacted_thinking","data":"eA=="},` +
		`{"type":"text","text":"Paris","citations":[{"type":"web_search_result_location","cited_text":"Paris is","url":"u","title":"t"}]},` +
		`{"type":"tool_use","id":"t1","name":"f","input":{"city":"Paris","input":{"a":1}}},{"type":"tool_use","id":"t2","name":"g","input" : {}}]`
	// thinking 3, text 5, the inputs whole (an input member inside one counted with it):
	// 32 and 2.
	const size = 3 + 5 + 32 + 2
	for _, tc := range []struct {
		name, body string
		noUsage    bool
		bytes      int
	}{
		{"without usage", `{"id":"msg_1","type":"message","role":"assistant","model":"m",` + content + `,"stop_reason":"tool_use"}`, true, size},
		{"usage null", `{"id":"msg_1","type":"message","role":"assistant","model":"m",` + content + `,"usage":null}`, true, size},
		{"with usage", `{"id":"msg_1","type":"message","role":"assistant","model":"m",` + content + `,"usage":{"input_tokens":3,"output_tokens":9}}`, false, 0},
		{"error", `{"type":"error","error":{"type":"api_error","message":"x"}}`, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var res Result
			var u anthropicUsage
			if ok, _ := scanMessage([]byte(tc.body), &u, &res); !ok {
				t.Fatal("not read as a message")
			}
			if res.NoUsage != tc.noUsage || res.OutputBytes != tc.bytes {
				t.Errorf("scanMessage: NoUsage %v, OutputBytes %d; want %v, %d", res.NoUsage, res.OutputBytes, tc.noUsage, tc.bytes)
			}
			if tc.name == "error" {
				return
			}
			res = Result{}
			if _, ok := appendChatCompletion(nil, []byte(tc.body), 1, &res.Usage, &res); !ok {
				t.Fatal("not translated")
			}
			if res.NoUsage != tc.noUsage || res.OutputBytes != tc.bytes {
				t.Errorf("appendChatCompletion: NoUsage %v, OutputBytes %d; want %v, %d", res.NoUsage, res.OutputBytes, tc.noUsage, tc.bytes)
			}
		})
	}
}
