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
		} {
			cr := newChunkReader(c.prefix, c.chunk, 1000)
			var ev Event
			if n := testing.AllocsPerRun(500, func() { cr.next(t, &ev) }); n != 0 {
				t.Errorf("%s: %.1f allocations per chunk, budget 0", c.name, n)
			}
		}
	})
	t.Run("response", func(t *testing.T) {
		body, err := os.ReadFile("testdata/anthropic/response_tool_use.json")
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 0, 4096)
		var u Usage
		if n := testing.AllocsPerRun(100, func() { buf, _ = appendChatCompletion(buf[:0], body, 1, &u) }); n != 0 {
			t.Errorf("%.1f allocations per answer, budget 0", n)
		}
	})
	t.Run("request", func(t *testing.T) {
		// encoding/json's decoding of the request, the one full decode on this path.
		const budget = 30
		model := quoteModel("m")
		buf := make([]byte, 0, 4096)
		if n := testing.AllocsPerRun(100, func() { buf, _ = appendAnthropicRequest(buf[:0], benchRequest, model, 16, true) }); n > budget {
			t.Errorf("%.1f allocations per request, budget %d", n, budget)
		}
	})
}
