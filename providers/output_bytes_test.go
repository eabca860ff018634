package providers

import (
	"testing"
)

// What a stream's events say of the text they carry (Event.OutputBytes: the inside of
// each generated string, as written) and of the usage so far (Event.SoFar): the
// gateway settles a stream cut before its usage with them.

func TestInspectChunkOutputBytes(t *testing.T) {
	for _, tc := range []struct {
		name, chunk string
		content     bool
		bytes       int
	}{
		{"role chunk", `{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}`, false, 0},
		{"content", `{"choices":[{"index":0,"delta":{"content":"Hello"}}]}`, true, 5},
		{"escapes as written", `{"choices":[{"index":0,"delta":{"content":"a\n\u00e9"}}]}`, true, 9},
		{"space around the colon", `{"choices": [{"index": 0, "delta": {"content" : "Hi"}}]}`, true, 2},
		{"reasoning_content", `{"choices":[{"index":0,"delta":{"reasoning_content":"hmm "}}]}`, true, 4},
		{"reasoning", `{"choices":[{"index":0,"delta":{"reasoning":"hmm "}}]}`, true, 4},
		{"both reasoning names count once", `{"choices":[{"index":0,"delta":{"reasoning":"hmm ","reasoning_content":"hmm "}}]}`, true, 4},
		{"refusal", `{"choices":[{"index":0,"delta":{"refusal":"No."}}]}`, true, 3},
		{"tool call head", `{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c","type":"function","function":{"name":"f","arguments":""}}]}}]}`, true, 0},
		{"tool call arguments", `{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":1}"}}]}}]}`, true, 9},
		{"legacy completion text", `{"choices":[{"index":0,"text":" world","logprobs":null,"finish_reason":null}]}`, true, 6},
		{"two choices", `{"choices":[{"index":0,"delta":{"content":"ab"}},{"index":1,"delta":{"content":"cde"}}]}`, true, 5},
		{"logprobs' content is no text", `{"choices":[{"index":0,"delta":{"content":"x"},"logprobs":{"content":[{"token":"x","logprob":-1}]}}]}`, true, 1},
		{"usage chunk", `{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ev Event
			if !inspectChunk([]byte(tc.chunk), &ev) {
				t.Fatalf("not a chunk: %s", tc.chunk)
			}
			if ev.Content != tc.content || ev.OutputBytes != tc.bytes {
				t.Errorf("%s: content %v, %d bytes; want %v, %d", tc.chunk, ev.Content, ev.OutputBytes, tc.content, tc.bytes)
			}
		})
	}
}

func TestInspectMessageEventOutputBytes(t *testing.T) {
	for _, tc := range []struct {
		name, event string
		bytes       int
	}{
		{"text_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}`, 5},
		{"input_json_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\":"}}`, 7},
		{"thinking_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}`, 3},
		{"signature_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQB"}}`, 0},
		{"ping", `{"type":"ping"}`, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s sseReader
			var ev Event
			if ok, _ := s.inspectMessageEvent([]byte(tc.event), &ev); !ok {
				t.Fatalf("not an event: %s", tc.event)
			}
			if ev.OutputBytes != tc.bytes || ev.Content != (tc.bytes > 0) {
				t.Errorf("%s: %d bytes, content %v; want %d", tc.event, ev.OutputBytes, ev.Content, tc.bytes)
			}
		})
	}
}

// message_start gives the prompt's tokens (the cache's reads and writes among them) as
// the usage so far; its output count, 1 by Anthropic's habit, is none yet.
func TestMessageStartUsageSoFar(t *testing.T) {
	const start = `{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-test","content":[],` +
		`"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"cache_read_input_tokens":4,"cache_creation_input_tokens":2,"output_tokens":1}}}`
	want := Usage{Input: 16, CachedInput: 4, CacheWrite: 2}
	t.Run("Messages API passed on", func(t *testing.T) {
		var s sseReader
		var ev Event
		if ok, _ := s.inspectMessageEvent([]byte(start), &ev); !ok {
			t.Fatal("not an event")
		}
		if !ev.SoFar || ev.HasUsage || ev.Usage != want {
			t.Errorf("so far %v, has usage %v, usage %+v; want the usage so far %+v", ev.SoFar, ev.HasUsage, ev.Usage, want)
		}
	})
	t.Run("translated to chat", func(t *testing.T) {
		s := &anthropicStream{r: &sseReader{}}
		var ev Event
		if emitted, err := s.translate([]byte(start), &ev); !emitted || err != nil {
			t.Fatalf("message_start: emitted %v, %v", emitted, err)
		}
		if !ev.SoFar || ev.HasUsage || ev.Usage != want || ev.Content {
			t.Errorf("role chunk: so far %v, has usage %v, usage %+v, content %v; want the usage so far %+v", ev.SoFar, ev.HasUsage, ev.Usage, ev.Content, want)
		}
		for _, tc := range []struct {
			event string
			bytes int
		}{
			{`{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`, -1},
			{`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}`, 5},
			{`{"type":"content_block_stop","index":0}`, -1},
			{`{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"f","input":{}}}`, 0},
			{`{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\":1}"}}`, 9},
		} {
			ev = Event{}
			emitted, err := s.translate([]byte(tc.event), &ev)
			if err != nil || emitted != (tc.bytes >= 0) {
				t.Fatalf("%s: emitted %v, %v", tc.event, emitted, err)
			}
			if emitted && (ev.OutputBytes != tc.bytes || !ev.Content) {
				t.Errorf("%s: %d bytes, content %v; want %d", tc.event, ev.OutputBytes, ev.Content, tc.bytes)
			}
		}
	})
}

func TestInspectResponseEventOutputBytes(t *testing.T) {
	for _, tc := range []struct {
		event string
		bytes int
	}{
		{`{"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"Hello"}`, 5},
		{`{"type":"response.function_call_arguments.delta","sequence_number":5,"item_id":"fc_1","output_index":1,"delta":"{\"a\":"}`, 7},
	} {
		var ev Event
		if _, ok := inspectResponseEvent([]byte(tc.event), &ev); !ok {
			t.Fatalf("not an event: %s", tc.event)
		}
		if !ev.Content || ev.OutputBytes != tc.bytes {
			t.Errorf("%s: content %v, %d bytes; want %d", tc.event, ev.Content, ev.OutputBytes, tc.bytes)
		}
	}
}

// A bridge gives the chat chunks' text to the events it makes of them, and, where the
// chat stream carries its usage on every chunk, that usage so far to each event.
func TestBridgeOutputBytesAndUsageSoFar(t *testing.T) {
	chunks := []string{
		`{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""}}],"usage":{"prompt_tokens":7,"completion_tokens":0,"total_tokens":7}}`,
		`{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hello"}}],"usage":{"prompt_tokens":7,"completion_tokens":1,"total_tokens":8}}`,
		`{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":" world"}}],"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}`,
		"!cut",
	}
	s := msgStreamOf(chunks...)
	s.continuous = true
	defer s.Close()
	st := readBridged(s)
	if st.err == nil {
		t.Fatal("the cut stream ended without an error")
	}
	text, last := 0, Usage{}
	for _, ev := range st.events {
		text += ev.OutputBytes
		if ev.OutputBytes > 0 && !ev.Content {
			t.Errorf("text on an event that is no content: %s", ev.Data)
		}
		if ev.HasUsage {
			t.Errorf("a final usage on a stream cut before its end: %s", ev.Data)
		}
		if ev.SoFar {
			last = ev.Usage
		}
	}
	if text != 11 || last.Input != 7 || last.Output != 2 {
		t.Errorf("events carried %d bytes of text, last usage so far %+v; want 11 bytes, 7 in and 2 out", text, last)
	}

	r := bridgeStreamOf(`{"model":"m","input":"hi","stream":true}`,
		`{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}`,
		`{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"reasoning_content":"hmm"}}]}`,
		`{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hello"}}]}`,
		"!cut")
	defer r.Close()
	st = readBridged(r)
	text = 0
	for _, ev := range st.events {
		text += ev.OutputBytes
		if ev.SoFar || ev.HasUsage {
			t.Errorf("a usage on a stream without any: %s", ev.Data)
		}
	}
	if st.err == nil || text != 8 {
		t.Errorf("Responses bridge: %d bytes of text (want 8), error %v", text, st.err)
	}
}
