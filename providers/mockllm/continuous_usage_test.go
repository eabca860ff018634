package mockllm

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestContinuousUsageMustBeBoolean: vLLM's StreamOptions.continuous_usage_stats is an
// optional bool, so null is taken (as false: no usage on the chunks, the usage chunk
// still) and a value that is no boolean is refused, naming the member.
func TestContinuousUsageMustBeBoolean(t *testing.T) {
	h := start(t, Options{MaxTokens: 8})
	for _, v := range []string{`"maybe"`, "2", "[]", "{}"} {
		t.Run(v, func(t *testing.T) {
			resp, b := h.must("POST", "/v1/chat/completions", chatBody("q", `"stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":`+v+`}`))
			want := `{"error":{"message":"stream_options.continuous_usage_stats: Input should be a valid boolean","type":"Bad Request","param":null,"code":400}}`
			if resp.StatusCode != 400 || string(b) != want {
				t.Errorf("%d %s\nwant 400 %s", resp.StatusCode, b, want)
			}
		})
	}
	t.Run("null", func(t *testing.T) {
		resp, b := h.must("POST", "/v1/chat/completions", chatBody("q", `"stream":true,"max_tokens":3,"stream_options":{"include_usage":true,"continuous_usage_stats":null}`))
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
		evs := parseSSE(t, b)
		for i, ev := range evs[:len(evs)-1] {
			c := decode[chatResp](t, []byte(ev.data))
			if last := i == len(evs)-2; (c.Usage != nil) != last {
				t.Errorf("chunk %d of %d: usage %+v", i, len(evs)-1, c.Usage)
			}
		}
	})
}

// chunkUsage is a stream chunk's usage, its prompt_tokens_details raw.
type chunkUsage struct {
	PromptTokens     int             `json:"prompt_tokens"`
	CompletionTokens int             `json:"completion_tokens"`
	TotalTokens      int             `json:"total_tokens"`
	Details          json.RawMessage `json:"prompt_tokens_details"`
}

// TestContinuousUsageChunks: as vLLM's chat stream with continuous_usage_stats, the
// role chunk carries the prompt's tokens and 0 completion tokens, each later chunk
// (a tool call's pieces too) the completion's tokens so far, none of them
// prompt_tokens_details; the usage chunk after them carries the final usage, the
// prefix cache's reads included, its completion tokens those of the last chunk.
func TestContinuousUsageChunks(t *testing.T) {
	h := start(t, Options{MaxTokens: 8})
	opts := `"stream":true,"max_tokens":4,"stream_options":{"include_usage":true,"continuous_usage_stats":true}`
	for _, tc := range []struct {
		name string
		hdr  []string
	}{
		{"text", []string{"x-mock-cached-tokens", "2"}},
		{"tool call", []string{"x-mock-tool-calls", "1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := chatBody("tell me a story about gateways", opts)
			if tc.name == "tool call" {
				body = body[:len(body)-1] + `,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]}`
			}
			resp, b := h.must("POST", "/v1/chat/completions", body, tc.hdr...)
			if resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, b)
			}
			evs := parseSSE(t, b)
			if evs[len(evs)-1].data != "[DONE]" {
				t.Fatalf("stream ends %q", evs[len(evs)-1].data)
			}
			var u []chunkUsage
			for _, ev := range evs[:len(evs)-1] {
				var c struct {
					Choices []json.RawMessage `json:"choices"`
					Usage   *chunkUsage       `json:"usage"`
				}
				if err := json.Unmarshal([]byte(ev.data), &c); err != nil || c.Usage == nil {
					t.Fatalf("chunk without usage (%v): %s", err, ev.data)
				}
				u = append(u, *c.Usage)
				if len(c.Choices) == 0 != (len(u) == len(evs)-1) {
					t.Fatalf("choices %d in chunk %d of %d: %s", len(c.Choices), len(u), len(evs)-1, ev.data)
				}
			}
			role, final := u[0], u[len(u)-1]
			if role.PromptTokens <= 0 || role.CompletionTokens != 0 || role.TotalTokens != role.PromptTokens || role.Details != nil {
				t.Errorf("role chunk's usage %+v", role)
			}
			for i, c := range u[:len(u)-1] {
				if c.PromptTokens != role.PromptTokens || c.TotalTokens != c.PromptTokens+c.CompletionTokens || c.Details != nil ||
					i > 0 && c.CompletionTokens < u[i-1].CompletionTokens {
					t.Errorf("chunk %d usage %+v after %+v", i, c, u[max(i-1, 0)])
				}
			}
			if last := u[len(u)-2]; final.PromptTokens != role.PromptTokens || final.CompletionTokens != last.CompletionTokens || final.CompletionTokens == 0 {
				t.Errorf("usage chunk %+v after the last chunk's %+v", final, last)
			}
			wantDetails := "null"
			if tc.name == "text" {
				wantDetails = `{"cached_tokens":2}`
			}
			if got := strings.TrimSpace(string(final.Details)); got != wantDetails && !(wantDetails == "null" && got == "") {
				t.Errorf("usage chunk's prompt_tokens_details %s, want %s", got, wantDetails)
			}
		})
	}
}
