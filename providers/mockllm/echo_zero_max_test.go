package mockllm

import (
	"strings"
	"testing"
)

// TestCompletionsEchoWithoutGeneration: as vLLM (echo_without_generation) and
// OpenAI's legacy API, echo with max_tokens 0 answers each prompt alone, generating
// nothing (how evaluation harnesses score a prompt's logprobs), streamed or not;
// max_tokens 0 without echo is still refused.
func TestCompletionsEchoWithoutGeneration(t *testing.T) {
	h := start(t, Options{MaxTokens: 8})
	for _, stream := range []bool{false, true} {
		name, extra := "plain", ""
		if stream {
			name, extra = "stream", `,"stream":true,"stream_options":{"include_usage":true}`
		}
		t.Run(name, func(t *testing.T) {
			texts, u := completionText(t, h, `{"prompt":["Once upon a time","two"],"max_tokens":0,"echo":true`+extra+`}`)
			if len(texts) != 2 || texts[0] != "Once upon a time" || texts[1] != "two" {
				t.Errorf("texts %q, want each prompt alone", texts)
			}
			if u == nil || u.CompletionTokens != 0 || u.PromptTokens == 0 || u.TotalTokens != u.PromptTokens {
				t.Errorf("usage %+v, want the prompts' tokens and no completion tokens", u)
			}
		})
	}
	t.Run("logprobs", func(t *testing.T) {
		_, b := h.must("POST", "/v1/completions", `{"prompt":"Once upon a time","max_tokens":0,"echo":true,"logprobs":1}`)
		r := decode[chatResp](t, b)
		if len(r.Choices) != 1 {
			t.Fatalf("answer %s", b)
		}
		lp := decode[echoLogprobs](t, r.Choices[0].Logprobs)
		if len(lp.Tokens) == 0 || strings.Join(lp.Tokens, "") != "Once upon a time" {
			t.Errorf("logprobs tokens %q, want the prompt's alone", lp.Tokens)
		}
		if f := r.Choices[0].FinishReason; f == nil || *f != "length" {
			t.Errorf("finish_reason %v, want length", f)
		}
	})
	t.Run("without echo", func(t *testing.T) {
		resp, b := h.must("POST", "/v1/completions", `{"prompt":"x","max_tokens":0}`)
		if resp.StatusCode != 400 || !strings.Contains(string(b), "max_tokens must be at least 1, got 0.") {
			t.Errorf("status %d %s, want vLLM's 400", resp.StatusCode, b)
		}
	})
}
