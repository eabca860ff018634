//go:build !race

package providers

import "testing"

// TestMessagesBridgeAllocs pins the Messages bridge's hot paths to no allocation: the
// request's translation, the answer's, and a whole stream once its pooled state is
// warm (BenchmarkMessagesBridge* show the same).
func TestMessagesBridgeAllocs(t *testing.T) {
	buf := make([]byte, 0, 4096)
	body := []byte(benchMsgsBody)
	model := quoteModel("chat")
	if n := testing.AllocsPerRun(200, func() {
		buf, _, _ = appendMessagesChat(buf[:0], body, model, true, continuousUsageJSON)
	}); n != 0 {
		t.Errorf("request: %.1f allocations, budget 0", n)
	}
	for _, body := range []string{claudeCodeFirstTurn, claudeCodeToolSearchTurn} {
		body := []byte(body)
		if n := testing.AllocsPerRun(200, func() {
			buf, _, _ = appendMessagesChat(buf[:0], body, model, true, continuousUsageJSON)
		}); n != 0 {
			t.Errorf("Claude Code's request, its system messages folded: %.1f allocations, budget 0", n)
		}
	}
	chat := []byte(benchMsgsAnswer)
	u := Usage{Input: 412, Output: 38}
	if n := testing.AllocsPerRun(200, func() {
		buf, _ = appendMessagesAnswer(buf[:0], chat, model, &u)
	}); n != 0 {
		t.Errorf("answer: %.1f allocations, budget 0", n)
	}
	in := benchMsgsDeltas()
	runMsgStream(t, in, false)
	if n := testing.AllocsPerRun(200, func() { runMsgStream(t, in, false) }); n != 0 {
		t.Errorf("stream of 16 text deltas and a tool call: %.1f allocations, budget 0", n)
	}
	in = benchMsgsContinuous()
	runMsgStream(t, in, true)
	if n := testing.AllocsPerRun(200, func() { runMsgStream(t, in, true) }); n != 0 {
		t.Errorf("stream with usage on every chunk: %.1f allocations, budget 0", n)
	}
}
