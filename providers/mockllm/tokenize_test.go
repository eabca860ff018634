package mockllm

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestVersion: vLLM's API server (api_server.py) serves GET /version ->
// {"version": "..."} next to /health, outside its API key check; deployment scripts
// and gateways probe it.
func TestVersion(t *testing.T) {
	h := start(t, Options{APIKey: "k"})
	resp, b := h.must("GET", "/version", "")
	var v struct {
		Version string `json:"version"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(b, &v) != nil || v.Version != VLLMVersion {
		t.Fatalf("GET /version: %d %s; want 200 {\"version\":%q}", resp.StatusCode, b, VLLMVersion)
	}
	if resp, _ := h.must("POST", "/version", "{}"); resp.StatusCode != 405 {
		t.Errorf("POST /version: %d, want 405", resp.StatusCode)
	}
}

// TestTokenize: vLLM serves POST /tokenize ({"model","prompt"} or {"model","messages"}
// -> {"count","max_model_len","tokens","token_strs"}) and POST /detokenize
// ({"model","tokens"} -> {"prompt"}). A gateway or client that counts tokens through
// the upstream (to estimate a limiter charge, or to check a prompt against
// max_model_len) gets the count the same prompt is charged in usage.prompt_tokens.
func TestTokenize(t *testing.T) {
	h := start(t, Options{MaxModelLen: 4096})
	prompt := strings.Repeat("abcd", 10) + "xy"
	cases := []struct {
		name, usagePath, usageBody, body string
	}{
		{"prompt", "/v1/completions", `{"model":"mock-1","prompt":"` + prompt + `","max_tokens":1}`,
			`{"model":"mock-1","prompt":"` + prompt + `"}`},
		{"messages", "/v1/chat/completions", chatBody(prompt, `"max_tokens":1`),
			`{"model":"mock-1","messages":[{"role":"user","content":"` + prompt + `"}]}`},
		{"escaped prompt, model null", "/v1/completions", `{"prompt":"caf\u00e9 \"quoted\"","max_tokens":1}`,
			`{"model":null,"prompt":"caf\u00e9 \"quoted\""}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, ub := h.must("POST", tc.usagePath, tc.usageBody)
			want := decode[chatResp](t, ub).Usage.PromptTokens
			resp, b := h.must("POST", "/tokenize", tc.body)
			var tok struct {
				Count       int       `json:"count"`
				MaxModelLen int       `json:"max_model_len"`
				Tokens      []int     `json:"tokens"`
				TokenStrs   *[]string `json:"token_strs"`
			}
			if resp.StatusCode != 200 || json.Unmarshal(b, &tok) != nil {
				t.Fatalf("POST /tokenize: %d %s", resp.StatusCode, b)
			}
			if tok.Count != want || len(tok.Tokens) != want || tok.MaxModelLen != 4096 || tok.TokenStrs != nil {
				t.Errorf("POST /tokenize: %s; want count %d (usage.prompt_tokens of the same prompt), %d tokens, max_model_len 4096, token_strs null", b, want, want)
			}
			body, _ := json.Marshal(map[string]any{"model": "mock-1", "tokens": tok.Tokens})
			resp, b = h.must("POST", "/detokenize", string(body))
			var det struct {
				Prompt *string `json:"prompt"`
			}
			if resp.StatusCode != 200 || json.Unmarshal(b, &det) != nil || det.Prompt == nil || len(strings.Fields(*det.Prompt)) != want {
				t.Errorf("POST /detokenize: %d %s; want 200 {\"prompt\"} of %d words", resp.StatusCode, b, want)
			}
		})
	}
}

// TestTokenizeTokenStrs: return_token_strs adds each token's text, which is what
// /detokenize spells for its id.
func TestTokenizeTokenStrs(t *testing.T) {
	h := start(t, Options{})
	_, b := h.must("POST", "/tokenize", `{"prompt":"hello there, world","return_token_strs":true}`)
	tok := decode[struct {
		Tokens    []int    `json:"tokens"`
		TokenStrs []string `json:"token_strs"`
	}](t, b)
	if len(tok.TokenStrs) != len(tok.Tokens) || len(tok.Tokens) == 0 {
		t.Fatalf("%s: want one token_strs entry per token", b)
	}
	body, _ := json.Marshal(map[string]any{"tokens": tok.Tokens})
	_, b = h.must("POST", "/detokenize", string(body))
	if got, want := decode[struct{ Prompt string }](t, b).Prompt, strings.Join(tok.TokenStrs, " "); got != want {
		t.Errorf("detokenize %v = %q, want %q", tok.Tokens, got, want)
	}
}

// TestTokenizeErrors: the routes check their body and model as vLLM's do.
func TestTokenizeErrors(t *testing.T) {
	h := start(t, Options{APIKey: "k"})
	cases := []struct {
		name, path, body string
		status           int
		want             string
	}{
		{"no prompt", "/tokenize", `{"model":"mock-1"}`, 400, `"message":"prompt: Field required"`},
		{"prompt not a string", "/tokenize", `{"prompt":[1,2]}`, 400, `"message":"prompt: Input should be a valid string"`},
		{"unknown model", "/tokenize", `{"model":"gpt-x","prompt":"hi"}`, 404, "The model `gpt-x` does not exist."},
		{"bad JSON", "/tokenize", `{"prompt":`, 400, `"message":"JSON decode error"`},
		{"no tokens", "/detokenize", `{"model":"mock-1"}`, 400, `"message":"tokens: Field required"`},
		{"tokens not integers", "/detokenize", `{"tokens":["a"]}`, 400, `"message":"tokens: Input should be a valid list of integers"`},
		{"negative id", "/detokenize", `{"tokens":[-1]}`, 400, `"message":"Token id -1 is out of vocabulary"`},
		{"unknown model detokenize", "/detokenize", `{"model":"gpt-x","tokens":[1]}`, 404, "does not exist"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// No API key: like vLLM, only /v1 routes require it.
			resp, b := h.must("POST", tc.path, tc.body)
			if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.want) {
				t.Errorf("%d %s; want %d with %s", resp.StatusCode, b, tc.status, tc.want)
			}
		})
	}
}
