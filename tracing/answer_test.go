package tracing

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

const (
	chatAnswer = `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"llama-3.1-8b-instruct",` +
		`"choices":[{"index":0,"message":{"role":"assistant","content":"Hello \"there\"\n\u00e9"},"logprobs":null,"finish_reason":"stop"}],` +
		`"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`
	completionAnswer = `{"id":"cmpl-2","object":"text_completion","model":"m2","choices":[{"text":"once upon","index":0,"finish_reason":"length"}]}`
	embeddingAnswer  = `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2]}],"model":"bge","usage":{"prompt_tokens":2,"total_tokens":2}}`
)

// streamChunks is a chat stream as vLLM sends it: a role chunk, content,
// the finish chunk and the usage chunk.
var streamChunks = []string{
	`{"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"llama","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}`,
	`{"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"llama","choices":[{"index":0,"delta":{"content":"Hel"},"logprobs":null,"finish_reason":null}]}`,
	`{"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"llama","choices":[{"index":0,"delta":{"content":"lo\n"},"logprobs":null,"finish_reason":null}]}`,
	`{"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"llama","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason": "length"}]}`,
	`{"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"llama","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`,
}

func TestAnswer(t *testing.T) {
	tests := []struct {
		name    string
		capture bool
		feed    func(a *Answer)
		model   string
		id      string
		reasons string
		text    string // "" means no completion event
	}{
		{"chat body", true, func(a *Answer) { a.Body([]byte(chatAnswer)) },
			"llama-3.1-8b-instruct", "chatcmpl-1", "stop", "Hello \"there\"\né"},
		{"chat body without capture", false, func(a *Answer) { a.Body([]byte(chatAnswer)) },
			"llama-3.1-8b-instruct", "chatcmpl-1", "stop", ""},
		{"completions body", true, func(a *Answer) { a.Body([]byte(completionAnswer)) },
			"m2", "cmpl-2", "length", "once upon"},
		{"embeddings body", false, func(a *Answer) { a.Body([]byte(embeddingAnswer)) },
			"bge", "", "", ""},
		{"not json", true, func(a *Answer) { a.Body([]byte("\x1f\x8b\x08 gzip")) },
			"", "", "", ""},
		{"stream", true, func(a *Answer) {
			for _, c := range streamChunks {
				a.Chunk([]byte(c))
			}
		}, "llama", "chatcmpl-9", "length", "Hello\n"},
		{"stream without capture", false, func(a *Answer) {
			for _, c := range streamChunks {
				a.Chunk([]byte(c))
			}
		}, "llama", "chatcmpl-9", "length", ""},
		{"stream of two choices", true, func(a *Answer) {
			for _, c := range []string{
				`{"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null},{"index":1,"delta":{"content":"X"},"finish_reason":null}]}`,
				`{"id":"c","model":"m","choices":[{"index":1,"delta":{},"finish_reason":"length"}]}`,
				`{"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"b"},"finish_reason":null}]}`,
				`{"id":"c","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`,
			} {
				a.Chunk([]byte(c))
			}
		}, "m", "c", "length,stop", "ab"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, exp := newTestTracing(t, Config{CaptureContent: tt.capture})
			_, span := tr.Start(context.Background(), upstream)
			var a Answer
			a.Start(tr, span)
			tt.feed(&a)
			a.End(span)
			span.End()
			s := exported(t, tr, exp)[0]
			got := attrs(s.Attributes)
			if v := got["gen_ai.response.model"].AsString(); v != tt.model {
				t.Errorf("response model %q, want %q", v, tt.model)
			}
			if v := got["gen_ai.response.id"].AsString(); v != tt.id {
				t.Errorf("response id %q, want %q", v, tt.id)
			}
			if v := strings.Join(got["gen_ai.response.finish_reasons"].AsStringSlice(), ","); v != tt.reasons {
				t.Errorf("finish reasons %q, want %q", v, tt.reasons)
			}
			text, found := completion(s)
			if found != (tt.text != "") || text != tt.text {
				t.Errorf("completion %q (event %v), want %q", text, found, tt.text)
			}
		})
	}
}

func completion(s tracetest.SpanStub) (string, bool) {
	for _, e := range s.Events {
		if e.Name == EventCompletion {
			return attrs(e.Attributes)[string(KeyCompletion)].AsString(), true
		}
	}
	return "", false
}

func TestAnswerTextIsBounded(t *testing.T) {
	tr, exp := newTestTracing(t, Config{CaptureContent: true})
	_, span := tr.Start(context.Background(), upstream)
	var a Answer
	a.Start(tr, span)
	chunk := []byte(`{"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"` + strings.Repeat("é", 1000) + `"},"finish_reason":null}]}`)
	for range 100 { // 200 KB of text
		a.Chunk(chunk)
		if len(a.text) > maxCapturedContent+utf8.UTFMax {
			t.Fatalf("holding %d bytes of text, bound %d", len(a.text), maxCapturedContent+utf8.UTFMax)
		}
	}
	a.End(span)
	span.End()
	got, _ := completion(exported(t, tr, exp)[0])
	if len(got) > maxCapturedContent || len(got) < maxCapturedContent-1 || !utf8.ValidString(got) {
		t.Errorf("completion of %d bytes, valid UTF-8 %v", len(got), utf8.ValidString(got))
	}
}

func TestAnswerReadsNothingWhenNotRecording(t *testing.T) {
	tr := Disabled()
	_, span := tr.Start(context.Background(), upstream)
	var a Answer
	a.Start(tr, span)
	for _, c := range streamChunks {
		a.Chunk([]byte(c))
	}
	a.Body([]byte(chatAnswer))
	if len(a.model) != 0 || len(a.id) != 0 || len(a.reasons) != 0 || len(a.text) != 0 {
		t.Errorf("read %q %q %v %q from an answer nobody records", a.model, a.id, a.reasons, a.text)
	}
	a.End(span)
}
