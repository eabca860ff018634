//go:build !race

package providers

import "testing"

// ThinkingRoom runs before every chat request: reading a tool loop's messages for the
// estimate allocates nothing.
func TestThinkingRoomAllocs(t *testing.T) {
	for _, c := range []struct{ name, model, body string }{
		{"tool loop replayed", "claude-opus-5", toolLoopBody("", "", "")},
		{"tool loop with thinking_blocks", "claude-opus-5", toolLoopBody(`,`+loopSigned, "", "")},
		{"escaped role", "claude-opus-5", toolLoopMessages(`{"role":"assist\u0061nt","content":null,`+loopCall+`}`, loopResult)},
		{"long tool loop", "claude-opus-5", longToolLoop},
		{"model without default thinking", "claude-sonnet-4-5", toolLoopBody("", "", "")},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := newTestBackend(t, Config{Provider: "anthropic", BaseURL: "http://127.0.0.1:1/v1", Model: c.model, APIKey: "k", MaxTokens: 1000})
			body := []byte(c.body)
			if n := testing.AllocsPerRun(200, func() { b.ThinkingRoom(body) }); n != 0 {
				t.Errorf("%v allocations per request, want 0", n)
			}
		})
	}
}
