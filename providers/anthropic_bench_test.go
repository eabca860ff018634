package providers

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

const (
	benchStart     = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01XFDUDYJgAACzvnptvVoYEL\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5-20250929\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n"
	benchToolOpen  = "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01T1x1fJ34qAmk2tNTrN7Up6\",\"name\":\"get_weather\",\"input\":{}}}\n\n"
	benchText      = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" word\"}}\n\n"
	benchThinkOpen = "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}\n\n"
	benchThinking  = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\" step\"}}\n\n"
	benchJSON      = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \"}}\n\n"
)

// chunkReader replays prefix followed by n copies of chunk through one stream, over and
// over, so that every Next after the first few is one chunk's translation.
type chunkReader struct {
	s      *anthropicStream
	r      *strings.Reader
	in     string
	events int
	n      int
}

func newChunkReader(prefix, chunk string, n int) *chunkReader {
	c := &chunkReader{s: &anthropicStream{r: &sseReader{br: bufio.NewReaderSize(nil, 4096)}},
		r: strings.NewReader(""), in: prefix + strings.Repeat(chunk, n),
		// The start of a thinking block without text emits no chunk.
		events: strings.Count(prefix, "\n\n") - strings.Count(prefix, `"thinking":""`) + n}
	c.n = c.events
	return c
}

func (c *chunkReader) next(tb testing.TB, ev *Event) {
	if c.n == c.events {
		c.r.Reset(c.in)
		c.s.r.br.Reset(c.r)
		c.s.reset()
		c.n = 0
	}
	c.n++
	if err := c.s.Next(ev); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkAnthropicStream is the cost of one chunk: reading an Anthropic event and
// writing its chat.completion.chunk.
func BenchmarkAnthropicStream(b *testing.B) {
	for _, c := range []struct{ name, prefix, chunk string }{
		{"text_delta", benchStart, benchText},
		{"input_json_delta", benchStart + benchToolOpen, benchJSON},
		{"thinking_delta", benchStart + benchThinkOpen, benchThinking},
	} {
		b.Run(c.name, func(b *testing.B) {
			cr := newChunkReader(c.prefix, c.chunk, 1000)
			var ev Event
			b.ReportAllocs()
			b.SetBytes(int64(len(c.chunk)))
			for b.Loop() {
				cr.next(b, &ev)
			}
		})
	}
}

func BenchmarkAnthropicResponse(b *testing.B) {
	for _, c := range []struct{ name, file string }{
		{"tool_use", "response_tool_use.json"}, {"thinking", "response_thinking_tool_use.json"},
	} {
		b.Run(c.name, func(b *testing.B) {
			body, err := os.ReadFile("testdata/anthropic/" + c.file)
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 0, 4096)
			var u Usage
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				buf, _ = appendChatCompletion(buf[:0], body, 1700000000, &u, nil)
			}
		})
	}
}

var benchRequest = []byte(`{"model":"chat","messages":[{"role":"system","content":"You are a helpful assistant."},` +
	`{"role":"user","content":"What is the weather in Paris today, and should I take an umbrella?"}],` +
	`"tools":[{"type":"function","function":{"name":"get_weather","description":"Current weather for a city.","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}],` +
	`"tool_choice":"auto","temperature":0.7,"max_tokens":256,"stream":true,"user":"u-1"}`)

// benchThinkingRequest is the second step of a tool-use loop with thinking on: the
// assistant turn carries its thinking_blocks back.
var benchThinkingRequest = []byte(`{"model":"chat","reasoning_effort":"medium","messages":[{"role":"system","content":"You are a helpful assistant."},` +
	`{"role":"user","content":"What is the weather in Paris today, and should I take an umbrella?"},` +
	`{"role":"assistant","content":null,"reasoning_content":"The user wants the weather in Paris.","thinking_blocks":[{"type":"thinking","thinking":"The user wants the weather in Paris.","signature":"EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"}],` +
	`"tool_calls":[{"id":"toolu_01A09q90qw90lq917835lq9","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},` +
	`{"role":"tool","tool_call_id":"toolu_01A09q90qw90lq917835lq9","content":"18C, light rain"}],` +
	`"tools":[{"type":"function","function":{"name":"get_weather","description":"Current weather for a city.","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}],` +
	`"tool_choice":"auto","max_tokens":4096,"stream":true,"user":"u-1"}`)

func BenchmarkAnthropicRequest(b *testing.B) {
	for _, c := range []struct {
		name string
		body []byte
	}{{"tools", benchRequest}, {"thinking_tool_loop", benchThinkingRequest}} {
		b.Run(c.name, func(b *testing.B) {
			model := quoteModel("claude-sonnet-4-5-20250929")
			buf := make([]byte, 0, 4096)
			b.ReportAllocs()
			b.SetBytes(int64(len(c.body)))
			for b.Loop() {
				buf, _ = appendAnthropicRequest(buf[:0], c.body, model, 1024, claudeModel{}, true)
			}
		})
	}
}
