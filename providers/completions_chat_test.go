package providers

import (
	"testing"
)

// TestAppendChatRequest checks the chat request a completions call becomes: the
// prompt one user message, the model the backend's, the temperature scaled where the
// provider asks, usage asked for on a stream the client did not ask it of, the rest as
// sent; a prompt that is not one string is the client's error.
func TestAppendChatRequest(t *testing.T) {
	model := quoteModel("gpt-4o-mini")
	for _, c := range []struct {
		name, in   string
		scale      float64
		forceUsage bool
		want, err  string
	}{
		{"prompt", `{"model":"completions","prompt":"Say \"hi\"","max_tokens":5,"stop":["."],"n":2}`, 0, false,
			`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say \"hi\""}],"max_tokens":5,"stop":["."],"n":2}`, ""},
		{"one prompt in an array", `{"prompt": [ "a" ], "model":"c"}`, 0, false,
			`{"messages":[{"role":"user","content":"a"}],"model":"gpt-4o-mini"}`, ""},
		{"escaped key", `{"model":"c","pr\u006fmpt":"a"}`, 0, false,
			`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a"}]}`, ""},
		{"no model", `{"prompt":"a"}`, 0, false,
			`{"messages":[{"role":"user","content":"a"}],"model":"gpt-4o-mini"}`, ""},
		{"temperature halved", `{"model":"c","prompt":"a","temperature":1.5}`, 0.5, false,
			`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a"}],"temperature":0.75}`, ""},
		{"temperature kept", `{"model":"c","prompt":"a","temperature":1.5}`, 0, false,
			`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a"}],"temperature":1.5}`, ""},
		{"usage asked for", `{"model":"c","prompt":"a","stream":true}`, 0, true,
			`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a"}],"stream":true,"stream_options":{"include_usage":true}}`, ""},
		{"usage added to stream_options", `{"model":"c","prompt":"a","stream":true,"stream_options":{"include_usage":false,"x":1}}`, 0, true,
			`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a"}],"stream":true,"stream_options":{"include_usage":true,"x":1}}`, ""},
		{"two prompts", `{"model":"c","prompt":["a","b"]}`, 0, false, "", errPromptNotOne.msg},
		{"token IDs", `{"model":"c","prompt":[1,2,3]}`, 0, false, "", errPromptNotOne.msg},
		{"prompt given twice", `{"model":"c","prompt":"a","prompt":"b"}`, 0, false, "", errPromptNotOne.msg},
		{"no prompt", `{"model":"c"}`, 0, false, "", errNoPrompt.msg},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, rerr := appendChatRequest(nil, []byte(c.in), model, c.scale, c.forceUsage)
			switch {
			case c.err != "" && (rerr == nil || rerr.msg != c.err || rerr.param != "prompt"):
				t.Fatalf("error %v, want %q on prompt", rerr, c.err)
			case c.err == "" && (rerr != nil || string(got) != c.want):
				t.Fatalf("got %s %v\nwant %s", got, rerr, c.want)
			}
		})
	}
}

// TestAppendTextCompletion checks the answers a chat answer becomes: a text_completion
// (choices[].text, legacy logprobs null), its chunks in OpenAI's form, and in MLflow's
// stream form (text_completion_chunk, delta.content).
func TestAppendTextCompletion(t *testing.T) {
	for _, c := range []struct {
		name, in, object string
		delta            bool
		want             string
	}{
		{"answer", `{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hi","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`,
			`"text_completion"`, false,
			`{"id":"x","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":"Hi","logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`},
		{"answer without content", `{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[]},"finish_reason":"tool_calls"},{"index":1,"finish_reason":"stop"}]}`,
			`"text_completion"`, false,
			`{"object":"text_completion","choices":[{"index":0,"text":"","finish_reason":"tool_calls"},{"index":1,"finish_reason":"stop","text":""}]}`},
		{"chunk", `{"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hel"},"logprobs":null,"finish_reason":null}]}`,
			`"text_completion"`, false,
			`{"id":"x","object":"text_completion","choices":[{"index":0,"text":"Hel","logprobs":null,"finish_reason":null}]}`},
		{"MLflow chunk", `{"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"},"logprobs":null,"finish_reason":null}]}`,
			`"text_completion_chunk"`, true,
			`{"id":"x","object":"text_completion_chunk","choices":[{"index":0,"text":"Hel","delta":{"content":"Hel"},"finish_reason":null}]}`},
		{"MLflow last chunk", `{"object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`,
			`"text_completion_chunk"`, true,
			`{"object":"text_completion_chunk","choices":[{"index":0,"text":null,"delta":{"content":null},"finish_reason":"stop"}]}`},
		{"usage chunk", `{"id":"x","choices":[],"usage":{"prompt_tokens":3}}`,
			`"text_completion"`, false,
			`{"id":"x","choices":[],"usage":{"prompt_tokens":3},"object":"text_completion"}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := appendTextCompletion(nil, []byte(c.in), []byte(c.object), c.delta)
			if !ok || string(got) != c.want {
				t.Fatalf("got %s %v\nwant %s", got, ok, c.want)
			}
		})
	}
	for _, bad := range []string{`[1]`, `{"choices":[1]}`, `{"choices":[{"index":0,}]}`} {
		if got, ok := appendTextCompletion(nil, []byte(bad), strTextCompletion, false); ok {
			t.Errorf("%s: translated to %s, want it refused", bad, got)
		}
	}
}

var (
	benchCompletionsBody = []byte(`{"model":"completions","prompt":"Tell me a story about a gateway.","max_tokens":64,"stream":true}`)
	benchChatChunk       = []byte(`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"content":" gateway"},"logprobs":null,"finish_reason":null}]}`)
)

func BenchmarkCompletionsViaChat(b *testing.B) {
	model := quoteModel("gpt-4o-mini")
	buf := make([]byte, 0, 1024)
	b.Run("request", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf, _ = appendChatRequest(buf[:0], benchCompletionsBody, model, 0, true)
		}
	})
	b.Run("chunk", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf, _ = appendTextCompletion(buf[:0], benchChatChunk, strTextCompletion, false)
		}
	})
}
