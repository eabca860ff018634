package providers

import (
	"encoding/json"
	"strings"
	"testing"
)

// Anthropic caches a prompt only where the request marks it (cache_control on a
// block; there is no implicit caching), so the cache prices apply to a Claude backend
// only if the client's marks reach it. They are taken as OpenAI-compatible gateways
// take them: on a content part, on a message (its last block), on a tool.
func TestAnthropicCacheControlForwarded(t *testing.T) {
	const mark = `{"type":"ephemeral"}`
	body := `{"model":"chat","messages":[` +
		`{"role":"system","content":[{"type":"text","text":"You are the support assistant of a large shop.","cache_control":` + mark + `}]},` +
		`{"role":"developer","content":"Answer briefly.","cache_control":{"type":"ephemeral","ttl":"1h"}},` +
		`{"role":"user","content":[{"type":"text","text":"Long catalogue ...","cache_control":` + mark + `},{"type":"text","text":"What is in stock?"}]},` +
		`{"role":"assistant","content":"Let me look.","tool_calls":[{"id":"c1","type":"function","function":{"name":"stock","arguments":"{}"}}]},` +
		`{"role":"tool","tool_call_id":"c1","content":"12 chairs","cache_control":` + mark + `},` +
		`{"role":"user","content":"And tables?","cache_control":` + mark + `}],` +
		`"tools":[{"type":"function","function":{"name":"stock","parameters":{}},"cache_control":` + mark + `}]}`
	out := anthropicRequest(t, body)
	var m struct {
		System   []map[string]json.RawMessage `json:"system"`
		Tools    []map[string]json.RawMessage `json:"tools"`
		Messages []struct {
			Role    string                       `json:"role"`
			Content []map[string]json.RawMessage `json:"content"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range m.System {
		got = append(got, "system:"+string(b["cache_control"]))
	}
	for _, msg := range m.Messages {
		for _, b := range msg.Content {
			var typ string
			_ = json.Unmarshal(b["type"], &typ)
			got = append(got, msg.Role+"/"+typ+":"+string(b["cache_control"]))
		}
	}
	for _, tool := range m.Tools {
		got = append(got, "tool:"+string(tool["cache_control"]))
	}
	want := []string{
		"system:" + mark, `system:{"type":"ephemeral","ttl":"1h"}`,
		"user/text:" + mark, "user/text:",
		"assistant/text:", "assistant/tool_use:",
		"user/tool_result:" + mark, "user/text:" + mark,
		"tool:" + mark,
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("cache marks\n got %q\nwant %q\n%s", got, want, out)
	}
}

// A prefill whose last text carries a mark still loses its trailing whitespace, which
// Anthropic refuses, and keeps its mark.
func TestAnthropicCacheControlOnPrefill(t *testing.T) {
	out := anthropicRequest(t, `{"model":"chat","messages":[{"role":"user","content":"List them"},`+
		`{"role":"assistant","content":[{"type":"text","text":"Here:\n","cache_control":{"type":"ephemeral"}}]}]}`)
	if !strings.Contains(string(out), `{"type":"text","text":"Here:","cache_control":{"type":"ephemeral"}}`) {
		t.Errorf("prefill block: %s", out)
	}
}

// A mark that is not an object is refused before any upstream, naming the field.
func TestAnthropicCacheControlNotAnObject(t *testing.T) {
	for body, param := range map[string]string{
		`{"model":"c","messages":[{"role":"user","content":[{"type":"text","text":"hi","cache_control":"ephemeral"}]}]}`:                                                                            "messages[0].content[0].cache_control",
		`{"model":"c","messages":[{"role":"user","content":"hi","cache_control":true}]}`:                                                                                                            "messages[0].cache_control",
		`{"model":"c","messages":[{"role":"system","content":"be kind","cache_control":1},{"role":"user","content":"hi"}]}`:                                                                         "messages[0].cache_control",
		`{"model":"c","messages":[{"role":"system","content":[{"type":"text","text":"be kind"}],"cache_control":"ephemeral"},{"role":"user","content":"hi"}]}`:                                      "messages[0].cache_control",
		`{"model":"c","messages":[{"role":"system","content":[{"type":"text","text":"be kind","cache_control":{"type":"ephemeral"}}],"cache_control":"ephemeral"},{"role":"user","content":"hi"}]}`: "messages[0].cache_control",
	} {
		_, rerr := appendAnthropicRequest(nil, []byte(body), quoteModel("claude-x"), 1024, claudeModel{}, false)
		if rerr == nil || rerr.param != param {
			t.Errorf("%s: refused %+v, want param %s", body, rerr, param)
		}
	}
}

// README: "cache_control (Anthropic's prompt-cache mark ...) on a content part, a
// message (its last block) or a tool is passed on". A system (or developer) message
// whose content is an array of text parts, marked on the message itself, keeps its
// mark on its last system block: the system prompt is the usual thing to cache.
func TestAnthropicCacheControlOnSystemMessageParts(t *testing.T) {
	for _, role := range []string{"system", "developer"} {
		t.Run(role, func(t *testing.T) {
			m := anthropicFields(t, `{"model":"chat","messages":[
				{"role":"`+role+`","content":[{"type":"text","text":"A long policy."},{"type":"text","text":"More policy."}],"cache_control":{"type":"ephemeral"}},
				{"role":"user","content":"Hi"}]}`)
			var system []map[string]json.RawMessage
			if err := json.Unmarshal(m["system"], &system); err != nil || len(system) != 2 {
				t.Fatalf("system = %s (%v), want two text blocks", m["system"], err)
			}
			if cc := system[1]["cache_control"]; string(cc) != `{"type":"ephemeral"}` {
				t.Errorf("the system message's last block has cache_control %s, want {\"type\":\"ephemeral\"} (the message's mark): system = %s", cc, m["system"])
			}
			if cc, ok := system[0]["cache_control"]; ok {
				t.Errorf("the system message's first block has cache_control %s, want none", cc)
			}
		})
	}
}

// A message's mark goes on its last block only where that block has none of its own:
// the part's mark names the block itself, and a second cache_control member in one
// block would repeat the key. That holds for the system, for a user turn, and for an
// assistant turn whose thinking blocks move in front of the marked text.
func TestAnthropicCacheControlPartMarkWins(t *testing.T) {
	const part, msg = `{"type":"ephemeral","ttl":"1h"}`, `{"type":"ephemeral"}`
	marked := `[{"type":"text","text":"Earlier text."},{"type":"text","text":"Marked text.","cache_control":` + part + `}]`
	for name, body := range map[string]string{
		"system": `{"model":"c","messages":[{"role":"system","content":` + marked + `,"cache_control":` + msg + `},{"role":"user","content":"Hi"}]}`,
		"user":   `{"model":"c","messages":[{"role":"user","content":` + marked + `,"cache_control":` + msg + `}]}`,
		"assistant with thinking": `{"model":"c","reasoning_effort":"low","messages":[{"role":"user","content":"Hi"},` +
			`{"role":"assistant","content":` + marked + `,"cache_control":` + msg + `,` +
			`"thinking_blocks":[{"type":"thinking","thinking":"Greet back.","signature":"c2ln"}]},{"role":"user","content":"Go on"}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			out := string(anthropicRequest(t, body))
			if n := strings.Count(out, `"cache_control"`); n != 1 {
				t.Errorf("%d cache_control members, want the part's one: %s", n, out)
			}
			if !strings.Contains(out, `{"type":"text","text":"Marked text.","cache_control":`+part+`}`) {
				t.Errorf("the marked part lost its own mark: %s", out)
			}
		})
	}
}
