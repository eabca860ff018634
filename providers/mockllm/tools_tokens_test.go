package mockllm

import (
	"encoding/json"
	"testing"
)

// A request's tools count in its prompt, as vLLM's chat template renders them and as
// Anthropic counts them in input_tokens; the blanks between JSON tokens do not, the
// text inside strings does.
func TestToolsBytes(t *testing.T) {
	for _, c := range []struct {
		raw  string
		want int
	}{
		{``, 0},
		{`null`, 0},
		{`[]`, 0},
		{` [ ] `, 0},
		{`{"type":"function"}`, 0},
		{`[{"a":"b c"}]`, 13},
		{"[ {\n\t\"a\" : \"b c\" } ]", 13},
		{`[{"a":"q\" x"}]`, 15},
	} {
		var st state
		if got := st.toolsBytes([]byte(c.raw)); got != c.want {
			t.Errorf("toolsBytes(%q) = %d, want %d", c.raw, got, c.want)
		}
	}
}

func TestToolsCountInPrompt(t *testing.T) {
	h := start(t, Options{})
	const msgs = `[{"role":"user","content":"What is the weather in Paris?"}]`
	const chatTools = `[{"type":"function","function":{"name":"get_weather","description":"Weather now in a city.","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}]`
	const msgTools = `[{"name":"get_weather","description":"Weather now in a city.","input_schema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}]`
	chat := func(body string) int {
		_, b := h.must("POST", "/v1/chat/completions", body)
		return decode[chatResp](t, b).Usage.PromptTokens
	}
	messages := func(path, body string) int {
		_, b := h.must("POST", path, body)
		var r struct {
			InputTokens int `json:"input_tokens"`
			Usage       struct {
				InputTokens int `json:"input_tokens"`
			} `json:"usage"`
		}
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("%s: %v: %s", path, err, b)
		}
		return r.InputTokens + r.Usage.InputTokens
	}
	bare := chat(`{"model":"mock-1","max_tokens":1,"messages":` + msgs + `}`)
	withTools := chat(`{"model":"mock-1","max_tokens":1,"messages":` + msgs + `,"tools":` + chatTools + `}`)
	if n := len("What is the weather in Paris?"); bare != promptTokens(n) || withTools != promptTokens(n+len(chatTools)) {
		t.Errorf("chat: %d prompt tokens with tools, %d without: want the tools' %d bytes counted", withTools, bare, len(chatTools))
	}
	const mb = `{"model":"mock-1","max_tokens":1,"messages":` + msgs
	mBare, mTools := messages("/v1/messages", mb+`}`), messages("/v1/messages", mb+`,"tools":`+msgTools+`}`)
	if mTools <= mBare {
		t.Errorf("messages: %d input tokens with tools, %d without: the tools should count", mTools, mBare)
	}
	const cb = `{"model":"mock-1","messages":` + msgs
	if c := messages("/v1/messages/count_tokens", cb+`,"tools":`+msgTools+`}`); c != mTools {
		t.Errorf("count_tokens with tools: %d, want the call's %d", c, mTools)
	}
}
