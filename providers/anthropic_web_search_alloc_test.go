//go:build !race

package providers

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

// Allocation budgets of the web search paths: the request's web_search_options cost
// its decoder only the copy of its raw bytes, and an answer's or a stream's citations
// none.
func TestAnthropicWebSearchAllocs(t *testing.T) {
	t.Run("request", func(t *testing.T) {
		model := quoteModel("m")
		buf := make([]byte, 0, 4096)
		base := testing.AllocsPerRun(100, func() { buf, _ = appendAnthropicRequest(buf[:0], benchRequest, model, 16, claudeModel{}, true) })
		n := testing.AllocsPerRun(100, func() {
			buf, _ = appendAnthropicRequest(buf[:0], benchWebSearchRequest, model, 16, claudeModel{}, true)
		})
		if n > base+1 {
			t.Errorf("%.1f allocations with web_search_options, %.1f without: budget 1 more", n, base)
		}
	})
	t.Run("response", func(t *testing.T) {
		body, err := os.ReadFile("testdata/anthropic/response_web_search.json")
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 0, 4096)
		var u Usage
		if n := testing.AllocsPerRun(100, func() { buf, _ = appendChatCompletion(buf[:0], body, 1, &u, nil) }); n != 0 {
			t.Errorf("%.1f allocations per answer, budget 0", n)
		}
	})
	t.Run("stream", func(t *testing.T) {
		raw, err := os.ReadFile("testdata/anthropic/stream_web_search.sse")
		if err != nil {
			t.Fatal(err)
		}
		s := &anthropicStream{r: &sseReader{br: bufio.NewReaderSize(nil, 4096)}}
		in, r := string(raw), strings.NewReader("")
		var ev Event
		if n := testing.AllocsPerRun(100, func() {
			r.Reset(in)
			s.reset()
			s.r.reset(nil, nil, r, false)
			for s.Next(&ev) == nil {
			}
		}); n != 0 {
			t.Errorf("%.1f allocations per stream, budget 0", n)
		}
	})
}
