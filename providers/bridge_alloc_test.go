//go:build !race

package providers

import (
	"bytes"
	"testing"
)

// TestBridgeAllocs pins the bridge's hot paths to no allocation: the request's
// translation, the answer's, and a whole stream once its pooled state is warm, so
// that each of its events allocates nothing (BenchmarkBridgeStream shows the same).
func TestBridgeAllocs(t *testing.T) {
	model := quoteModel("claude")
	buf := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(200, func() {
		var r respRequest
		buf, _, _, _ = appendBridgeRequest(buf[:0], benchBridgeBody, &r, model, true, true)
	}); n != 0 {
		t.Errorf("request: %.1f allocations, budget 0", n)
	}
	var r respRequest
	_ = r.read(benchBridgeBody)
	u := Usage{Input: 412, Output: 38}
	if n := testing.AllocsPerRun(200, func() {
		e := bridgeEchoPool.Get().(*bridgeEcho)
		e.render(&r)
		buf, _ = appendBridgeAnswer(buf[:0], benchBridgeAnswerBody, e, model, &u)
		e.release()
	}); n != 0 {
		t.Errorf("answer: %.1f allocations, budget 0", n)
	}
	in := benchDeltas()
	runBridgeStream(t, in, &r)
	if n := testing.AllocsPerRun(200, func() { runBridgeStream(t, in, &r) }); n != 0 {
		t.Errorf("stream of 32 deltas: %.1f allocations, budget 0", n)
	}
	in = benchInterleavedDeltas()
	runBridgeStream(t, in, &r)
	if n := testing.AllocsPerRun(200, func() { runBridgeStream(t, in, &r) }); n != 0 {
		t.Errorf("stream of four tool calls interleaved: %.1f allocations, budget 0", n)
	}
	codex := []byte(codexTurn)
	if n := testing.AllocsPerRun(200, func() {
		var r respRequest
		buf, _, _, _ = appendBridgeRequest(buf[:0], codex, &r, model, true, true)
	}); n != 0 {
		t.Errorf("Codex's request, a namespace tool flattened: %.1f allocations, budget 0", n)
	}
	var cr respRequest
	_ = cr.read(codex)
	in = newChunkEvents(delta(`{"role":"assistant","content":""}`, ""),
		delta(`{"tool_calls":[{"index":0,"id":"call_0","type":"function","function":{"name":"multi_agent_v1__close_agent","arguments":"{\"target\":"}}]}`, ""),
		delta(`{"tool_calls":[{"index":0,"function":{"arguments":"\"a1\"}"}}]}`, ""),
		delta(`{"tool_calls":[{"index":1,"id":"call_1","type":"function","function":{"name":"exec_command","arguments":"{}"}}]}`, ""),
		delta(`{}`, "tool_calls"), usageChunk, "[DONE]")
	runBridgeStream(t, in, &cr)
	if n := testing.AllocsPerRun(200, func() { runBridgeStream(t, in, &cr) }); n != 0 {
		t.Errorf("stream calling a namespaced function: %.1f allocations, budget 0", n)
	}
}

// TestBridgeThinkingAllocs pins the thinking round trip to no allocation: a reasoning
// item's encrypted_content decoded into the chat request, an answer's thinking blocks
// encoded into it, buffered and streamed (a stream ended at its usage chunk, the
// upstream's cut after it).
func TestBridgeThinkingAllocs(t *testing.T) {
	model := quoteModel("claude")
	buf := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(200, func() {
		var r respRequest
		buf, _, _, _ = appendBridgeRequest(buf[:0], benchBridgeThinkingBody, &r, model, true, true)
	}); n != 0 {
		t.Errorf("request: %.1f allocations, budget 0", n)
	}
	if !bytes.Contains(buf, []byte(`"thinking_blocks":`+benchThinkingBlocks)) {
		t.Fatalf("no thinking_blocks in %s", buf)
	}
	// Another provider's reasoning item (OpenAI's encrypted content), left out.
	foreign := bytes.Replace(benchBridgeThinkingBody, []byte(`"encrypted_content":"`), []byte(`"encrypted_content":"gAAAAABoMZ8rVb0_Qw-Kd7x1cE3h`), 1)
	if n := testing.AllocsPerRun(200, func() {
		var r respRequest
		buf, _, _, _ = appendBridgeRequest(buf[:0], foreign, &r, model, true, true)
	}); n != 0 {
		t.Errorf("request with another provider's reasoning item: %.1f allocations, budget 0", n)
	}
	if bytes.Contains(buf, []byte(`"thinking_blocks"`)) {
		t.Fatalf("thinking_blocks from another provider's item: %s", buf)
	}
	var r respRequest
	_ = r.read(benchBridgeBody)
	u := Usage{Input: 412, Output: 96}
	if n := testing.AllocsPerRun(200, func() {
		e := bridgeEchoPool.Get().(*bridgeEcho)
		e.render(&r)
		buf, _ = appendBridgeAnswer(buf[:0], benchBridgeThinkingAnswerBody, e, model, &u)
		e.release()
	}); n != 0 {
		t.Errorf("answer: %.1f allocations, budget 0", n)
	}
	if !bytes.Contains(buf, []byte(`"encrypted_content":"`)) {
		t.Fatalf("no encrypted_content in %s", buf)
	}
	in := benchThinkingDeltas()
	runBridgeStream(t, in, &r)
	if n := testing.AllocsPerRun(200, func() { runBridgeStream(t, in, &r) }); n != 0 {
		t.Errorf("stream with thinking blocks, cut after its usage: %.1f allocations, budget 0", n)
	}
}
