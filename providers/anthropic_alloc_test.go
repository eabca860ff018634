//go:build !race

package providers

import (
	"os"
	"testing"
)

// Allocation budgets of the translation's hot paths; the benchmarks show the same.
func TestAnthropicAllocs(t *testing.T) {
	t.Run("stream chunk", func(t *testing.T) {
		for _, c := range []struct{ name, prefix, chunk string }{
			{"text", benchStart, benchText}, {"tool arguments", benchStart + benchToolOpen, benchJSON},
			{"thinking", benchStart + benchThinkOpen, benchThinking},
		} {
			cr := newChunkReader(c.prefix, c.chunk, 1000)
			var ev Event
			if n := testing.AllocsPerRun(500, func() { cr.next(t, &ev) }); n != 0 {
				t.Errorf("%s: %.1f allocations per chunk, budget 0", c.name, n)
			}
		}
	})
	t.Run("response", func(t *testing.T) {
		for _, file := range []string{"response_tool_use.json", "response_thinking_tool_use.json"} {
			body, err := os.ReadFile("testdata/anthropic/" + file)
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 0, 4096)
			var u Usage
			if n := testing.AllocsPerRun(100, func() { buf, _ = appendChatCompletion(buf[:0], body, 1, &u) }); n != 0 {
				t.Errorf("%s: %.1f allocations per answer, budget 0", file, n)
			}
		}
	})
	t.Run("request", func(t *testing.T) {
		// encoding/json's decoding of the request, the one full decode on this path:
		// its allocations grow with the messages and tool calls, not with thinking
		// (reasoning_effort, thinking and thinking_blocks stay raw bytes).
		// Adaptive thinking, output_config and the sampling settings left out add none.
		newest := claudeModelOf("claude-opus-4-7")
		for _, c := range []struct {
			name   string
			body   []byte
			cm     claudeModel
			budget float64
		}{
			{"tools", benchRequest, claudeModel{}, 30}, {"thinking tool loop", benchThinkingRequest, claudeModel{}, 45},
			{"tools, Opus 4.7", benchRequest, newest, 30}, {"thinking tool loop, Opus 4.7", benchThinkingRequest, newest, 45},
		} {
			model := quoteModel("m")
			buf := make([]byte, 0, 4096)
			if n := testing.AllocsPerRun(100, func() { buf, _ = appendAnthropicRequest(buf[:0], c.body, model, 16, c.cm, true) }); n > c.budget {
				t.Errorf("%s: %.1f allocations per request, budget %.0f", c.name, n, c.budget)
			}
		}
	})
}
