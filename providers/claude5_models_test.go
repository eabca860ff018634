package providers

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

// translateOrRefusal is the Messages API request the translation writes for body on model
// (the backend's default max_tokens 4096), or the refusal.
func translateOrRefusal(t *testing.T, model, body string) (map[string]json.RawMessage, *requestError) {
	t.Helper()
	out, rerr := appendAnthropicRequest(nil, []byte(body), quoteModel(model), 4096, claudeModelOf(model), false)
	if rerr != nil {
		return nil, rerr
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("not JSON: %v: %s", err, out)
	}
	return m, nil
}

const forcedClassifyTool = `"tools":[{"type":"function","function":{"name":"classify","parameters":{"type":"object","properties":{"label":{"type":"string"}}}}}],` +
	`"tool_choice":"required"`

// Claude Haiku 5.5 thinks by default but takes thinking disabled (Anthropic: "This
// works only at low, medium and high"): reasoning_effort none sends it disabled.
func TestAnthropicHaiku55NoneDisablesThinking(t *testing.T) {
	m, rerr := translateOrRefusal(t, "claude-haiku-5-5",
		`{"model":"c","messages":[{"role":"user","content":"Classify: I love it"}],"reasoning_effort":"none"}`)
	if rerr != nil {
		t.Fatalf("refused: %s: %s", rerr.param, rerr.msg)
	}
	if string(m["thinking"]) != `{"type":"disabled"}` {
		t.Errorf("claude-haiku-5-5, reasoning_effort none: sent thinking %s, output_config %s; "+
			`want thinking {"type":"disabled"} (Haiku 5.5 takes disabled at effort high and below; none is no thinking)`,
			m["thinking"], m["output_config"])
	}
}

// A forced tool call without reasoning_effort on Claude Haiku 5.5 turns its default
// thinking off, as on Opus 5, rather than being refused.
func TestAnthropicHaiku55ForcedToolTurnsDefaultThinkingOff(t *testing.T) {
	m, rerr := translateOrRefusal(t, "claude-haiku-5-5",
		`{"model":"c","messages":[{"role":"user","content":"Classify: I love it"}],`+forcedClassifyTool+`}`)
	if rerr != nil {
		t.Fatalf("claude-haiku-5-5, tool_choice required: refused by the gateway (%s: %s); "+
			"want thinking disabled and tool_choice any, as for claude-opus-5 (Haiku 5.5 takes disabled)", rerr.param, rerr.msg)
	}
	if string(m["thinking"]) != `{"type":"disabled"}` || string(m["tool_choice"]) != `{"type":"any"}` {
		t.Errorf("thinking %s, tool_choice %s: want thinking disabled and tool_choice any", m["thinking"], m["tool_choice"])
	}
}

// Claude Mythos 5 is Fable 5's twin: thinking cannot be turned off, so none goes as
// effort low and a forced tool call goes without thinking disabled.
func TestAnthropicMythos5NeverSendsThinkingDisabled(t *testing.T) {
	for _, c := range []struct{ name, body string }{
		{"reasoning_effort none", `{"model":"c","messages":[{"role":"user","content":"Hi"}],"reasoning_effort":"none"}`},
		{"tool_choice required", `{"model":"c","messages":[{"role":"user","content":"Classify: I love it"}],` + forcedClassifyTool + `}`},
	} {
		// The contrast: Fable 5, the model Mythos 5 shares its capabilities with.
		for _, model := range []string{"claude-fable-5", "claude-mythos-5"} {
			m, rerr := translateOrRefusal(t, model, c.body)
			if rerr != nil {
				t.Errorf("%s, %s: refused: %s: %s", model, c.name, rerr.param, rerr.msg)
				continue
			}
			if string(m["thinking"]) == `{"type":"disabled"}` {
				t.Errorf("%s, %s: sent thinking %s (output_config %s, tool_choice %s); the model always thinks "+
					"and answers thinking disabled with a 400", model, c.name, m["thinking"], m["output_config"], m["tool_choice"])
			}
		}
	}
}

// Claude Mythos 5.1, as Fable 5.1, refuses forced tool use: the gateway answers 400
// before any upstream.
func TestAnthropicMythos51ForcedToolRefusedAsFable51(t *testing.T) {
	body := `{"model":"c","messages":[{"role":"user","content":"Classify: I love it"}],` + forcedClassifyTool + `}`
	for _, model := range []string{"claude-fable-5-1", "claude-mythos-5-1"} {
		m, rerr := translateOrRefusal(t, model, body)
		if rerr == nil || rerr.param != "tool_choice" {
			t.Errorf("%s, tool_choice required: sent thinking %s, tool_choice %s; want the gateway's 400 param tool_choice "+
				"(the model always thinks and refuses forced tool use)", model, m["thinking"], m["tool_choice"])
		}
	}
}

// roomAddedAndEstimated is what the backend adds to its default max_tokens for body (the sent
// max_tokens less the default), and what ThinkingRoom, the token estimate's share,
// says it adds.
func roomAddedAndEstimated(t *testing.T, model, body string) (added, estimated int64) {
	t.Helper()
	c := Config{Provider: "anthropic", BaseURL: "http://127.0.0.1:1/v1", Model: model, APIKey: "sk-ant-test", MaxTokens: 1000}
	b := newTestBackend(t, c)
	out, rerr := appendAnthropicRequest(nil, []byte(body), quoteModel(model), c.MaxTokens, claudeModelOf(model), false)
	if rerr != nil {
		t.Fatalf("%s: refused: %s: %s", model, rerr.param, rerr.msg)
	}
	var m struct {
		MaxTokens int64 `json:"max_tokens"`
	}
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return m.MaxTokens - c.MaxTokens, b.ThinkingRoom([]byte(body))
}

// A forced tool call on Claude Opus 5 without max_tokens turns the default thinking
// off: the backend adds no room to max_tokens, and the estimate counts none.
func TestThinkingRoomLeavesOutThinkingAForcedToolTurnsOff(t *testing.T) {
	// The contrast: the same request with tool_choice auto thinks, and both say 4096.
	auto := `{"model":"c","messages":[{"role":"user","content":"Classify: I love it"}],` +
		strings.Replace(forcedClassifyTool, `"required"`, `"auto"`, 1) + `}`
	if added, est := roomAddedAndEstimated(t, "claude-opus-5", auto); added != est {
		t.Errorf("tool_choice auto: backend adds %d, ThinkingRoom %d", added, est)
	}
	forced := `{"model":"c","messages":[{"role":"user","content":"Classify: I love it"}],` + forcedClassifyTool + `}`
	if added, est := roomAddedAndEstimated(t, "claude-opus-5", forced); added != est {
		t.Errorf("claude-opus-5, tool_choice required: the backend adds %d tokens to max_tokens, ThinkingRoom (the estimate) counts %d",
			added, est)
	}
}

// The estimate's thinking room reads keys as the translation does (encoding/json,
// any case): "Reasoning_Effort":"max" counts its room.
func TestThinkingRoomReadsFoldedKeys(t *testing.T) {
	for _, c := range []struct{ name, model, body string }{
		{"reasoning_effort (contrast)", "claude-sonnet-4-5", `{"model":"c","messages":[{"role":"user","content":"Hi"}],"reasoning_effort":"max"}`},
		{"Reasoning_Effort", "claude-sonnet-4-5", `{"model":"c","messages":[{"role":"user","content":"Hi"}],"Reasoning_Effort":"max"}`},
		{"Thinking", "claude-sonnet-4-5", `{"model":"c","messages":[{"role":"user","content":"Hi"}],"Thinking":{"type":"enabled","budget_tokens":30000}}`},
		{"REASONING_EFFORT, adaptive", "claude-opus-4-7", `{"model":"c","messages":[{"role":"user","content":"Hi"}],"REASONING_EFFORT":"max"}`},
	} {
		added, est := roomAddedAndEstimated(t, c.model, c.body)
		if added == 0 {
			t.Fatalf("%s: the backend added no room; the test's premise does not hold", c.name)
		}
		if added != est {
			t.Errorf("%s on %s: the backend adds %d tokens to max_tokens, ThinkingRoom (the estimate) counts %d",
				c.name, c.model, added, est)
		}
	}
}

// A client's adaptive thinking object without reasoning_effort (Opus 5: "equivalent
// to the default") keeps the default effort's room in max_tokens, as the default does.
func TestAnthropicAdaptiveObjectKeepsDefaultRoom(t *testing.T) {
	base := `{"model":"c","messages":[{"role":"user","content":"Prove that sqrt 2 is irrational."}]`
	for _, model := range []string{"claude-opus-5", "claude-opus-5-5"} {
		mDefault, rerr := translateOrRefusal(t, model, base+`}`)
		if rerr != nil {
			t.Fatal(rerr.msg)
		}
		mShown, rerr := translateOrRefusal(t, model, base+`,"thinking":{"type":"adaptive","display":"summarized"}}`)
		if rerr != nil {
			t.Fatal(rerr.msg)
		}
		d, _ := strconv.Atoi(string(mDefault["max_tokens"]))
		s, _ := strconv.Atoi(string(mShown["max_tokens"]))
		if d != s {
			t.Errorf("%s without max_tokens: default thinking gets max_tokens %d, the same adaptive thinking asked with "+
				`display "summarized" gets %d`, model, d, s)
		}
	}
}

// Claude Fable 5.1 (and Mythos 5.1) refuse forced tool use; structured outputs and
// strict tools, which Anthropic points to instead, go to them.
func TestAnthropicFable51StructuredOutputsKept(t *testing.T) {
	body := `{"model":"c","messages":[{"role":"user","content":"Extract: Jane Doe, jane@example.com"}],` +
		`"response_format":{"type":"json_schema","json_schema":{"name":"contact","strict":true,"schema":` +
		`{"type":"object","properties":{"name":{"type":"string"}},"required":["name"],"additionalProperties":false}}},` +
		`"tools":[{"type":"function","function":{"name":"save","strict":true,"parameters":` +
		`{"type":"object","properties":{"name":{"type":"string"}},"required":["name"],"additionalProperties":false}}}]}`
	for _, model := range []string{"claude-opus-5-5" /* contrast */, "claude-fable-5-1", "claude-mythos-5-1"} {
		m, rerr := translateOrRefusal(t, model, body)
		if rerr != nil {
			t.Fatalf("%s: refused: %s: %s", model, rerr.param, rerr.msg)
		}
		if !strings.Contains(string(m["output_config"]), `"format":{"type":"json_schema"`) {
			t.Errorf("%s: output_config %s: the strict json_schema response_format was not sent as output_config.format", model, m["output_config"])
		}
		if !strings.Contains(string(m["tools"]), `"strict":true`) {
			t.Errorf("%s: tools %s: function.strict true was not sent as strict tool use", model, m["tools"])
		}
	}
}
