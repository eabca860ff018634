package mockllm

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// x-mock-tool-arguments gives x-mock-tool-calls' calls those arguments instead of
// {"n":i}: whole in a plain answer, in a stream in two pieces split at a character
// boundary near the middle, which join into them.
func TestChatToolArguments(t *testing.T) {
	h := start(t, Options{Model: "mock-1", MaxTokens: 16})
	client := openai.NewClient(option.WithBaseURL("http://mock.test/v1"), option.WithHTTPClient(h.client), option.WithMaxRetries(0))
	var p openai.ChatCompletionNewParams
	if err := json.Unmarshal([]byte(toolCallsBody+`}`), &p); err != nil {
		t.Fatal(err)
	}
	// A header value is Latin-1 on the wire for Go's client: the arguments are ASCII,
	// their JSON escapes (\n, \u00e9) what a model writes.
	const args = `{"input":"*** Begin Patch\n+h\u00e9 \"q\"\n*** End Patch\n"}`
	plain, err := client.Chat.Completions.New(context.Background(), p,
		option.WithHeader("x-mock-tool-calls", "2"), option.WithHeader("x-mock-tool-arguments", args))
	if err != nil {
		t.Fatal(err)
	}
	calls := plain.Choices[0].Message.ToolCalls
	if len(calls) != 2 || calls[0].Function.Arguments != args || calls[1].Function.Arguments != args || calls[1].Function.Name != "g" {
		t.Fatalf("plain answer %s", plain.RawJSON())
	}
	for _, order := range []string{"2", "2 interleaved"} {
		stream := client.Chat.Completions.NewStreaming(context.Background(), p,
			option.WithHeader("x-mock-tool-calls", order), option.WithHeader("x-mock-tool-arguments", args))
		var acc openai.ChatCompletionAccumulator
		pieces := 0
		for stream.Next() {
			ch := stream.Current()
			acc.AddChunk(ch)
			for _, c := range ch.Choices {
				for _, d := range c.Delta.ToolCalls {
					if d.Function.Arguments != "" {
						pieces++
					}
				}
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		got := acc.Choices[0].Message.ToolCalls
		if pieces != 4 || len(got) != 2 || got[0].Function.Arguments != args || got[1].Function.Arguments != args {
			t.Fatalf("%s: %d pieces, joined %+v", order, pieces, got)
		}
	}
	if got := argsHalf([]byte("ab\u00e9\u00e9")); got != 4 {
		t.Errorf("half of ab\u00e9\u00e9 at %d; want 4, after the first \u00e9", got)
	}
}
