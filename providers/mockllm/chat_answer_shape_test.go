package mockllm

import (
	"encoding/json"
	"testing"
)

// TestChatAnswerMembers: a chat answer carries every member of vLLM's
// ChatCompletionResponse and ChatMessage, as its model_dump writes them: those it
// never sets as null, so a client meets the nulls it would meet from vLLM.
func TestChatAnswerMembers(t *testing.T) {
	h := start(t, Options{MaxTokens: 4})
	cases := []struct {
		name, extra string
	}{
		{"text", ""},
		{"tool calls", `"tools":[{"type":"function","function":{"name":"f","parameters":{}}}]`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hdr := []string{}
			if tc.extra != "" {
				hdr = []string{"x-mock-tool-calls", "1"}
			}
			resp, b := h.must("POST", "/v1/chat/completions", chatBody("hi", tc.extra), hdr...)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			var r struct {
				Choices []struct {
					Message map[string]json.RawMessage `json:"message"`
				} `json:"choices"`
			}
			top := decode[map[string]json.RawMessage](t, b)
			if err := json.Unmarshal(b, &r); err != nil || len(r.Choices) != 1 {
				t.Fatalf("%v: %s", err, b)
			}
			for _, k := range []string{"service_tier", "system_fingerprint", "prompt_logprobs", "kv_transfer_params"} {
				if v, ok := top[k]; !ok || string(v) != "null" {
					t.Errorf("answer's %s is %q, want null: %s", k, v, b)
				}
			}
			for _, k := range []string{"refusal", "annotations", "audio", "function_call", "reasoning_content"} {
				if v, ok := r.Choices[0].Message[k]; !ok || string(v) != "null" {
					t.Errorf("message's %s is %q, want null: %s", k, v, b)
				}
			}
		})
	}
}
