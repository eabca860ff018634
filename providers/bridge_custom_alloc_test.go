//go:build !race

package providers

import (
	"strings"
	"testing"
)

// TestBridgeCustomToolAllocs pins Codex's custom tools to the bridge's budget of no
// allocation: the request with its freeform tools and custom tool calls, the answer's
// custom_tool_call items, and a stream whose call input is read piece by piece (the
// pooled stream warm), its calls named first or late; an additional_tools item's too.
func TestBridgeCustomToolAllocs(t *testing.T) {
	model := quoteModel("qwen")
	buf := make([]byte, 0, 8192)
	for _, req := range []string{codexCustomTurn, strings.Replace(codexCustomTurn, `"input":[`,
		`"input":[{"type":"additional_tools","role":"developer","tools":[{"type":"namespace","name":"web","tools":[{"type":"custom","name":"run"}]}]},`, 1)} {
		body := []byte(req)
		if n := testing.AllocsPerRun(200, func() {
			var r respRequest
			buf, _, _, _ = appendBridgeRequest(buf[:0], body, &r, model, true, true)
		}); n != 0 {
			t.Errorf("request: %.1f allocations, budget 0", n)
		}
		r := translatedRequest(t, req)
		chat := []byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[` +
			`{"id":"call_0","type":"function","function":{"name":"apply_patch","arguments":` + chatArguments(patchInput) + `}},` +
			`{"id":"call_1","type":"function","function":{"name":"web__run","arguments":"{\"input\":\"x\"}"}}]},` +
			`"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}`)
		u := Usage{Input: 9, Output: 4}
		if n := testing.AllocsPerRun(200, func() {
			e := bridgeEchoPool.Get().(*bridgeEcho)
			e.render(r)
			buf, _ = appendBridgeAnswer(buf[:0], chat, e, model, &u)
			e.release()
		}); n != 0 {
			t.Errorf("answer: %.1f allocations, budget 0", n)
		}
		data := []string{delta(`{"role":"assistant","content":""}`, ""),
			delta(`{"tool_calls":[{"index":0,"id":"call_0","type":"function","function":{"name":"apply_patch","arguments":""}}]}`, "")}
		for _, p := range splitArguments(chatArguments(patchInput), 4) {
			data = append(data, delta(`{"tool_calls":[{"index":0,"function":{"arguments":`+p+`}}]}`, ""))
		}
		data = append(data, delta(`{"tool_calls":[{"index":1,"id":"call_1","type":"function","function":{"name":"web__run","arguments":"{\"input\":\"x\"}"}}]}`, ""),
			delta(`{}`, "tool_calls"), usageChunk, "[DONE]")
		in := newChunkEvents(data...)
		runBridgeStream(t, in, r)
		if n := testing.AllocsPerRun(200, func() { runBridgeStream(t, in, r) }); n != 0 {
			t.Errorf("stream of a custom tool call: %.1f allocations, budget 0", n)
		}
		// The same calls named late (after their first pieces, the second after the
		// first's name), held till then.
		late := []string{data[0], delta(`{"tool_calls":[{"index":0,"id":"call_0","type":"function","function":{"arguments":""}}]}`, "")}
		late = append(late, data[2:5]...)
		late = append(late, delta(`{"tool_calls":[{"index":1,"id":"call_1","type":"function","function":{"arguments":"{\"input\":"}}]}`, ""),
			delta(`{"tool_calls":[{"index":0,"function":{"name":"apply_patch"}}]}`, ""))
		late = append(late, data[5:len(data)-4]...)
		late = append(late, delta(`{"tool_calls":[{"index":1,"function":{"name":"web__run","arguments":"\"x\"}"}}]}`, ""),
			delta(`{}`, "tool_calls"), usageChunk, "[DONE]")
		in = newChunkEvents(late...)
		runBridgeStream(t, in, r)
		if n := testing.AllocsPerRun(200, func() { runBridgeStream(t, in, r) }); n != 0 {
			t.Errorf("stream of custom tool calls named late: %.1f allocations, budget 0", n)
		}
	}
}
