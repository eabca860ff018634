package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// thinkingAnswer is what a client keeps of an answer with thinking: the message, and
// the reasoning_content and thinking_blocks the OpenAI SDK has no fields for.
type thinkingAnswer struct {
	msg       openai.ChatCompletionMessage
	reasoning string
	blocks    json.RawMessage
}

// TestAnthropicThinkingToolLoop runs a two-step tool loop with reasoning_effort
// through the gateway to mockllm --api anthropic, with the OpenAI SDK as the client,
// buffered and streamed. The first answer carries the thinking as reasoning_content
// and thinking_blocks; the second request, with the thinking_blocks on the assistant
// message, is answered, as the Messages API wants the thinking block back first in the
// last assistant turn of a tool-use loop (mockllm checks it and its signature as the
// API does). Without them the upstream's refusal comes back as a 400.
func TestAnthropicThinkingToolLoop(t *testing.T) {
	_, caddr := startMock(t, mockllm.Options{Model: afModel, API: mockllm.APIAnthropic, APIKey: afAnthropicKey, MaxTokens: 64, Seed: 3})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  claude: {provider: anthropic, base_url: "http://`+caddr+`/v1", model: `+afModel+`, api_key: `+afAnthropicKey+`, timeout: 5s}
endpoints:
  - {name: claude, type: chat, routes: [{backend: claude}]}
`)
	c := g.client()
	ctx := context.Background()
	weather := openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
		Name: "get_weather",
		Parameters: openai.FunctionParameters{"type": "object", "properties": map[string]any{
			"city": map[string]any{"type": "string"},
		}, "required": []string{"city"}},
	})
	first := openai.ChatCompletionNewParams{
		Model:           "claude",
		Messages:        userMsg("What does get_weather say for Paris?"),
		Tools:           []openai.ChatCompletionToolUnionParam{weather},
		ReasoningEffort: openai.ReasoningEffortLow,
		// Refused with thinking on: the gateway leaves it out.
		Temperature: openai.Float(0.2),
	}

	buffered := func(t *testing.T, p openai.ChatCompletionNewParams) (thinkingAnswer, error) {
		cc, err := c.Chat.Completions.New(ctx, p)
		if err != nil {
			return thinkingAnswer{}, err
		}
		msg := cc.Choices[0].Message
		a := thinkingAnswer{msg: msg, blocks: json.RawMessage(msg.JSON.ExtraFields["thinking_blocks"].Raw())}
		if f, ok := msg.JSON.ExtraFields["reasoning_content"]; ok {
			if err := json.Unmarshal([]byte(f.Raw()), &a.reasoning); err != nil {
				t.Fatalf("reasoning_content %s: %v", f.Raw(), err)
			}
		}
		return a, nil
	}
	streamed := func(t *testing.T, p openai.ChatCompletionNewParams) (thinkingAnswer, error) {
		s := c.Chat.Completions.NewStreaming(ctx, p)
		defer s.Close()
		var acc openai.ChatCompletionAccumulator
		var reasoning strings.Builder
		var blocks []json.RawMessage
		for s.Next() {
			ch := s.Current()
			if !acc.AddChunk(ch) {
				t.Fatalf("accumulator refused %s", ch.RawJSON())
			}
			if len(ch.Choices) == 0 {
				continue
			}
			d := ch.Choices[0].Delta
			if f, ok := d.JSON.ExtraFields["reasoning_content"]; ok {
				var r string
				if err := json.Unmarshal([]byte(f.Raw()), &r); err != nil {
					t.Fatal(err)
				}
				reasoning.WriteString(r)
			}
			if f, ok := d.JSON.ExtraFields["thinking_blocks"]; ok {
				var b []json.RawMessage
				if err := json.Unmarshal([]byte(f.Raw()), &b); err != nil {
					t.Fatal(err)
				}
				blocks = append(blocks, b...)
			}
		}
		if err := s.Err(); err != nil {
			return thinkingAnswer{}, err
		}
		all, _ := json.Marshal(blocks)
		return thinkingAnswer{msg: acc.Choices[0].Message, reasoning: reasoning.String(), blocks: all}, nil
	}

	for _, way := range []struct {
		name string
		ask  func(*testing.T, openai.ChatCompletionNewParams) (thinkingAnswer, error)
	}{{"buffered", buffered}, {"streamed", streamed}} {
		t.Run(way.name, func(t *testing.T) {
			a, err := way.ask(t, first)
			if err != nil {
				t.Fatal(err)
			}
			var blocks []struct{ Type, Thinking, Signature string }
			if err := json.Unmarshal(a.blocks, &blocks); err != nil {
				t.Fatalf("thinking_blocks %s: %v", a.blocks, err)
			}
			if len(blocks) != 1 || blocks[0].Type != "thinking" || blocks[0].Signature == "" ||
				!strings.HasPrefix(a.reasoning, "Thinking it over:") || blocks[0].Thinking != a.reasoning {
				t.Fatalf("reasoning_content %q, thinking_blocks %s", a.reasoning, a.blocks)
			}
			if len(a.msg.ToolCalls) != 1 || a.msg.ToolCalls[0].Function.Name != "get_weather" {
				t.Fatalf("tool calls %+v", a.msg.ToolCalls)
			}
			next := func(withBlocks bool) openai.ChatCompletionNewParams {
				asst := openai.ChatCompletionAssistantMessageParam{}
				if a.msg.Content != "" {
					asst.Content.OfString = openai.String(a.msg.Content)
				}
				for _, tc := range a.msg.ToolCalls {
					// Built by hand: ToParam needs the raw JSON, which an accumulated
					// stream has none of.
					asst.ToolCalls = append(asst.ToolCalls, openai.ChatCompletionMessageToolCallUnionParam{
						OfFunction: &openai.ChatCompletionMessageFunctionToolCallParam{ID: tc.ID,
							Function: openai.ChatCompletionMessageFunctionToolCallFunctionParam{Name: tc.Function.Name, Arguments: tc.Function.Arguments}},
					})
				}
				extra := map[string]any{"reasoning_content": a.reasoning}
				if withBlocks {
					extra["thinking_blocks"] = a.blocks
				}
				asst.SetExtraFields(extra)
				p := first
				p.Messages = append(append([]openai.ChatCompletionMessageParamUnion{}, first.Messages...),
					openai.ChatCompletionMessageParamUnion{OfAssistant: &asst},
					openai.ToolMessage("18C and sunny", a.msg.ToolCalls[0].ID))
				return p
			}
			b, err := way.ask(t, next(true))
			if err != nil {
				t.Fatalf("the loop's second step: %v", err)
			}
			if b.msg.Content == "" || len(b.msg.ToolCalls) != 0 || b.reasoning == "" {
				t.Errorf("second answer %+v, reasoning %q", b.msg, b.reasoning)
			}
			_, err = way.ask(t, next(false))
			var apiErr *openai.Error
			if way.name == "buffered" && (!errors.As(err, &apiErr) || apiErr.StatusCode != 400 || !strings.Contains(apiErr.Message, "must start with a thinking block")) {
				t.Errorf("without thinking_blocks: %v, want the upstream's 400", err)
			}
			if way.name == "streamed" && (err == nil || !strings.Contains(err.Error(), "400")) {
				t.Errorf("without thinking_blocks: %v, want the upstream's 400", err)
			}
		})
	}

	t.Run("forced tool use refused before the upstream", func(t *testing.T) {
		p := first
		p.ToolChoice = openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("required")}
		_, err := c.Chat.Completions.New(ctx, p)
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Param != "tool_choice" {
			t.Fatalf("%v, want 400 naming tool_choice", err)
		}
	})
}
