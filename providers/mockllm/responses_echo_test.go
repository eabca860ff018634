package mockllm

import (
	"context"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/responses"
)

// max_tool_calls is echoed in the answer, buffered and streamed, as OpenAI and vLLM
// (ResponsesResponse.from_request) echo it.
func TestResponsesMaxToolCallsEchoed(t *testing.T) {
	t.Parallel()
	h := start(t, Options{MaxTokens: 6})
	c := h.sdk("")
	p := responses.ResponseNewParams{Model: "mock-1", Input: respText("hello"), MaxToolCalls: openai.Int(3)}
	r, err := c.Responses.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if r.MaxToolCalls != 3 {
		t.Errorf("buffered: observed max_tool_calls %s; expected 3, the request's", r.JSON.MaxToolCalls.Raw())
	}
	s := readStream(t, c, p)
	if s.err != nil {
		t.Fatal(s.err)
	}
	if s.final.MaxToolCalls != 3 {
		t.Errorf("streamed: observed max_tool_calls %s in response.completed; expected 3, the request's", s.final.JSON.MaxToolCalls.Raw())
	}
}
