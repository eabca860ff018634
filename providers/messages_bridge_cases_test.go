package providers

import (
	"slices"
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

// Chat streams as servers other than vLLM write them, each read as the Anthropic SDK
// reads the bridged stream: usage on the finish_reason chunk (Mistral, Gemini), whole
// calls without an index, text and two calls in one chunk, Azure's content filter
// chunk after the finish, refusal deltas, calls numbered from 1, an escape cut between
// pieces: the message's blocks, stop reason and usage as the chat stream said them.
func TestMessagesBridgeCaseProbeStreams(t *testing.T) {
	cases := []struct {
		name string
		data []string
		// content is the message's blocks, "text:T" or "tool:NAME INPUT" each;
		// stop its stop_reason, in and out its usage.
		content []string
		stop    string
		in, out int64
	}{
		{"usage on finish", []string{delta(`{"role":"assistant","content":"Hi"}`, ""),
			`{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}`,
			`{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}`, "[DONE]"},
			[]string{"text:Hi"}, "end_turn", 5, 1},
		{"no index whole calls", []string{
			`{"choices":[{"index":0,"delta":{"tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}}]},"finish_reason":null}]}`,
			`{"choices":[{"index":0,"delta":{"tool_calls":[{"id":"b","type":"function","function":{"name":"g","arguments":"{\"y\":2}"}}]},"finish_reason":null}]}`,
			delta(`{}`, "tool_calls"), usageChunk, "[DONE]"},
			[]string{`tool:f {"x":1}`, `tool:g {"y":2}`}, "tool_use", 5, 4},
		{"two calls one chunk", []string{
			`{"choices":[{"index":0,"delta":{"content":"ok","tool_calls":[{"index":0,"id":"a","type":"function","function":{"name":"f","arguments":"{}"}},{"index":1,"id":"b","type":"function","function":{"name":"g","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}`,
			usageChunk, "[DONE]"},
			[]string{"text:ok", "tool:f {}", "tool:g {}"}, "tool_use", 5, 4},
		{"azure filter after finish", []string{delta(`{"role":"assistant","content":"Hi"}`, ""), delta(`{}`, "stop"),
			`{"choices":[{"index":0,"delta":{},"finish_reason":null,"content_filter_results":{}}]}`, usageChunk, "[DONE]"},
			[]string{"text:Hi"}, "end_turn", 5, 4},
		{"refusal deltas", []string{delta(`{"role":"assistant","refusal":""}`, ""), delta(`{"refusal":"I can't"}`, ""), delta(`{}`, "stop"), usageChunk, "[DONE]"},
			[]string{"text:I can't"}, "refusal", 5, 4},
		{"calls index 1 start", []string{callDelta(1, "a", "f", `{}`), callDelta(2, "b", "g", `{}`), delta(`{}`, "tool_calls"), usageChunk, "[DONE]"},
			[]string{"tool:f {}", "tool:g {}"}, "tool_use", 5, 4},
		{"args split escapes", []string{callDelta(0, "a", "f", `{"q":"a\"`), callDelta(0, "", "", `b"}`), callDelta(1, "b", "g", `{}`), delta(`{}`, "tool_calls"), usageChunk, "[DONE]"},
			[]string{`tool:f {"q":"a\"b"}`, "tool:g {}"}, "tool_use", 5, 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := msgStreamOf(c.data...)
			got := readBridged(s)
			_ = s.Close()
			if got.err != nil {
				t.Fatalf("stream failed: %v", got.err)
			}
			m, _ := accumulateMsg(t, got.events)
			var content []string
			for _, b := range m.Content {
				switch b.Type {
				case "text":
					content = append(content, "text:"+b.Text)
				case "tool_use":
					content = append(content, "tool:"+b.Name+" "+string(b.Input))
				default:
					content = append(content, b.Type)
				}
			}
			if !slices.Equal(content, c.content) || string(m.StopReason) != c.stop ||
				m.Usage.InputTokens != c.in || m.Usage.OutputTokens != c.out {
				t.Errorf("content %q, stop %q, usage %d in %d out; want %q, %q, %d, %d",
					content, m.StopReason, m.Usage.InputTokens, m.Usage.OutputTokens, c.content, c.stop, c.in, c.out)
			}
		})
	}
}
