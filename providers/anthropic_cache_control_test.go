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
		`{"model":"c","messages":[{"role":"user","content":[{"type":"text","text":"hi","cache_control":"ephemeral"}]}]}`:    "messages[0].content[0].cache_control",
		`{"model":"c","messages":[{"role":"user","content":"hi","cache_control":true}]}`:                                    "messages[0].cache_control",
		`{"model":"c","messages":[{"role":"system","content":"be kind","cache_control":1},{"role":"user","content":"hi"}]}`: "messages[0].cache_control",
	} {
		_, rerr := appendAnthropicRequest(nil, []byte(body), quoteModel("claude-x"), 1024, claudeModel{}, false)
		if rerr == nil || rerr.param != param {
			t.Errorf("%s: refused %+v, want param %s", body, rerr, param)
		}
	}
}
