package providers

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

// FuzzBridgeRequest feeds the request translation any body: it never panics, and a
// body it accepts becomes one JSON object whose spans point where the call's say.
func FuzzBridgeRequest(f *testing.F) {
	f.Add(`{"model":"chat","instructions":"Be brief.","input":"Hi","max_output_tokens":16,"stream":true}`)
	f.Add(`{"model":"chat","input":[{"role":"user","content":[{"type":"input_text","text":"a"},{"type":"input_image","image_url":"https://x/y.png"}]},` +
		`{"type":"message","role":"assistant","content":[{"type":"output_text","text":"b"},{"type":"refusal","refusal":"no"}]},` +
		`{"type":"function_call","call_id":"c","name":"f","arguments":"{}"},{"type":"function_call_output","call_id":"c","output":"r"}],` +
		`"tools":[{"type":"function","name":"f","parameters":{}},{"type":"web_search","user_location":{"type":"approximate","city":"x"}}],` +
		`"tool_choice":{"type":"function","name":"f"},"text":{"format":{"type":"json_schema","name":"n","schema":{}},"verbosity":"low"},` +
		`"reasoning":{"effort":"low"},"prompt_cache_key":"k","top_logprobs":1,"seed":1}`)
	f.Add(`{"model":"chat","input":[{"type":"item_reference","id":"x"}]}`)
	f.Add(`{"model":"chat","input":"x","tools":[{"type":"function","name":"f"},{"type":"function","name":"g"},{"type":"web_search"}],` +
		`"tool_choice":{"type":"allowed_tools","mode":"required","tools":[{"type":"function","name":"g"},{"type":"web_search_preview"}]}}`)
	f.Add(`{"model":"chat","input":"x","previous_response_id":"resp_1"}`)
	f.Add(`{"inp\u0075t":"x" , "metadata" : { "a" : "b" } }`)
	f.Add(codexTurn)
	f.Add(`{"model":"chat","input":[{"type":"function_call","call_id":"c","name":"f","namespace":"n","arguments":"{}"}],` +
		`"tools":[{"type":"namespace","name":"n","tools":[{"type":"function","name":"f"},{"type":"function","name":"g","parameters":null}]}],` +
		`"tool_choice":{"type":"function","name":"f","namespace":"n"}}`)
	// Thinking blocks carried back in a reasoning item, before calls and before a user
	// message; content that decodes to no blocks.
	f.Add(`{"model":"chat","input":[{"role":"user","content":"x"},{"type":"reasoning","encrypted_content":"` +
		base64.StdEncoding.EncodeToString([]byte(`[{"type":"thinking","thinking":"t","signature":"s"},{"type":"redacted_thinking","data":"d"}]`)) +
		`"},{"type":"message","role":"assistant","content":"a"},{"type":"reasoning","encrypted_content":"WyBd"},` +
		`{"type":"function_call","call_id":"c","name":"f","arguments":"{}"},{"type":"function_call_output","call_id":"c","output":"r"}]}`)
	f.Add(codexCustomTurn)
	f.Add(`{"model":"chat","input":[{"type":"additional_tools","role":"developer","tools":[{"type":"namespace","name":"n","tools":[{"type":"custom","name":"c"}]},` +
		`{"type":"custom","name":"p","format":{"type":"grammar","syntax":"regex","definition":"\\d+"}}]},{"role":"developer","content":"d"},{"role":"user","content":"x"},` +
		`{"type":"custom_tool_call","call_id":"c","name":"p","input":"1\"2"},{"type":"custom_tool_call_output","call_id":"c","output":"r"}],` +
		`"tool_choice":{"type":"custom","name":"p"}}`)
	f.Fuzz(func(t *testing.T, body string) {
		var r respRequest
		out, sp, rerr, prev := appendBridgeRequest(nil, []byte(body), &r, []byte(`"m"`), true, true)
		if rerr != nil || prev {
			return
		}
		if !json.Valid(out) || out[0] != '{' {
			t.Fatalf("invalid chat body %s\nfrom %s", out, body)
		}
		if string(out[sp.model[0]:sp.model[1]]) != `"m"` || string(out[sp.streamOptions[0]:sp.streamOptions[1]]) != `{"include_usage":true}` {
			t.Fatalf("spans %+v in %s", sp, out)
		}
		if k := sp.cacheKey; k[1] > k[0] && (out[k[0]-1] != '"' || out[k[1]] != '"') {
			t.Fatalf("cache key span %v in %s", k, out)
		}
		var e bridgeEcho
		e.render(&r)
		h := respHead{model: []byte(`"m"`)}
		newID(&h.id)
		if resp := appendResponse(nil, &h, &e, nil, nil); !json.Valid(resp) {
			t.Fatalf("invalid response object %s", resp)
		}
	})
}

// FuzzBridgeStream feeds the stream translation chat chunks (one a line): every event
// out is one JSON object, numbered in order, and none follows the end.
func FuzzBridgeStream(f *testing.F) {
	f.Add(delta(`{"role":"assistant","content":""}`, "") + "\n" + delta(`{"content":"Hi"}`, "") + "\n" + delta(`{}`, "stop") + "\n" + usageChunk + "\n[DONE]")
	f.Add(delta(`{"reasoning_content":"t"}`, "") + "\n" + delta(`{"tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":"{"}}]}`, "") + "\n" +
		delta(`{"tool_calls":[{"index":0,"function":{"arguments":"}"}}]}`, "") + "\n" + delta(`{"refusal":"r"}`, "length") + "\n[DONE]")
	f.Add(delta(`{"content":"x"}`, "") + "\n" + `{"error":{"message":"m","code":"c"}}` + "\n[DONE]")
	f.Add(delta(`{"thinking_blocks":[{"type":"redacted_thinking","data":"d"}]}`, "") + "\n" + delta(`{"reasoning_content":"t"}`, "") + "\n" +
		delta(`{"thinking_blocks":[{"type":"thinking","thinking":"t","signature":"s"}]}`, "") + "\n" + delta(`{}`, "stop") + "\n" + usageChunk + "\n!cut")
	f.Add(delta(`{"content":"x"}`, "") + "\n" + delta(`{"annotations":[{"type":"url_citation","url_citation":{"url":"u","title":"t"}}]}`, "") + "\n!ping\n!cut")
	// Parallel calls interleaved by index: heads first, then pieces in turn; pieces of
	// three calls in turn, text while they are open, a call resumed after it.
	f.Add(callChunk(0, "a", "f", "") + "\n" + callChunk(1, "b", "g", "") + "\n" + callChunk(0, "", "", `{\"x\":`) + "\n" +
		callChunk(1, "", "", `{}`) + "\n" + callChunk(0, "", "", `1}`) + "\n" + delta(`{}`, "tool_calls") + "\n" + usageChunk + "\n[DONE]")
	f.Add(callChunk(0, "a", "f", `{`) + "\n" + callChunk(1, "b", "f", `[`) + "\n" + callChunk(2, "c", "f", `{}`) + "\n" + callChunk(1, "", "", `]`) + "\n" +
		callChunk(0, "", "", `}`) + "\n" + delta(`{"content":"x"}`, "") + "\n" + callChunk(2, "", "", ` `) + "\n" + delta(`{}`, "length") + "\n[DONE]")
	f.Add(delta(`{"tool_calls":[{"index":1,"id":"b","function":{"name":"g","arguments":""}},{"index":0,"id":"a","function":{"name":"f","arguments":"{}"}}]}`, "") + "\n" +
		delta(`{"tool_calls":[{"index":1,"function":{"arguments":"{}"}},{"id":"c","function":{"name":"h"}}]}`, "") + "\n" + delta(`{}`, "stop") + "\n[DONE]")
	f.Add(callChunk(0, "a", "n__f", `{}`) + "\n" + callChunk(1, "b", "n__g", `{}`) + "\n" + delta(`{}`, "tool_calls") + "\n" + usageChunk + "\n[DONE]")
	// Custom tools' calls, their input cut inside an escape and a surrogate pair.
	f.Add(callChunk(0, "a", "p", `{\"input\":\"a\\`) + "\n" + callChunk(0, "", "", `n\\ud83d`) + "\n" + callChunk(1, "b", "n__c", `{\"in`) + "\n" +
		callChunk(0, "", "", `\\ude00\"}`) + "\n" + callChunk(1, "", "", `put\":\"x\"}`) + "\n" + delta(`{}`, "length") + "\n" + usageChunk + "\n[DONE]")
	// Calls named after their first pieces (a custom tool's, a function's), one never
	// named, and a named one begun while a call before it waits for its name.
	f.Add(delta(`{"tool_calls":[{"index":0,"id":"a","function":{"arguments":"{\"input\":\"a"}}]}`, "") + "\n" + callChunk(1, "b", "n__f", `{`) + "\n" +
		delta(`{"tool_calls":[{"index":0,"function":{"name":"p","arguments":"b\"}"}}]}`, "") + "\n" + callChunk(1, "", "", `}`) + "\n" +
		delta(`{"tool_calls":[{"index":2,"id":"c","function":{"name":"","arguments":"{}"}}]}`, "") + "\n" +
		delta(`{"tool_calls":[{"index":3,"id":"d","function":{"arguments":"{\"in"}}]}`, "") + "\n" +
		delta(`{"tool_calls":[{"index":3,"function":{"name":"n__c","arguments":"put\":\"x\"}"}}]}`, "") + "\n" + delta(`{}`, "tool_calls") + "\n" + usageChunk + "\n[DONE]")
	f.Fuzz(func(t *testing.T, in string) {
		s := bridgeStreamOf(`{"model":"chat","input":"x","text":{ "format" : {"type":"text"} },`+
			`"tools":[{"type":"namespace","name":"n","tools":[{"type":"function","name":"f"},{"type":"custom","name":"c"}]},{"type":"custom","name":"p"}]}`, strings.Split(in, "\n")...)
		defer s.Close()
		seq, done := -1, false
		var items []string
		for range 100000 {
			var ev Event
			if s.Next(&ev) != nil {
				return
			}
			if done {
				t.Fatalf("event after the end: %+v", ev)
			}
			if ev.Done || ev.KeepAlive {
				done = ev.Done
				if len(ev.Data) != 0 {
					t.Fatalf("end or keep-alive with data %s", ev.Data)
				}
				continue
			}
			var e struct {
				Type   string `json:"type"`
				Seq    *int   `json:"sequence_number"`
				ItemID string `json:"item_id"`
				Index  *int   `json:"output_index"`
				Item   struct {
					ID string `json:"id"`
				} `json:"item"`
			}
			if err := json.Unmarshal(ev.Data, &e); err != nil || e.Seq == nil || e.Type != string(ev.Name) || strings.ContainsAny(string(ev.Data), "\r\n") {
				t.Fatalf("bad event %q (%v)", ev.Data, err)
			}
			if *e.Seq != seq+1 {
				t.Fatalf("sequence number %d after %d", *e.Seq, seq)
			}
			seq = *e.Seq
			// Each item added takes the next output_index; events name it by both.
			switch {
			case e.Type == "response.output_item.added":
				if e.Index == nil || *e.Index != len(items) {
					t.Fatalf("item added at output_index %v after %d: %s", e.Index, len(items), ev.Data)
				}
				items = append(items, e.Item.ID)
			case e.Index != nil && (*e.Index >= len(items) || e.ItemID != "" && e.ItemID != items[*e.Index] || e.Item.ID != "" && e.Item.ID != items[*e.Index]):
				t.Fatalf("event names output_index %d, item %s%s; items added %v", *e.Index, e.ItemID, e.Item.ID, items)
			}
		}
	})
}
