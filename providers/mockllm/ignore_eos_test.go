package mockllm

import (
	"strings"
	"testing"
)

// TestIgnoreEOS: vLLM's ignore_eos (ChatCompletionRequest and CompletionRequest
// extra sampling parameter, used by vLLM's own benchmarks to fix output lengths) makes
// the model go on past its end of sequence until max_tokens, finish_reason "length".
// mockllm's natural end is its EOS (min_tokens holds it off the same way), so with
// ignore_eos an answer must run to max_tokens.
func TestIgnoreEOS(t *testing.T) {
	h := start(t, Options{MaxTokens: 64})
	for _, path := range []string{"/v1/chat/completions", "/v1/completions"} {
		t.Run(path, func(t *testing.T) {
			body := chatBody("hi", `"max_tokens":10,"ignore_eos":true`)
			if path == "/v1/completions" {
				body = `{"model":"mock-1","prompt":"hi","max_tokens":10,"ignore_eos":true}`
			}
			// x-mock-tokens sets where the answer ends by itself (its EOS).
			resp, b := h.must("POST", path, body, "x-mock-tokens", "2")
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			r := decode[chatResp](t, b)
			if r.Usage == nil || r.Usage.CompletionTokens != 10 || *r.Choices[0].FinishReason != "length" {
				t.Errorf("ignore_eos with max_tokens 10, EOS after 2: usage %+v, finish %q; want 10 tokens, \"length\"",
					r.Usage, *r.Choices[0].FinishReason)
			}
		})
	}
	t.Run("stream", func(t *testing.T) {
		content, finish, u := chatStream(t, h, chatBody("hi", `"max_tokens":7,"ignore_eos":true,"stream":true,"stream_options":{"include_usage":true}`), true)
		if u.CompletionTokens != 7 || finish != "length" || len(strings.Fields(content)) != 7 || strings.Contains(content, ".") {
			t.Errorf("content %q, finish %q, usage %+v; want 7 tokens without an end of sentence, \"length\"", content, finish, u)
		}
	})
	t.Run("false keeps the natural end", func(t *testing.T) {
		_, b := h.must("POST", "/v1/chat/completions", chatBody("hi", `"max_tokens":10,"ignore_eos":false`), "x-mock-tokens", "2")
		if r := decode[chatResp](t, b); r.Usage.CompletionTokens != 2 || *r.Choices[0].FinishReason != "stop" {
			t.Errorf("usage %+v, finish %q; want 2 tokens, \"stop\"", r.Usage, *r.Choices[0].FinishReason)
		}
	})
	t.Run("stop strings still end the answer", func(t *testing.T) {
		_, b := h.must("POST", "/v1/chat/completions", chatBody("hi", `"max_tokens":10,"ignore_eos":true`), "x-mock-tokens", "2")
		words := strings.Fields(decode[chatResp](t, b).Choices[0].Message.Content)
		_, b = h.must("POST", "/v1/chat/completions", chatBody("hi", `"max_tokens":10,"ignore_eos":true,"stop":[`+quote(" "+words[5])+`]`), "x-mock-tokens", "2")
		if r := decode[chatResp](t, b); *r.Choices[0].FinishReason != "stop" || r.Usage.CompletionTokens >= 10 {
			t.Errorf("usage %+v, finish %q; want the stop string to end it", r.Usage, *r.Choices[0].FinishReason)
		}
	})
}

// TestIgnoreEOSMustBeBoolean: ignore_eos and include_stop_str_in_output are plain
// bools in vLLM's request models, so null is refused as any other non-boolean.
func TestIgnoreEOSMustBeBoolean(t *testing.T) {
	h := start(t, Options{})
	for _, field := range []string{"ignore_eos", "include_stop_str_in_output"} {
		for _, v := range []string{"null", `"yes"`, "1"} {
			t.Run(field+" "+v, func(t *testing.T) {
				resp, b := h.must("POST", "/v1/chat/completions", chatBody("hi", `"`+field+`":`+v))
				want := `{"error":{"message":"` + field + `: Input should be a valid boolean","type":"Bad Request","param":null,"code":400}}`
				if resp.StatusCode != 400 || string(b) != want {
					t.Errorf("%d %s\nwant 400 %s", resp.StatusCode, b, want)
				}
			})
		}
	}
}
