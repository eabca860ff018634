package mockllm

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// toolCallsBody is a chat request with function tools f and g.
const toolCallsBody = `{"model":"mock-1","messages":[{"role":"user","content":"Weather in Paris and Rome?"}],` +
	`"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}},{"type":"function","function":{"name":"g"}}]`

// x-mock-tool-calls answers a chat request with parallel tool calls, naming its
// function tools in turn: whole in a plain answer, streamed one call after the other
// or interleaved by index; the official SDK joins either stream into the plain
// answer's calls.
func TestChatToolCalls(t *testing.T) {
	h := start(t, Options{Model: "mock-1", MaxTokens: 16})
	client := openai.NewClient(option.WithBaseURL("http://mock.test/v1"), option.WithHTTPClient(h.client), option.WithMaxRetries(0))
	var p openai.ChatCompletionNewParams
	if err := json.Unmarshal([]byte(toolCallsBody+`}`), &p); err != nil {
		t.Fatal(err)
	}
	plain, err := client.Chat.Completions.New(context.Background(), p, option.WithHeader("x-mock-tool-calls", "3"))
	if err != nil {
		t.Fatal(err)
	}
	calls := plain.Choices[0].Message.ToolCalls
	if len(calls) != 3 || plain.Choices[0].FinishReason != "tool_calls" || plain.Usage.CompletionTokens != 9 || plain.Choices[0].Message.Content != "" {
		t.Fatalf("plain answer %s", plain.RawJSON())
	}
	for i, c := range calls {
		name := []string{"f", "g", "f"}[i]
		if c.Function.Name != name || c.Function.Arguments != fmt.Sprintf(`{"n":%d}`, i) || !strings.HasPrefix(c.ID, fmt.Sprintf("call_%d_", i)) || c.Type != "function" {
			t.Errorf("call %d: %s", i, c.RawJSON())
		}
	}
	for _, tc := range []struct {
		name, header string
		// order is the chat index of each tool call chunk.
		order string
	}{
		{"one call after the other", "3", "0 0 0 1 1 1 2 2 2"},
		{"interleaved", "3 interleaved", "0 1 2 0 1 2 0 1 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := p
			p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
			stream := client.Chat.Completions.NewStreaming(context.Background(), p,
				option.WithHeader("x-mock-tool-calls", tc.header))
			var acc openai.ChatCompletionAccumulator
			var order []string
			finish := ""
			for stream.Next() {
				ch := stream.Current()
				acc.AddChunk(ch)
				for _, c := range ch.Choices {
					for _, d := range c.Delta.ToolCalls {
						order = append(order, fmt.Sprint(d.Index))
					}
					if c.FinishReason != "" {
						finish = c.FinishReason
					}
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(order, " "); got != tc.order || finish != "tool_calls" {
				t.Fatalf("tool call chunks by index %s, finish %q; want %s, tool_calls", got, finish, tc.order)
			}
			got := acc.Choices[0].Message.ToolCalls
			if len(got) != len(calls) || acc.Usage.CompletionTokens != 9 {
				t.Fatalf("joined %+v, usage %+v", got, acc.Usage)
			}
			for i := range calls {
				if got[i].ID != calls[i].ID || got[i].Function.Name != calls[i].Function.Name || got[i].Function.Arguments != calls[i].Function.Arguments {
					t.Errorf("call %d joined %+v; plain %s", i, got[i], calls[i].RawJSON())
				}
			}
		})
	}
	t.Run("not asked for", func(t *testing.T) {
		for _, tc := range []struct{ name, body, header string }{
			{"no tools", `{"model":"mock-1","messages":[{"role":"user","content":"x"}]}`, "2"},
			{"two choices", toolCallsBody + `,"n":2}`, "2"},
			{"zero", toolCallsBody + `}`, "0"},
			{"too many", toolCallsBody + `}`, "17"},
			{"unknown order", toolCallsBody + `}`, "2 sideways"},
		} {
			_, b := h.must("POST", "/v1/chat/completions", tc.body, "x-mock-tool-calls", tc.header)
			if !strings.Contains(string(b), `"tool_calls":[]`) || strings.Contains(string(b), `"tool_calls":[{`) {
				t.Errorf("%s: %s", tc.name, b)
			}
		}
	})
}
