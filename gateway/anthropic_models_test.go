package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// startClaudeModels serves mockllm --api anthropic behind three backends named for
// the models they serve, each an endpoint of the same name: Opus 4.7 (adaptive thinking
// only, no sampling settings), Sonnet 4.5 (thinking budgets, structured outputs) and
// Opus 4.7 again under an operator's thinking: budget, which the model refuses.
func startClaudeModels(t *testing.T) *gw {
	t.Helper()
	backend := func(name, model, extra string) string {
		// mockllm serves one model name; the model's rules follow it.
		_, addr := startMock(t, mockllm.Options{Model: model, API: mockllm.APIAnthropic, APIKey: afAnthropicKey, MaxTokens: 64, Seed: 5})
		return "  " + name + `: {provider: anthropic, base_url: "http://` + addr + `/v1", model: ` + model +
			`, api_key: ` + afAnthropicKey + `, timeout: 5s` + extra + "}\n"
	}
	return startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
`+backend("opus47", "claude-opus-4-7", "")+backend("sonnet45", "claude-sonnet-4-5-20250929", "")+
		backend("opus47-budget", "claude-opus-4-7", ", thinking: budget")+`
endpoints:
  - {name: opus47, type: chat, routes: [{backend: opus47}]}
  - {name: sonnet45, type: chat, routes: [{backend: sonnet45}]}
  - {name: opus47-budget, type: chat, routes: [{backend: opus47-budget}]}
`)
}

// TestAnthropicNewestModelToolLoop runs a tool loop with reasoning_effort and the
// sampling settings an OpenAI client commonly sends against Opus 4.7 (as mockllm
// imitates it: budgets and sampling settings refused, thinking text omitted) with the
// OpenAI SDK: the gateway sends adaptive thinking with the effort and leaves the
// sampling settings out, the answer's thinking block comes back empty but signed, and
// sent back it carries the loop's second step. The same request through a backend
// told thinking: budget gets the model's refusal.
func TestAnthropicNewestModelToolLoop(t *testing.T) {
	g := startClaudeModels(t)
	c := g.client()
	ctx := context.Background()
	weather := openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
		Name: "get_weather",
		Parameters: openai.FunctionParameters{"type": "object", "properties": map[string]any{
			"city": map[string]any{"type": "string"},
		}, "required": []string{"city"}},
	})
	first := openai.ChatCompletionNewParams{
		Model:           "opus47",
		Messages:        userMsg("What does get_weather say for Paris?"),
		Tools:           []openai.ChatCompletionToolUnionParam{weather},
		ReasoningEffort: openai.ReasoningEffortHigh,
		Temperature:     openai.Float(0.2),
		TopP:            openai.Float(0.9),
	}
	cc, err := c.Chat.Completions.New(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	msg := cc.Choices[0].Message
	raw := msg.JSON.ExtraFields["thinking_blocks"].Raw()
	var blocks []struct{ Type, Thinking, Signature string }
	if err := json.Unmarshal([]byte(raw), &blocks); err != nil || len(blocks) != 1 {
		t.Fatalf("thinking_blocks %s: %v", raw, err)
	}
	if blocks[0].Type != "thinking" || blocks[0].Thinking != "" || blocks[0].Signature == "" {
		t.Fatalf("thinking block %+v, want an omitted (empty) one with its signature", blocks[0])
	}
	if r := msg.JSON.ExtraFields["reasoning_content"].Raw(); r != `""` {
		t.Errorf("reasoning_content %s, want \"\"", r)
	}
	if len(msg.ToolCalls) != 1 || msg.ToolCalls[0].Function.Name != "get_weather" {
		t.Fatalf("tool calls %+v", msg.ToolCalls)
	}

	second := toolLoopNext(first, msg, raw)
	cc, err = c.Chat.Completions.New(ctx, second)
	if err != nil {
		t.Fatalf("the loop's second step: %v", err)
	}
	if cc.Choices[0].Message.Content == "" || len(cc.Choices[0].Message.ToolCalls) != 0 {
		t.Errorf("second answer %+v", cc.Choices[0].Message)
	}

	s := c.Chat.Completions.NewStreaming(ctx, second)
	var acc openai.ChatCompletionAccumulator
	for s.Next() {
		acc.AddChunk(s.Current())
	}
	if err := s.Err(); err != nil || acc.Choices[0].Message.Content == "" {
		t.Errorf("streamed second step: %v, %+v", err, acc.Choices)
	}
	s.Close()

	first.Model = "opus47-budget"
	_, err = c.Chat.Completions.New(ctx, first)
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || !strings.Contains(apiErr.Message, "thinking.type.enabled") {
		t.Errorf("thinking: budget on Opus 4.7: %v, want the model's 400", err)
	}
}

// TestAnthropicStructuredOutputs asks for a strict JSON schema through the OpenAI
// SDK's response_format, buffered and streamed, on models with structured outputs:
// the answer's text is JSON of the schema (mockllm writes it only when it gets
// output_config.format, and refuses a schema object left open).
func TestAnthropicStructuredOutputs(t *testing.T) {
	g := startClaudeModels(t)
	c := g.client()
	ctx := context.Background()
	schema := map[string]any{
		"type": "object",
		"properties": map[string]any{
			"name":  map[string]any{"type": "string"},
			"email": map[string]any{"type": "string"},
			"tags":  map[string]any{"type": "array", "items": map[string]any{"type": "string"}},
		},
		"required":             []string{"name", "email", "tags"},
		"additionalProperties": false,
	}
	for _, model := range []string{"opus47", "sonnet45"} {
		p := openai.ChatCompletionNewParams{
			Model:     model,
			Messages:  userMsg("Extract the contact: Jane Doe, jane@example.com, VIP"),
			MaxTokens: openai.Int(512),
			ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &openai.ResponseFormatJSONSchemaParam{
				JSONSchema: openai.ResponseFormatJSONSchemaJSONSchemaParam{Name: "contact", Strict: openai.Bool(true), Schema: schema},
			}},
		}
		check := func(way, content string) {
			var got struct {
				Name  *string   `json:"name"`
				Email *string   `json:"email"`
				Tags  *[]string `json:"tags"`
			}
			dec := json.NewDecoder(strings.NewReader(content))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&got); err != nil || got.Name == nil || got.Email == nil || got.Tags == nil {
				t.Errorf("%s %s: content %q is not JSON of the schema: %v", model, way, content, err)
			}
		}
		cc, err := c.Chat.Completions.New(ctx, p)
		if err != nil {
			t.Fatalf("%s: %v", model, err)
		}
		check("buffered", cc.Choices[0].Message.Content)

		s := c.Chat.Completions.NewStreaming(ctx, p)
		var acc openai.ChatCompletionAccumulator
		for s.Next() {
			acc.AddChunk(s.Current())
		}
		if err := s.Err(); err != nil {
			t.Fatalf("%s streamed: %v", model, err)
		}
		s.Close()
		check("streamed", acc.Choices[0].Message.Content)
	}
}

// recordingAnthropic is an Anthropic Messages upstream that records each request body and
// answers with a tool call after an omitted (empty, signed) thinking block, as Opus 4.7
// and the Claude 5 models answer by default.
type recordingAnthropic struct {
	mu     sync.Mutex
	bodies [][]byte
}

func (u *recordingAnthropic) serve(ctx *fasthttp.RequestCtx) {
	u.mu.Lock()
	u.bodies = append(u.bodies, append([]byte(nil), ctx.PostBody()...))
	u.mu.Unlock()
	ctx.Response.Header.SetContentType("application/json")
	ctx.Response.SetBodyString(`{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[` +
		`{"type":"thinking","thinking":"","signature":"c2lnbmVk"},` +
		`{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}}],` +
		`"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":7}}`)
}

func (u *recordingAnthropic) body(t *testing.T, i int) map[string]json.RawMessage {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if i >= len(u.bodies) {
		t.Fatalf("upstream got %d requests, want %d", len(u.bodies), i+1)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(u.bodies[i], &m); err != nil {
		t.Fatalf("%v: %s", err, u.bodies[i])
	}
	return m
}

// recordedClaudeGateway serves one endpoint "claude" on an anthropic backend of model in
// front of a recording upstream.
func recordedClaudeGateway(t *testing.T, model string) (*gw, *recordingAnthropic) {
	t.Helper()
	up := &recordingAnthropic{}
	addr := serveUpstream(t, up.serve)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  claude: {provider: anthropic, base_url: "http://`+addr+`/v1", model: `+model+`, api_key: sk-ant-test, timeout: 5s}
endpoints:
  - {name: claude, type: chat, routes: [{backend: claude}]}
logging: {level: error, access_log: false}
`)
	return g, up
}

var weatherTool = openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
	Name: "get_weather",
	Parameters: openai.FunctionParameters{"type": "object", "properties": map[string]any{
		"city": map[string]any{"type": "string"},
	}, "required": []string{"city"}},
})

// An OpenAI SDK client on Opus 4.7 asks to see the thinking text (thinking
// {"type":"adaptive","display":"summarized"}, as README says) with reasoning_effort
// "low": the upstream gets both, the effort as output_config.effort.
func TestAnthropicThinkingDisplayKeepsEffort(t *testing.T) {
	t.Parallel()
	g, up := recordedClaudeGateway(t, "claude-opus-4-7")
	c := g.client()
	_, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:           "claude",
		Messages:        userMsg("What does get_weather say for Paris?"),
		Tools:           []openai.ChatCompletionToolUnionParam{weatherTool},
		ReasoningEffort: openai.ReasoningEffortLow,
	}, option.WithJSONSet("thinking", map[string]any{"type": "adaptive", "display": "summarized"}))
	if err != nil {
		t.Fatal(err)
	}
	m := up.body(t, 0)
	var oc struct {
		Effort string `json:"effort"`
	}
	_ = json.Unmarshal(m["output_config"], &oc)
	if oc.Effort != "low" {
		t.Errorf("sent thinking %s, output_config %s: want effort \"low\" (the client's reasoning_effort)", m["thinking"], m["output_config"])
	}
}

// A tool loop on Claude Opus 5, which thinks by default, with the OpenAI SDK and no
// reasoning_effort: the first answer's signed thinking block comes back in
// thinking_blocks, and sent back it opens the assistant turn of the second request.
func TestAnthropicClaude5ToolLoopSendsThinkingBack(t *testing.T) {
	g, up := recordedClaudeGateway(t, "claude-opus-5")
	c := g.client()
	ctx := context.Background()
	first := openai.ChatCompletionNewParams{
		Model:    "claude",
		Messages: userMsg("What does get_weather say for Paris?"),
		Tools:    []openai.ChatCompletionToolUnionParam{weatherTool},
	}
	cc, err := c.Chat.Completions.New(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	msg := cc.Choices[0].Message
	raw := msg.JSON.ExtraFields["thinking_blocks"].Raw()
	if len(msg.ToolCalls) != 1 || raw == "" {
		t.Fatalf("first answer %s", cc.RawJSON())
	}
	second := toolLoopNext(first, msg, raw)
	if _, err := c.Chat.Completions.New(ctx, second); err != nil {
		t.Fatal(err)
	}
	var msgs []struct {
		Role    string `json:"role"`
		Content []struct {
			Type      string `json:"type"`
			Signature string `json:"signature"`
		} `json:"content"`
	}
	if err := json.Unmarshal(up.body(t, 1)["messages"], &msgs); err != nil || len(msgs) < 2 {
		t.Fatalf("second request's messages: %v", err)
	}
	if a := msgs[1]; a.Role != "assistant" || len(a.Content) == 0 || a.Content[0].Type != "thinking" || a.Content[0].Signature != "c2lnbmVk" {
		t.Errorf("assistant turn sent back %+v: want the signed thinking block first", a)
	}
}

// TestAnthropicClaude5Thinking runs the OpenAI SDK against mockllm imitating the Claude
// 5 models, which think unless told not to: a tool loop without reasoning_effort gets
// the default thinking's signed block and sends it back; a forced tool call on Opus 5
// turns the default thinking off (mockllm refuses forced tools with thinking on);
// reasoning_effort none is taken by every model; the always-thinking Opus 5.5 refuses a
// forced tool call before any upstream, and Fable 5 takes one.
func TestAnthropicClaude5Thinking(t *testing.T) {
	models := []string{"claude-opus-5", "claude-opus-5-5", "claude-fable-5"}
	conf := "server: {listen: \"127.0.0.1:0\", admin_listen: \"127.0.0.1:0\"}\nbackends:\n"
	eps := "endpoints:\n"
	for _, m := range models {
		_, addr := startMock(t, mockllm.Options{Model: m, API: mockllm.APIAnthropic, APIKey: afAnthropicKey, MaxTokens: 64, Seed: 5})
		conf += "  " + m + `: {provider: anthropic, base_url: "http://` + addr + `/v1", model: ` + m + `, api_key: ` + afAnthropicKey + ", timeout: 5s}\n"
		eps += "  - {name: " + m + ", type: chat, routes: [{backend: " + m + "}]}\n"
	}
	c := startGateway(t, conf+eps).client()
	ctx := context.Background()
	weather := openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
		Name: "get_weather",
		Parameters: openai.FunctionParameters{"type": "object", "properties": map[string]any{
			"city": map[string]any{"type": "string"},
		}, "required": []string{"city"}},
	})
	ask := func(model string) openai.ChatCompletionNewParams {
		return openai.ChatCompletionNewParams{Model: model, Messages: userMsg("What does get_weather say for Paris?"),
			Tools: []openai.ChatCompletionToolUnionParam{weather}}
	}
	required := openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("required")}

	t.Run("tool loop on the default thinking", func(t *testing.T) {
		first := ask("claude-opus-5")
		cc, err := c.Chat.Completions.New(ctx, first)
		if err != nil {
			t.Fatal(err)
		}
		msg := cc.Choices[0].Message
		raw := msg.JSON.ExtraFields["thinking_blocks"].Raw()
		if len(msg.ToolCalls) != 1 || !strings.Contains(raw, `"signature"`) {
			t.Fatalf("first answer %s", cc.RawJSON())
		}
		second := toolLoopNext(first, msg, raw)
		if cc, err = c.Chat.Completions.New(ctx, second); err != nil || cc.Choices[0].Message.Content == "" {
			t.Fatalf("the loop's second step: %v", err)
		}
	})
	t.Run("forced tool call", func(t *testing.T) {
		for _, m := range []string{"claude-opus-5", "claude-fable-5"} {
			p := ask(m)
			p.ToolChoice = required
			cc, err := c.Chat.Completions.New(ctx, p)
			if err != nil || len(cc.Choices[0].Message.ToolCalls) != 1 {
				t.Errorf("%s: %v, want the tool call", m, err)
			}
		}
		p := ask("claude-opus-5-5")
		p.ToolChoice = required
		_, err := c.Chat.Completions.New(ctx, p)
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Param != "tool_choice" {
			t.Errorf("claude-opus-5-5: %v, want 400 naming tool_choice", err)
		}
	})
	t.Run("reasoning_effort none", func(t *testing.T) {
		for _, m := range models {
			p := openai.ChatCompletionNewParams{Model: m, Messages: userMsg("Hi"), ReasoningEffort: openai.ReasoningEffortNone}
			if _, err := c.Chat.Completions.New(ctx, p); err != nil {
				t.Errorf("%s: %v", m, err)
			}
		}
	})
}

// toolLoopNext is the tool loop's second request: first, then the assistant's answer msg
// with its thinking blocks raw sent back, then get_weather's answer to its tool call.
func toolLoopNext(first openai.ChatCompletionNewParams, msg openai.ChatCompletionMessage, raw string) openai.ChatCompletionNewParams {
	asst := msg.ToParam()
	asst.OfAssistant.SetExtraFields(map[string]any{"thinking_blocks": json.RawMessage(raw)})
	second := first
	second.Messages = append(append([]openai.ChatCompletionMessageParamUnion{}, first.Messages...), asst,
		openai.ToolMessage("18C and sunny", msg.ToolCalls[0].ID))
	return second
}
