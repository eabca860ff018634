//go:build !race

package providers

import "testing"

// TestCompletionsViaChatAllocs pins the translation of a completions call through chat
// to no allocation: the request, and each chunk of its stream, are written into reused
// buffers (BenchmarkCompletionsViaChat shows the same).
func TestCompletionsViaChatAllocs(t *testing.T) {
	model := quoteModel("gpt-4o-mini")
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(200, func() { buf, _ = appendChatRequest(buf[:0], benchCompletionsBody, model, 0.5, true) }); n != 0 {
		t.Errorf("request: %.1f allocations, budget 0", n)
	}
	for _, delta := range []bool{false, true} {
		if n := testing.AllocsPerRun(200, func() { buf, _ = appendTextCompletion(buf[:0], benchChatChunk, strTextCompletion, delta) }); n != 0 {
			t.Errorf("chunk (delta %v): %.1f allocations, budget 0", delta, n)
		}
	}
}
