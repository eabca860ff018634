//go:build !race

package providers

import (
	"encoding/json"
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
			if n := testing.AllocsPerRun(100, func() { buf, _ = appendChatCompletion(buf[:0], body, 1, &u, nil) }); n != 0 {
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
			{"tools", benchRequest, claudeModel{}, 25}, {"thinking tool loop", benchThinkingRequest, claudeModel{}, 40},
			{"tools, Opus 4.7", benchRequest, newest, 25}, {"thinking tool loop, Opus 4.7", benchThinkingRequest, newest, 40},
		} {
			model := quoteModel("m")
			buf := make([]byte, 0, 4096)
			if n := testing.AllocsPerRun(100, func() { buf, _ = appendAnthropicRequest(buf[:0], c.body, model, 16, c.cm, true) }); n > c.budget {
				t.Errorf("%s: %.1f allocations per request, budget %.0f", c.name, n, c.budget)
			}
		}
	}) // A stop written as a string or left out, and a system message whose content is a
	// string (what every SDK sends), decode nothing and allocate nothing.
	t.Run("stop", func(t *testing.T) {
		buf := make([]byte, 0, 256)
		for _, s := range []string{"", "null", `"\n\nHuman:"`, `["a", " ", "b"]`} {
			raw := json.RawMessage(s)
			if n := testing.AllocsPerRun(200, func() { buf, _ = appendStop(buf[:0], raw) }); n != 0 {
				t.Errorf("stop %s: %.1f allocations, budget 0", raw, n)
			}
		}
	})
	t.Run("system string", func(t *testing.T) {
		msgs := []oaMessage{
			{Role: "system", Content: json.RawMessage(`"You are a helpful assistant."`)},
			{Role: "user", Content: json.RawMessage(`"Tell me a story about a gateway."`)},
		}
		buf := make([]byte, 0, 256)
		if n := testing.AllocsPerRun(200, func() { buf, _ = appendSystem(buf[:0], msgs) }); n != 0 {
			t.Errorf("%.1f allocations for one string system message, budget 0", n)
		}
	})
}
