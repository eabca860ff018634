package gateway

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// startBridgedClaude is a gateway whose endpoint "claude" reaches mockllm's Messages
// API serving model, through the Responses API bridge.
func startBridgedClaude(t *testing.T, model string) *gw {
	t.Helper()
	_, claude := startMock(t, mockllm.Options{Model: model, API: mockllm.APIAnthropic, APIKey: afAnthropicKey, MaxTokens: 32, Seed: 5})
	return startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  claude: {provider: anthropic, base_url: "http://`+claude+`/v1", model: `+model+`, api_key: `+afAnthropicKey+`, timeout: 5s}
endpoints:
  - {name: claude, type: chat, routes: [{backend: claude}]}
`)
}

// An agent on the Responses API (the Agents SDK's loop, Codex CLI) with function
// tools, on a Claude model that thinks (Sonnet 4.5 asked reasoning.effort, Opus 5.5
// always, its thinking text left out): turn 1 answers, buffered or streamed, with a
// reasoning item and function_call items, the reasoning item's encrypted_content
// holding the thinking blocks with their signatures; turn 2 sends every item back as
// it came with the function_call_output, and the bridge gives the thinking back to
// the assistant turn, so that Anthropic (mockllm checks signatures and the rule that a
// tool loop's last assistant turn begins with its thinking) answers the tool result.
func TestResponsesBridgeThinkingToolLoop(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, model, effort string
		stream              bool
	}{
		{"sonnet-4-5 reasoning.effort low", "claude-sonnet-4-5-20250929", "low", false},
		{"sonnet-4-5 reasoning.effort low, streamed", "claude-sonnet-4-5-20250929", "low", true},
		{"opus-5-5 default", "claude-opus-5-5", "", false},
		{"opus-5-5 default, streamed", "claude-opus-5-5", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := startBridgedClaude(t, tc.model)
			c := g.client()
			ctx := context.Background()
			tool := responses.ToolParamOfFunction("get_weather", map[string]any{
				"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}, "required": []string{"city"},
			}, false)
			params := responses.ResponseNewParams{
				Model: "claude", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Call get_weather for Paris")},
				Tools: []responses.ToolUnionParam{tool},
			}
			if tc.effort != "" {
				params.Reasoning.Effort = responses.ReasoningEffort(tc.effort)
			}
			first := firstTurn(t, c, params, tc.stream)
			// Turn 2: the user's message, every output item as it came, the tool's output.
			items := []json.RawMessage{json.RawMessage(`{"role":"user","content":"Call get_weather for Paris"}`)}
			var callID string
			reasoning := 0
			for _, it := range first.Output {
				items = append(items, json.RawMessage(it.RawJSON()))
				switch it.Type {
				case "function_call":
					callID = it.CallID
				case "reasoning":
					reasoning++
					checkEncryptedThinking(t, it.EncryptedContent)
				}
			}
			if callID == "" || reasoning != 1 {
				t.Fatalf("turn 1: %d reasoning items, call %q: %s", reasoning, callID, first.RawJSON())
			}
			out, _ := json.Marshal(map[string]string{"type": "function_call_output", "call_id": callID, "output": "18C and sunny"})
			items = append(items, out)
			second, err := c.Responses.New(ctx, params, option.WithJSONSet("input", items))
			if err != nil {
				var ae *openai.Error
				msg := err.Error()
				if errors.As(err, &ae) {
					msg = ae.Message
				}
				t.Fatalf("turn 2 (its tool result): %.300s", msg)
			}
			if second.OutputText() == "" {
				t.Fatalf("turn 2: no text in %s", second.RawJSON())
			}
		})
	}
}

// firstTurn is the response to params, buffered or, with stream, as response.completed
// holds it; a streamed reasoning item's output_item.done must be the item the
// response holds.
func firstTurn(t *testing.T, c openai.Client, params responses.ResponseNewParams, stream bool) responses.Response {
	t.Helper()
	ctx := context.Background()
	if !stream {
		first, err := c.Responses.New(ctx, params)
		if err != nil {
			t.Fatalf("turn 1: %v", err)
		}
		return *first
	}
	s := c.Responses.NewStreaming(ctx, params)
	var final responses.Response
	var done []string
	for s.Next() {
		ev := s.Current()
		switch ev.Type {
		case "response.output_item.done":
			if ev.Item.Type == "reasoning" {
				done = append(done, ev.Item.EncryptedContent)
			}
		case "response.completed":
			final = ev.Response
		}
	}
	if err := s.Err(); err != nil {
		t.Fatalf("turn 1, streamed: %v", err)
	}
	for _, it := range final.Output {
		if it.Type == "reasoning" && (len(done) != 1 || done[0] != it.EncryptedContent) {
			t.Fatalf("turn 1, streamed: output_item.done's encrypted_content %q, response.completed's %q", done, it.EncryptedContent)
		}
	}
	return final
}

// checkEncryptedThinking checks a reasoning item's encrypted_content: base64 of the
// thinking blocks' JSON array, each signed.
func checkEncryptedThinking(t *testing.T, enc string) {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		t.Fatalf("encrypted_content %q: %v", enc, err)
	}
	var blocks []struct{ Type, Thinking, Signature string }
	if err := json.Unmarshal(raw, &blocks); err != nil || len(blocks) == 0 {
		t.Fatalf("encrypted_content holds %s (%v)", raw, err)
	}
	for _, b := range blocks {
		if b.Type != "thinking" || b.Signature == "" {
			t.Fatalf("thinking block %+v in %s", b, raw)
		}
	}
}
