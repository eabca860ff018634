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
		{"claude-opus-5", newest},
		// Claude 5 models outside the three families take adaptive thinking only and
		// have no structured outputs (Fable 5).
		{"claude-fable-5", claudeModel{adaptive: true, noSampling: true}},
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
	b := newTestBackend(t, c)
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
	b := newTestBackend(t, Config{Provider: "openai", BaseURL: up.URL + "/v1", Model: "gpt-5", CompletionsViaChat: true, DropParams: []string{"temperature"}})
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
