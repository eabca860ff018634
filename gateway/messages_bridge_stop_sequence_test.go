package gateway

import (
	"context"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
)

// Through chat completions (messages_api: chat), an answer that one of the request's
// stop_sequences ended says so as the Messages API does: stop_reason stop_sequence,
// stop_sequence the string, where the chat answer names it (vLLM's choice.stop_reason,
// which mockllm writes as vLLM does); streamed or not, the SDK reads the same. An
// answer that ends otherwise has stop_sequence null.
func TestMessagesBridgeStopSequence(t *testing.T) {
	t.Parallel()
	g, _, _ := startMessagesBridge(t)
	c := bridgeSDK(g)
	ctx := context.Background()
	plain, err := c.Messages.New(ctx, msgParams("tgi", "Tell me a story.", 12))
	if err != nil {
		t.Fatal(err)
	}
	words := strings.Fields(plain.Content[0].Text)
	if len(words) < 4 {
		t.Fatalf("answer %q too short to stop inside", plain.Content[0].Text)
	}
	p := msgParams("tgi", "Tell me a story.", 12)
	p.StopSequences = []string{"no such words", words[3]}
	m, err := c.Messages.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if m.StopReason != anthropic.StopReasonStopSequence || m.StopSequence != words[3] || strings.Contains(m.Content[0].Text, words[3]) {
		t.Errorf("stop_reason %q stop_sequence %q text %q; want stop_sequence %q before it", m.StopReason, m.StopSequence, m.Content[0].Text, words[3])
	}
	acc := accumulated(t, c.Messages.NewStreaming(ctx, p))
	if acc.StopReason != m.StopReason || acc.StopSequence != m.StopSequence || len(acc.Content) != 1 || acc.Content[0].Text != m.Content[0].Text {
		t.Errorf("streamed stop_reason %q stop_sequence %q content %+v; want %q %q %q", acc.StopReason, acc.StopSequence, acc.Content, m.StopReason, m.StopSequence, m.Content[0].Text)
	}
	p.StopSequences = []string{"no such words"}
	m, err = c.Messages.New(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if m.StopReason == anthropic.StopReasonStopSequence || m.StopSequence != "" || !strings.Contains(m.RawJSON(), `"stop_sequence":null`) {
		t.Errorf("no stop matched: %s", m.RawJSON())
	}
}
