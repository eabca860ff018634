package mockllm

import (
	"encoding/json"
	"strings"
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

	// The Responses API's tools (function tools written flat, a built-in tool as
	// its type) count as chat's do, its input and instructions beside them; a
	// follow-up's conversation carries its inputs and outputs, not the tools sent
	// with it.
	const respTools = `[{"type":"function","name":"get_weather","description":"Weather now in a city.","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}},{"type":"web_search_preview"}]`
	const spacedTools = "[ {\"type\": \"function\", \"name\": \"get_weather\", \"description\": \"Weather now in a city.\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}, {\"type\": \"web_search_preview\"} ]"
	const rb = `{"model":"mock-1","max_output_tokens":1,"instructions":"Be brief.","input":"What is the weather in Paris?"`
	n := len("Be brief.") + len("What is the weather in Paris?")
	for _, c := range []struct {
		name, body string
		want       int
	}{
		{"no tools", rb + `}`, promptTokens(n)},
		{"tools", rb + `,"tools":` + respTools + `}`, promptTokens(n + len(respTools))},
		{"tools spaced", rb + `,"tools":` + spacedTools + `}`, promptTokens(n + len(respTools))},
		{"tools null", rb + `,"tools":null}`, promptTokens(n)},
		{"tools empty", rb + `,"tools":[]}`, promptTokens(n)},
		{"streamed", rb + `,"stream":true,"tools":` + respTools + `}`, promptTokens(n + len(respTools))},
	} {
		if got := responsesInput(t, h, c.body); got != c.want {
			t.Errorf("responses, %s: %d input tokens, want %d", c.name, got, c.want)
		}
	}
	// A follow-up sends its tools again: they count in its own turn, not in the
	// conversation it continues.
	_, b := h.must("POST", "/v1/responses", rb+`,"store":true,"tools":`+respTools+`}`)
	var first struct {
		ID    string `json:"id"`
		Usage struct {
			InputTokens  int `json:"input_tokens"`
			OutputTokens int `json:"output_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(b, &first); err != nil || first.ID == "" {
		t.Fatalf("responses: %v: %s", err, b)
	}
	const next = "And in Rome?"
	conv := promptTokens(len("What is the weather in Paris?")) + first.Usage.OutputTokens
	followUp := `{"model":"mock-1","max_output_tokens":1,"previous_response_id":"` + first.ID + `","input":"` + next + `"`
	if got, want := responsesInput(t, h, followUp+`,"tools":`+respTools+`}`), conv+promptTokens(len(next)+len(respTools)); got != want {
		t.Errorf("responses follow-up with tools: %d input tokens, want %d (the conversation's %d and its turn's)", got, want, conv)
	}
	if got, want := responsesInput(t, h, followUp+`}`), conv+promptTokens(len(next)); got != want {
		t.Errorf("responses follow-up without tools: %d input tokens, want %d: the first turn's tools counted again", got, want)
	}
}

// responsesInput is the input_tokens of the usage a Responses API call answers with,
// read from a stream's terminal event (response.completed, or response.incomplete at
// max_output_tokens).
func responsesInput(t *testing.T, h *harness, body string) int {
	t.Helper()
	_, b := h.must("POST", "/v1/responses", body)
	var r struct {
		Usage struct {
			InputTokens int `json:"input_tokens"`
		} `json:"usage"`
		Response *struct {
			Usage struct {
				InputTokens int `json:"input_tokens"`
			} `json:"usage"`
		} `json:"response"`
	}
	if !strings.Contains(body, `"stream":true`) {
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("responses: %v: %s", err, b)
		}
		return r.Usage.InputTokens
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok || !strings.Contains(data, `"type":"response.completed"`) && !strings.Contains(data, `"type":"response.incomplete"`) {
			continue
		}
		if err := json.Unmarshal([]byte(data), &r); err != nil || r.Response == nil {
			t.Fatalf("responses: %v: %s", err, data)
		}
		return r.Response.Usage.InputTokens
	}
	t.Fatalf("responses stream without its terminal event: %s", b)
	return 0
}
