package providers

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

// benchWebSearchRequest is benchRequest asking for web search, with a location.
var benchWebSearchRequest = []byte(strings.Replace(string(benchRequest), `"tool_choice":"auto"`,
	`"tool_choice":"auto","web_search_options":{"search_context_size":"medium","user_location":{"type":"approximate","approximate":{"city":"Paris","country":"FR","timezone":"Europe/Paris"}}}`, 1))

// BenchmarkAnthropicWebSearch is the cost of web search in the translation: a request
// with web_search_options, an answer with searches and citations, and a stream of them
// read whole (its server tool events, citations and annotations deltas).
func BenchmarkAnthropicWebSearch(b *testing.B) {
	b.Run("request", func(b *testing.B) {
		model := quoteModel("claude-sonnet-4-5-20250929")
		buf := make([]byte, 0, 4096)
		b.ReportAllocs()
		b.SetBytes(int64(len(benchWebSearchRequest)))
		for b.Loop() {
			buf, _ = appendAnthropicRequest(buf[:0], benchWebSearchRequest, model, 1024, claudeModel{}, true)
		}
	})
	b.Run("response", func(b *testing.B) {
		body, err := os.ReadFile("testdata/anthropic/response_web_search.json")
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
	b.Run("stream", func(b *testing.B) {
		raw, err := os.ReadFile("testdata/anthropic/stream_web_search.sse")
		if err != nil {
			b.Fatal(err)
		}
		s := &anthropicStream{r: &sseReader{br: bufio.NewReaderSize(nil, 4096)}}
		in, r := string(raw), strings.NewReader("")
		var ev Event
		b.ReportAllocs()
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			r.Reset(in)
			s.reset()
			s.r.reset(nil, nil, r, false)
			for s.Next(&ev) == nil {
			}
		}
	})
}
