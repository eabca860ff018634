package providers

import (
	"testing"
)

// A chat server streams parallel tool calls interleaved, a later call beginning only
// after the first one's arguments ended (0, 1, 0, 2, 1, 2). The bridge writes the
// held call 1 "whole" as soon as call 0 closes, though its arguments are cut, then
// fails the stream when call 1's next piece comes (errToolReopened). README (Messages
// API): "each later one whole when the one before it ends (a chat server may
// interleave parallel calls' pieces, 0, 1, 0, 1)" — expected three whole tool_use blocks.
func TestMessagesBridgeCaseStaggeredInterleavedCalls(t *testing.T) {
	t.Parallel()
	s := msgStreamOf(
		callDelta(0, "call_a", "get_weather", `{"city":`),
		callDelta(1, "call_b", "get_time", `{"tz":`),
		callDelta(0, "", "", `"Paris"}`),
		callDelta(2, "call_c", "get_news", `{"topic":`),
		callDelta(1, "", "", `"CET"}`),
		callDelta(2, "", "", `"AI"}`),
		delta(`{}`, "tool_calls"), usageChunk, "[DONE]")
	got := readBridged(s)
	_ = s.Close()
	if got.err != nil {
		t.Fatalf("got the stream failing with %v; want three tool_use blocks", got.err)
	}
	m, _ := accumulateMsg(t, got.events)
	var inputs []string
	for _, b := range m.Content {
		if b.Type == "tool_use" {
			inputs = append(inputs, b.Name+" "+string(b.Input))
		}
	}
	want := []string{`get_weather {"city":"Paris"}`, `get_time {"tz":"CET"}`, `get_news {"topic":"AI"}`}
	if len(inputs) != 3 || inputs[0] != want[0] || inputs[1] != want[1] || inputs[2] != want[2] {
		t.Errorf("got tool calls %q; want %q", inputs, want)
	}
}

func TestMessagesBridgeCaseProbeStreams(t *testing.T) {
	cases := map[string][]string{
		"usage on finish": {delta(`{"role":"assistant","content":"Hi"}`, ""),
			`{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}`,
			`{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}`, "[DONE]"},
		"no index whole calls": {
			`{"choices":[{"index":0,"delta":{"tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}}]},"finish_reason":null}]}`,
			`{"choices":[{"index":0,"delta":{"tool_calls":[{"id":"b","type":"function","function":{"name":"g","arguments":"{\"y\":2}"}}]},"finish_reason":null}]}`,
			delta(`{}`, "tool_calls"), usageChunk, "[DONE]"},
		"two calls one chunk": {
			`{"choices":[{"index":0,"delta":{"content":"ok","tool_calls":[{"index":0,"id":"a","type":"function","function":{"name":"f","arguments":"{}"}},{"index":1,"id":"b","type":"function","function":{"name":"g","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}`,
			usageChunk, "[DONE]"},
		"azure filter after finish": {delta(`{"role":"assistant","content":"Hi"}`, ""), delta(`{}`, "stop"),
			`{"choices":[{"index":0,"delta":{},"finish_reason":null,"content_filter_results":{}}]}`, usageChunk, "[DONE]"},
		"refusal deltas":      {delta(`{"role":"assistant","refusal":""}`, ""), delta(`{"refusal":"I can't"}`, ""), delta(`{}`, "stop"), usageChunk, "[DONE]"},
		"calls index 1 start": {callDelta(1, "a", "f", `{}`), callDelta(2, "b", "g", `{}`), delta(`{}`, "tool_calls"), usageChunk, "[DONE]"},
		"args split escapes":  {callDelta(0, "a", "f", `{"q":"a\"`), callDelta(0, "", "", `b"}`), callDelta(1, "b", "g", `{}`), delta(`{}`, "tool_calls"), usageChunk, "[DONE]"},
	}
	for name, data := range cases {
		s := msgStreamOf(data...)
		got := readBridged(s)
		_ = s.Close()
		var lines []string
		for _, ev := range got.events {
			lines = append(lines, string(ev.Data))
		}
		t.Logf("%s: err=%v\n%s", name, got.err, joinLines(lines))
	}
}

func joinLines(l []string) string {
	out := ""
	for _, s := range l {
		out += "  " + s + "\n"
	}
	return out
}
