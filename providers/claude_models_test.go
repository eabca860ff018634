package providers

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestClaudeModelOf(t *testing.T) {
	budget := claudeModel{}
	budgetStructured := claudeModel{structured: true}
	adaptive := claudeModel{adaptive: true, structured: true}
	newest := claudeModel{adaptive: true, noSampling: true, structured: true}
	claude5 := claudeModel{adaptive: true, noSampling: true, structured: true, thinksByDefault: true}
	claude55 := claudeModel{adaptive: true, noSampling: true, structured: true, thinksByDefault: true, alwaysThinks: true}
	for _, c := range []struct {
		name string
		want claudeModel
	}{
		// Anthropic's names.
		{"claude-3-5-haiku-20241022", budget},
		{"claude-3-7-sonnet-20250219", budget},
		{"claude-3-opus-20240229", budget},
		{"claude-sonnet-4-20250514", budget},
		{"claude-sonnet-4-0", budget},
		{"claude-opus-4-1-20250805", budget},
		{"claude-sonnet-4-5-20250929", budgetStructured},
		{"claude-sonnet-4-5", budgetStructured},
		{"claude-haiku-4-5", budgetStructured},
		{"claude-opus-4-5-20251101", budgetStructured},
		{"claude-opus-4-6", adaptive},
		{"claude-sonnet-4-6", adaptive},
		{"claude-opus-4-7", newest},
		{"claude-opus-4-8", newest},
		{"Claude-Opus-4-7", newest},
		// Claude 5 thinks unless told not to; the 5.5 models always do.
		{"claude-opus-5", claude5},
		{"claude-sonnet-5", claude5},
		{"claude-opus-5-5", claude55},
		{"claude-sonnet-5-5@20261001", claude55},
		// Fable 5 always thinks and has no structured outputs.
		{"claude-fable-5", claudeModel{adaptive: true, noSampling: true, thinksByDefault: true, alwaysThinks: true, forcedToolAllowed: true}},
		{"claude-fable-5-1", claudeModel{adaptive: true, noSampling: true, structured: true, thinksByDefault: true, alwaysThinks: true}},
		{"claude-mythos-5", claudeModel{adaptive: true, noSampling: true, thinksByDefault: true, alwaysThinks: true, forcedToolAllowed: true}},
		{"claude-mythos-5-1", claudeModel{adaptive: true, noSampling: true, structured: true, thinksByDefault: true, alwaysThinks: true}},
		// Haiku 5.5 takes thinking disabled.
		{"claude-haiku-5-5", claude5},
		// Bedrock and Vertex spellings.
		{"anthropic.claude-sonnet-4-5-20250929-v1:0", budgetStructured},
		{"us.anthropic.claude-opus-4-7-v1:0", newest},
		{"claude-opus-4-1@20250805", budget},
		{"claude-sonnet-4-6@default", adaptive},
		{"claude-opus-4@20250514", budget},
		// No version: taken as an earlier model, set by the backend's keys.
		{"claude-test", budget},
		{"claude-mythos-preview", budget},
		{"claude-2.1", budget},
		{"my-claude", budget},
		{"gpt-4o", budget},
		{"", budget},
	} {
		if got := claudeModelOf(c.name); got != c.want {
			t.Errorf("%q: %+v, want %+v", c.name, got, c.want)
		}
	}
}

// sentFor sends body through an anthropic backend with cfg's settings and returns
// the Messages API request the upstream received.
func sentFor(t *testing.T, cfg func(*Config), body string) map[string]json.RawMessage {
	t.Helper()
	up := startUpstream(t, answerFile(t, 200, "application/json", "testdata/anthropic/response_tool_use.json"))
	c := anthropicConfig(up.URL)
	cfg(&c)
	return sentBy(t, newTestBackend(t, c), up, body)
}

// sentBy sends body through b as a chat call and returns the request the upstream up
// received.
func sentBy(t *testing.T, b *Backend, up *upstream, body string) map[string]json.RawMessage {
	t.Helper()
	var out fasthttp.Response
	var res Result
	if err := b.Send(chatCall(body, false), &out, &res); err != nil {
		t.Fatalf("%v: %s", err, out.Body())
	}
	_, _, sent, _ := up.last()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(sent, &m); err != nil {
		t.Fatalf("%v: %s", err, sent)
	}
	return m
}

func TestAnthropicThinkingKeyOverridesModelVersion(t *testing.T) {
	const body = `{"model":"chat","messages":[{"role":"user","content":"Hi"}],"reasoning_effort":"medium"}`
	for _, c := range []struct {
		model, thinking, want, effort string
	}{
		{"claude-opus-4-6", "", `{"type":"adaptive"}`, `"medium"`},
		{"claude-opus-4-6", "auto", `{"type":"adaptive"}`, `"medium"`},
		{"claude-opus-4-6", "budget", `{"type":"enabled","budget_tokens":2048}`, ""},
		{"claude-opus-4-7", "budget", `{"type":"enabled","budget_tokens":2048}`, ""},
		{"prod-claude", "", `{"type":"enabled","budget_tokens":2048}`, ""},
		{"prod-claude", "adaptive", `{"type":"adaptive"}`, `"medium"`},
	} {
		m := sentFor(t, func(cfg *Config) { cfg.Model, cfg.Thinking = c.model, c.thinking }, body)
		if string(m["thinking"]) != c.want {
			t.Errorf("%s thinking %q: thinking %s, want %s", c.model, c.thinking, m["thinking"], c.want)
		}
		var oc struct {
			Effort json.RawMessage `json:"effort"`
		}
		if raw, ok := m["output_config"]; ok {
			if err := json.Unmarshal(raw, &oc); err != nil {
				t.Fatal(err)
			}
		}
		if string(oc.Effort) != c.effort {
			t.Errorf("%s thinking %q: output_config %s, want effort %s", c.model, c.thinking, m["output_config"], c.effort)
		}
	}
}

func TestAnthropicNewestModelsGetNoSamplingSettings(t *testing.T) {
	const body = `{"model":"chat","messages":[{"role":"user","content":"Hi"}],"temperature":0,"top_p":0.9,"top_k":40}`
	for _, model := range []string{"claude-opus-4-7", "claude-opus-4-8", "claude-fable-5"} {
		m := sentFor(t, func(cfg *Config) { cfg.Model = model }, body)
		for _, k := range []string{"temperature", "top_p", "top_k"} {
			if v, ok := m[k]; ok {
				t.Errorf("%s: %s %s sent; the model refuses it", model, k, v)
			}
		}
	}
	// Earlier models keep them (temperature wins over top_p, as before).
	m := sentFor(t, func(cfg *Config) { cfg.Model = "claude-sonnet-4-6" }, body)
	if string(m["temperature"]) != "0" || string(m["top_k"]) != "40" {
		t.Errorf("claude-sonnet-4-6: sampling settings %s / %s, want 0 / 40", m["temperature"], m["top_k"])
	}
}

func TestAnthropicDropParams(t *testing.T) {
	const body = `{"model":"chat","messages":[{"role":"user","content":"Hi"}],"temperature":0.4,"user":"u-1","stop":["END"]}`
	m := sentFor(t, func(cfg *Config) { cfg.DropParams = []string{"temperature", "user"} }, body)
	for _, k := range []string{"temperature", "metadata"} {
		if v, ok := m[k]; ok {
			t.Errorf("%s %s sent; drop_params names it", k, v)
		}
	}
	if string(m["stop_sequences"]) != `["END"]` {
		t.Errorf("stop_sequences %s, want [\"END\"]", m["stop_sequences"])
	}
}

func TestOpenAIDropParams(t *testing.T) {
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	})
	for _, provider := range []string{"openai", "azure"} {
		cfg := Config{Provider: provider, BaseURL: up.URL + "/v1", Model: "gpt-5", DropParams: []string{"temperature", "logit_bias"}}
		if provider == "azure" {
			cfg.BaseURL, cfg.Deployment = up.URL, "gpt-5"
		}
		b := newTestBackend(t, cfg)
		const body = `{"model":"chat","temperature":0.2,"messages":[{"role":"user","content":"Hi"}],"logit_bias":{"50256":-100},"seed":7}`
		var out fasthttp.Response
		var res Result
		if err := b.Send(chatCall(body, false), &out, &res); err != nil {
			t.Fatal(err)
		}
		_, _, sent, _ := up.last()
		if want := `{"model":"gpt-5","messages":[{"role":"user","content":"Hi"}],"seed":7}`; string(sent) != want {
			t.Errorf("%s: upstream got %s, want %s", provider, sent, want)
		}
	}
}

func TestOpenAIDropParamsThroughChat(t *testing.T) {
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	})
	b := newTestBackend(t, Config{Provider: "openai", BaseURL: up.URL + "/v1", Model: "gpt-4o", CompletionsViaChat: true, DropParams: []string{"temperature"}})
	call := &Call{Kind: Completions, Body: []byte(`{"model":"chat","prompt":"Hi","temperature":0.5,"max_tokens":8}`), Model: [2]int{9, 15},
		StreamOptions: [2]int{-1, -1}, Header: clientHeader(), Deadline: chatCall("{}", false).Deadline}
	var out fasthttp.Response
	var res Result
	if err := b.Send(call, &out, &res); err != nil {
		t.Fatalf("%v: %s", err, out.Body())
	}
	_, _, sent, _ := up.last()
	if strings.Contains(string(sent), "temperature") || !json.Valid(sent) || !strings.Contains(string(sent), `"max_tokens":8`) {
		t.Errorf("upstream got %s, want the chat request without temperature", sent)
	}
}

func TestThinkingAndDropParamsValidation(t *testing.T) {
	base := func(provider string) Config {
		c := Config{Provider: provider, BaseURL: "http://127.0.0.1:1/v1", Model: "m"}
		if provider == "mock" {
			c.BaseURL = ""
		}
		return c
	}
	for _, c := range []struct {
		provider string
		set      func(*Config)
		want     string // "" for valid
	}{
		{"anthropic", func(c *Config) { c.Thinking = "adaptive" }, ""},
		{"anthropic", func(c *Config) { c.Thinking = "budget" }, ""},
		{"anthropic", func(c *Config) { c.Thinking = "auto" }, ""},
		{"anthropic", func(c *Config) { c.Thinking = "on" }, "thinking: must be auto, budget or adaptive"},
		{"openai", func(c *Config) { c.Thinking = "adaptive" }, "thinking: applies only to provider anthropic"},
		{"openai", func(c *Config) { c.DropParams = []string{"temperature", "top_p"} }, ""},
		{"anthropic", func(c *Config) { c.DropParams = []string{"temperature"} }, ""},
		{"openai", func(c *Config) { c.DropParams = []string{"model"} }, "drop_params[0]: model cannot be dropped: the gateway needs it"},
		{"azure", func(c *Config) { c.Deployment = "d"; c.DropParams = []string{"top_p", "stream"} }, "drop_params[1]: stream cannot be dropped: the gateway needs it"},
		{"openai", func(c *Config) { c.DropParams = []string{""} }, "drop_params[0]: must name a field of the request"},
		{"openai", func(c *Config) { c.DropParams = []string{"seed", "seed"} }, "drop_params[1]: seed is named twice"},
		{"mock", func(c *Config) { c.DropParams = []string{"seed"} }, "drop_params: does not apply to provider mock, which answers in process"},
	} {
		cfg := base(c.provider)
		c.set(&cfg)
		err := cfg.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s %+v: %v", c.provider, cfg, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error %v, want %q", c.provider, err, c.want)
		}
	}
}

// translateFor translates body for the named model as an anthropic backend with the
// default settings would (max_tokens default 4096) and decodes the Messages request.
func translateFor(t *testing.T, model, body string) map[string]json.RawMessage {
	t.Helper()
	out, rerr := appendAnthropicRequest(nil, []byte(body), quoteModel(model), 4096, claudeModelOf(model), false)
	if rerr != nil {
		t.Fatalf("refused: %s: %s", rerr.param, rerr.msg)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("not JSON: %v: %s", err, out)
	}
	return m
}

// A client's adaptive thinking object (sent to see Opus 4.7's thinking text) keeps its
// reasoning_effort as output_config.effort: the model would otherwise run at its
// default effort, high.
func TestAnthropicAdaptiveThinkingObjectKeepsReasoningEffort(t *testing.T) {
	m := translateFor(t, "claude-opus-4-7", `{"model":"c","messages":[{"role":"user","content":"Hi"}],`+
		`"reasoning_effort":"low","thinking":{"type":"adaptive","display":"summarized"}}`)
	var oc struct {
		Effort string `json:"effort"`
	}
	if raw, ok := m["output_config"]; ok {
		_ = json.Unmarshal(raw, &oc)
	}
	if oc.Effort != "low" {
		t.Errorf("output_config %s, thinking %s: want effort \"low\" (reasoning_effort)", m["output_config"], m["thinking"])
	}
}

// An output_config key spelled with a JSON escape is the same key: the client's own
// effort stands, and the upstream gets it once.
func TestAnthropicOwnOutputConfigEscapedKeyWins(t *testing.T) {
	out, rerr := appendAnthropicRequest(nil, []byte(`{"messages":[{"role":"user","content":"Hi"}],`+
		`"reasoning_effort":"low","output_config":{"\u0065ffort":"high"}}`), quoteModel("claude-opus-4-7"), 4096, claudeModelOf("claude-opus-4-7"), false)
	if rerr != nil {
		t.Fatal(rerr.msg)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(m["output_config"])))
	_, _ = dec.Token()
	n := 0
	for dec.More() {
		k, _ := dec.Token()
		var v json.RawMessage
		_ = dec.Decode(&v)
		if k == "effort" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("output_config %s holds effort %d times, want once (the client's)", m["output_config"], n)
	}
}

// Claude 5 models think by default (adaptive thinking on without a thinking field), so
// a tool loop's signed thinking blocks go back without any reasoning_effort.
func TestAnthropicClaude5ToolLoopKeepsThinkingBlocks(t *testing.T) {
	m := translateFor(t, "claude-opus-5", `{"model":"c","messages":[`+
		`{"role":"user","content":"Weather in Paris?"},`+
		`{"role":"assistant","content":null,"tool_calls":[{"id":"toolu_1","type":"function","function":{"name":"w","arguments":"{}"}}],`+
		`"thinking_blocks":[{"type":"thinking","thinking":"","signature":"c2ln"}]},`+
		`{"role":"tool","tool_call_id":"toolu_1","content":"sunny"}],`+
		`"tools":[{"type":"function","function":{"name":"w","parameters":{}}}]}`)
	if !strings.Contains(string(m["messages"]), `"signature":"c2ln"`) {
		t.Errorf("messages %s: the assistant turn lost its thinking block", m["messages"])
	}
}

// reasoning_effort "none" is no thinking; on Claude Opus 5, which thinks by default,
// that takes thinking {"type":"disabled"}.
func TestAnthropicClaude5NoneDisablesThinking(t *testing.T) {
	m := translateFor(t, "claude-opus-5", `{"model":"c","messages":[{"role":"user","content":"Hi"}],"reasoning_effort":"none"}`)
	if string(m["thinking"]) != `{"type":"disabled"}` {
		t.Errorf("thinking %s, want {\"type\":\"disabled\"}", m["thinking"])
	}
}

// reasoning_effort "none" is no thinking on Claude Sonnet 5 too, which thinks by
// default as Opus 5 does.
func TestAnthropicSonnet5NoneDisablesThinking(t *testing.T) {
	m := translateFor(t, "claude-sonnet-5", `{"model":"c","messages":[{"role":"user","content":"Hi"}],"reasoning_effort":"none"}`)
	if string(m["thinking"]) != `{"type":"disabled"}` {
		t.Errorf("thinking %s, want {\"type\":\"disabled\"}", m["thinking"])
	}
}

// Claude Opus 5.5 always thinks and refuses forced tool use: tool_choice required gets
// 400 param tool_choice before a replica is picked, reasoning_effort or not.
func TestAnthropicAlwaysThinkingModelRefusesForcedTool(t *testing.T) {
	_, rerr := appendAnthropicRequest(nil, []byte(`{"messages":[{"role":"user","content":"Weather?"}],`+
		`"tools":[{"type":"function","function":{"name":"w","parameters":{}}}],"tool_choice":"required"}`),
		quoteModel("claude-opus-5-5"), 4096, claudeModelOf("claude-opus-5-5"), false)
	if rerr == nil || rerr.param != "tool_choice" {
		t.Errorf("refusal %+v, want 400 param tool_choice (the model always thinks)", rerr)
	}
}

// OpenAI's function strict: true (what the OpenAI SDKs' strict helpers send) goes as
// Anthropic's strict tool use on the models with structured outputs.
func TestAnthropicStrictToolKept(t *testing.T) {
	m := translateFor(t, "claude-sonnet-4-5", `{"model":"c","messages":[{"role":"user","content":"Weather?"}],`+
		`"tools":[{"type":"function","function":{"name":"w","strict":true,"parameters":{"type":"object",`+
		`"properties":{"city":{"type":"string"}},"required":["city"],"additionalProperties":false}}}]}`)
	var tools []map[string]json.RawMessage
	if err := json.Unmarshal(m["tools"], &tools); err != nil || len(tools) != 1 {
		t.Fatalf("tools %s: %v", m["tools"], err)
	}
	if string(tools[0]["strict"]) != "true" {
		t.Errorf("tool %s, want \"strict\":true", m["tools"])
	}
}

// drop_params matches keys in any case: the translation decodes the client's body with
// encoding/json, which would take "Temperature" as temperature.
func TestAnthropicDropParamsAnyCase(t *testing.T) {
	m := sentFor(t, func(c *Config) { c.Model = "prod-claude"; c.DropParams = []string{"temperature"} },
		`{"model":"c","messages":[{"role":"user","content":"Hi"}],"Temperature":0.3}`)
	if v, ok := m["temperature"]; ok {
		t.Errorf("temperature %s sent though drop_params names it", v)
	}
}

// A forced tool call on a Claude 5 model asked for no thinking turns its default
// thinking off, which the API requires for forced tool use; asked for thinking, it is
// refused as on earlier models.
func TestAnthropicClaude5ForcedToolTurnsDefaultThinkingOff(t *testing.T) {
	const tools = `"tools":[{"type":"function","function":{"name":"w","parameters":{}}}],"tool_choice":"required"`
	m := translateFor(t, "claude-opus-5", `{"model":"c","messages":[{"role":"user","content":"Weather?"}],`+tools+`}`)
	if string(m["thinking"]) != `{"type":"disabled"}` || string(m["tool_choice"]) != `{"type":"any"}` {
		t.Errorf("thinking %s, tool_choice %s: want thinking disabled and tool_choice any", m["thinking"], m["tool_choice"])
	}
	_, rerr := appendAnthropicRequest(nil, []byte(`{"messages":[{"role":"user","content":"Weather?"}],"reasoning_effort":"low",`+tools+`}`),
		quoteModel("claude-opus-5"), 4096, claudeModelOf("claude-opus-5"), false)
	if rerr == nil || rerr.param != "tool_choice" {
		t.Errorf("with reasoning_effort: %+v, want 400 param tool_choice", rerr)
	}
	// An always-thinking model takes no thinking object: reasoning_effort goes as the
	// effort alone, none as low.
	for effort, want := range map[string]string{`"high"`: `"high"`, `"none"`: `"low"`} {
		m := translateFor(t, "claude-opus-5-5", `{"model":"c","messages":[{"role":"user","content":"Hi"}],"reasoning_effort":`+effort+`}`)
		if _, ok := m["thinking"]; ok || !strings.Contains(string(m["output_config"]), `"effort":`+want) {
			t.Errorf("reasoning_effort %s: thinking %s, output_config %s, want no thinking and effort %s", effort, m["thinking"], m["output_config"], want)
		}
	}
}
