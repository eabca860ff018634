package mockllm

import (
	"strings"
	"testing"
)

// TestMessagesStreamErrorEvent: x-mock-error-after N ends a stream after N content
// deltas with the error event the Messages API sends when it fails mid-answer
// (overloaded_error), then ends the stream cleanly: no content_block_stop,
// message_delta or message_stop.
func TestMessagesStreamErrorEvent(t *testing.T) {
	h := startAnthropic(t)
	for _, tc := range []struct {
		name, body, after string
		deltas            int
	}{
		{"before any delta", messagesBody("stream a story", `"stream":true`), "0", 0},
		{"after two text deltas", messagesBody("stream a story", `"stream":true`), "2", 2},
		{"inside the tool input", messagesBody("hello", weatherTool+`,"tool_choice":{"type":"any"},"stream":true`), "2", 2},
		{"past the content: before the last block's stop", `{"model":"claude-mock","max_tokens":3,"stream":true,"messages":[{"role":"user","content":"x"}]}`, "99", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := h.s.Stats().InjectedErrors
			resp, b, err := h.do("POST", "/v1/messages", tc.body, append(anthHeaders, "x-mock-error-after", tc.after)...)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("err %v, status %v: %s", err, resp, b)
			}
			evs := parseSSE(t, b)
			last := evs[len(evs)-1]
			if last.name != "error" || last.data != `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}` {
				t.Errorf("last event %+v, want the overloaded error", last)
			}
			deltas := 0
			for _, ev := range evs[:len(evs)-1] {
				switch {
				case ev.name == "content_block_delta" && !strings.Contains(ev.data, `"partial_json":""`):
					deltas++
				case ev.name == "content_block_stop" && tc.after == "99", ev.name == "message_delta", ev.name == "message_stop", ev.name == "error":
					t.Errorf("event %s before the error", ev.name)
				}
			}
			if deltas != tc.deltas {
				t.Errorf("%d content deltas before the error, want %d: %s", deltas, tc.deltas, b)
			}
			if n := h.s.Stats().InjectedErrors - before; n != 1 {
				t.Errorf("injected errors counted %d, want 1", n)
			}
		})
	}
}
