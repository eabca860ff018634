//go:build !race

package providers

import "testing"

// TestOutputBytesAllocs: sizing the generated text of a stream's events costs no
// allocation: a chat chunk's (text, reasoning, tool call arguments), a Messages API
// event's, a Responses API event's.
func TestOutputBytesAllocs(t *testing.T) {
	var ev Event
	for _, chunk := range []string{
		`{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi","reasoning_content":"hmm"}}]}`,
		`{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":1}"}}]}}]}`,
	} {
		b := []byte(chunk)
		if n := testing.AllocsPerRun(1000, func() { ev = Event{}; inspectChunk(b, &ev) }); n != 0 || ev.OutputBytes == 0 {
			t.Errorf("inspectChunk %s: %v allocations, %d bytes", chunk, n, ev.OutputBytes)
		}
	}
	var s sseReader
	msg := []byte(`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}`)
	if n := testing.AllocsPerRun(1000, func() { ev = Event{}; s.inspectMessageEvent(msg, &ev) }); n != 0 || ev.OutputBytes != 5 {
		t.Errorf("inspectMessageEvent: %v allocations, %d bytes", n, ev.OutputBytes)
	}
	resp := []byte(`{"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"Hello"}`)
	if n := testing.AllocsPerRun(1000, func() { ev = Event{}; inspectResponseEvent(resp, &ev) }); n != 0 || ev.OutputBytes != 5 {
		t.Errorf("inspectResponseEvent: %v allocations, %d bytes", n, ev.OutputBytes)
	}
}

// TestAnswerOutputBytesAllocs: sizing the generated text of an answer that came
// without usage costs no allocation either.
func TestAnswerOutputBytesAllocs(t *testing.T) {
	var res Result
	for _, answer := range []string{
		`{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hi","reasoning_content":"hmm","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]}}]}`,
		`{"id":"resp_1","object":"response","status":"completed","output":[{"type":"message","content":[{"type":"output_text","text":"Hi"}]}]}`,
	} {
		b := []byte(answer)
		if n := testing.AllocsPerRun(1000, func() { res = Result{}; scanAnswerTo(b, &res.Usage, &res) }); n != 0 || res.OutputBytes == 0 {
			t.Errorf("scanAnswerTo %s: %v allocations, %d bytes", answer, n, res.OutputBytes)
		}
	}
	b := []byte(`{"id":"msg_1","type":"message","content":[{"type":"text","text":"Hi"},{"type":"tool_use","id":"t","name":"f","input":{"a":1}}]}`)
	var u anthropicUsage
	if n := testing.AllocsPerRun(1000, func() { res = Result{}; scanMessage(b, &u, &res) }); n != 0 || res.OutputBytes == 0 {
		t.Errorf("scanMessage: %v allocations, %d bytes", n, res.OutputBytes)
	}
}
