//go:build !race

package providers

import "testing"

var benchLegacyChunk = []byte(`{"id":"cmpl-1","object":"text_completion","created":1,"model":"mixtral","choices":[{"index":0,"text":" gateway","logprobs":null,"finish_reason":null}]}`)

// TestMLflowCompletionChunkAllocs pins MLflow's form of a legacy completions chunk to
// no allocation: each chunk is written into the stream's reused buffer.
func TestMLflowCompletionChunkAllocs(t *testing.T) {
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(200, func() { buf, _ = appendCompletion(buf[:0], benchLegacyChunk, strTextCompletionChunk, true, true) }); n != 0 {
		t.Errorf("chunk: %.1f allocations, budget 0", n)
	}
}

func BenchmarkMLflowCompletionChunk(b *testing.B) {
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = appendCompletion(buf[:0], benchLegacyChunk, strTextCompletionChunk, true, true)
	}
}
