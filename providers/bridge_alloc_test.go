//go:build !race

package providers

import "testing"

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
}
