package providers

import (
	"bufio"
	"io"
	"strings"
	"testing"
)

// thinkingStream is a Messages API stream with one thinking block of n bytes of text
// and a signature of sig bytes.
func thinkingStream(n, sig int) string {
	var b strings.Builder
	b.WriteString("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-x\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n")
	b.WriteString("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}\n\n")
	const chunk = 4 << 10
	for sent := 0; sent < n; sent += chunk {
		b.WriteString("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"")
		b.WriteString(strings.Repeat("a", min(chunk, n-sent)))
		b.WriteString("\"}}\n\n")
	}
	b.WriteString("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"")
	b.WriteString(strings.Repeat("c", sig))
	b.WriteString("\"}}\n\n")
	b.WriteString("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n" +
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":9}}\n\n" +
		"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
	return b.String()
}

// A translation goes back to anthropicStreamPool without the buffers a long thinking
// block grew (its text and signature are copied whole into the block's final chunk):
// every pooled stream would otherwise keep the longest block it ever relayed. An
// ordinary stream keeps its buffers, so that the next one allocates nothing.
func TestAnthropicStreamResetDropsLongThinkingBuffers(t *testing.T) {
	for _, tc := range []struct {
		name      string
		text, sig int
		dropped   bool
	}{
		{name: "long thinking text", text: 512 << 10, sig: 64, dropped: true},
		{name: "long signature", text: 64, sig: 2 * maxPooledBuffer, dropped: true},
		{name: "short thinking kept", text: 1 << 10, sig: 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &anthropicStream{r: &sseReader{br: bufio.NewReaderSize(strings.NewReader(thinkingStream(tc.text, tc.sig)), 4096)}}
			for {
				var ev Event
				err := s.Next(&ev)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			grown := cap(s.out)
			if tc.dropped && grown <= maxPooledBuffer {
				t.Fatalf("the block's chunk took %d bytes of out, no more than maxPooledBuffer: the case tests nothing", grown)
			}
			s.reset()
			for name, c := range map[string]int{"out": cap(s.out), "head": cap(s.head), "thinking text": cap(s.think.text), "signature": cap(s.think.sig)} {
				if c > maxPooledBuffer {
					t.Errorf("%s keeps %d bytes for the pool, over maxPooledBuffer (%d)", name, c, maxPooledBuffer)
				}
			}
			if !tc.dropped && cap(s.out) != grown {
				t.Errorf("out's %d-byte buffer not kept for the next stream (cap %d)", grown, cap(s.out))
			}
		})
	}
}
