package mockllm

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

// cacheUsage is the usage of an answer, with the counts of the prompt cache in both
// APIs' shapes.
type cacheUsage struct {
	PromptTokens        int             `json:"prompt_tokens"`
	CompletionTokens    int             `json:"completion_tokens"`
	PromptTokensDetails json.RawMessage `json:"prompt_tokens_details"`
	InputTokens         int             `json:"input_tokens"`
	CacheCreation       int             `json:"cache_creation_input_tokens"`
	CacheRead           int             `json:"cache_read_input_tokens"`
}

// finalUsage is the usage of a buffered OpenAI answer, or of a stream's last usage.
func finalUsage(t *testing.T, stream bool, b []byte) cacheUsage {
	t.Helper()
	type withUsage struct {
		Usage *cacheUsage `json:"usage"`
	}
	if !stream {
		u := decode[withUsage](t, b).Usage
		if u == nil {
			t.Fatalf("no usage in %s", b)
		}
		return *u
	}
	var last *cacheUsage
	for _, ev := range parseSSE(t, b) {
		if ev.data == "[DONE]" {
			continue
		}
		if u := decode[withUsage](t, []byte(ev.data)).Usage; u != nil {
			last = u
		}
	}
	if last == nil {
		t.Fatalf("no usage in the stream %s", b)
	}
	return *last
}

// TestPromptCacheOpenAI: x-mock-cached-tokens has an answer report the prompt tokens a
// prefix cache served, as vLLM run with --enable-prompt-tokens-details does: in
// prompt_tokens_details.cached_tokens, a part of prompt_tokens, and null when none were
// (vLLM leaves the object out of a usage with 0 cached), or left out of a stream's
// usage chunk, which vLLM writes without its None members.
func TestPromptCacheOpenAI(t *testing.T) {
	h := start(t, Options{Model: "mock-1", MaxTokens: 8, Seed: 1})
	prompt := strings.Repeat("a long shared system prompt ", 20)
	cases := []struct {
		name, path, body string
		header           string
		want             string // prompt_tokens_details; CUT is all of prompt_tokens cached
	}{
		{"chat without the header", "/v1/chat/completions", chatBody(prompt, ""), "", "null"},
		{"chat", "/v1/chat/completions", chatBody(prompt, ""), "96", `{"cached_tokens":96}`},
		{"chat stream's usage chunk", "/v1/chat/completions", chatBody(prompt, `"stream":true,"stream_options":{"include_usage":true}`), "96", `{"cached_tokens":96}`},
		// vLLM writes a stream's usage chunk without its None members (exclude_none).
		{"chat stream's usage chunk without the header", "/v1/chat/completions", chatBody(prompt, `"stream":true,"stream_options":{"include_usage":true}`), "", ""},
		{"completions stream's usage chunk without the header", "/v1/completions", `{"model":"mock-1","prompt":` + quote(prompt) + `,"stream":true,"stream_options":{"include_usage":true}}`, "", ""},
		{"completions", "/v1/completions", `{"model":"mock-1","prompt":` + quote(prompt) + `}`, "32", `{"cached_tokens":32}`},
		{"completions stream's usage chunk", "/v1/completions", `{"model":"mock-1","prompt":` + quote(prompt) + `,"stream":true,"stream_options":{"include_usage":true}}`, "32", `{"cached_tokens":32}`},
		{"more than the prompt is the whole prompt", "/v1/chat/completions", chatBody(prompt, ""), "100000", "CUT"},
		{"zero", "/v1/chat/completions", chatBody(prompt, ""), "0", "null"},
		{"not a number", "/v1/chat/completions", chatBody(prompt, ""), "lots", "null"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var hdr []string
			if c.header != "" {
				hdr = []string{"x-mock-cached-tokens", c.header}
			}
			resp, b := h.must("POST", c.path, c.body, hdr...)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			u := finalUsage(t, strings.Contains(c.body, `"stream":true`), b)
			want := c.want
			if want == "CUT" {
				want = `{"cached_tokens":` + strconv.Itoa(u.PromptTokens) + `}`
			}
			if string(u.PromptTokensDetails) != want {
				t.Errorf("prompt_tokens_details = %s, want %s (prompt_tokens %d)", u.PromptTokensDetails, want, u.PromptTokens)
			}
			if u.PromptTokens < 96 {
				t.Errorf("prompt_tokens = %d: the prompt is too short for the cases", u.PromptTokens)
			}
		})
	}
	t.Run("continuous usage stats have no details", func(t *testing.T) {
		_, b := h.must("POST", "/v1/chat/completions", chatBody(prompt, `"stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":true}`), "x-mock-cached-tokens", "64")
		evs := parseSSE(t, b)
		details := []string{}
		for _, ev := range evs {
			if ev.data == "[DONE]" {
				continue
			}
			var c struct {
				Usage *cacheUsage `json:"usage"`
			}
			if err := json.Unmarshal([]byte(ev.data), &c); err != nil {
				t.Fatalf("chunk %s: %v", ev.data, err)
			}
			if c.Usage != nil {
				details = append(details, string(c.Usage.PromptTokensDetails))
			}
		}
		if len(details) < 2 {
			t.Fatalf("usage on %d chunks, want every one", len(details))
		}
		// A chat chunk leaves the unset member out (vLLM's exclude_unset).
		for i, d := range details[:len(details)-1] {
			if d != "" {
				t.Errorf("chunk %d's usage has prompt_tokens_details %s, want none", i, d)
			}
		}
		if d := details[len(details)-1]; d != `{"cached_tokens":64}` {
			t.Errorf("final usage's prompt_tokens_details = %s", d)
		}
	})
}

// TestPromptCacheAnthropic: x-mock-cached-tokens and x-mock-cache-write-tokens split
// a Messages answer's prompt as Anthropic's prompt cache does: input_tokens is what
// was neither read from the cache nor written to it, and the three add up to the
// prompt, in the buffered message and in a stream's message_start.
func TestPromptCacheAnthropic(t *testing.T) {
	h := startAnthropic(t)
	body := messagesBody(strings.Repeat("a long shared system prompt ", 20), "")
	_, plain := h.must("POST", "/v1/messages", body, anthHeaders...)
	prompt := decode[struct{ Usage cacheUsage }](t, plain).Usage.InputTokens
	if prompt < 100 {
		t.Fatalf("prompt of %d tokens: too short for the cases", prompt)
	}
	cases := []struct {
		name                  string
		read, write           string
		wantRead, wantWritten int
	}{
		{"no cache", "", "", 0, 0},
		{"read", "64", "", 64, 0},
		{"written", "", "80", 0, 80},
		{"read and written", "64", "20", 64, 20},
		{"reads cut to the prompt", "100000", "20", prompt, 0},
		{"writes cut to what reads left", "64", "100000", 64, prompt - 64},
	}
	for _, c := range cases {
		for _, stream := range []bool{false, true} {
			name := c.name
			if stream {
				name += ", stream"
			}
			t.Run(name, func(t *testing.T) {
				hdr := append([]string{}, anthHeaders...)
				if c.read != "" {
					hdr = append(hdr, "x-mock-cached-tokens", c.read)
				}
				if c.write != "" {
					hdr = append(hdr, "x-mock-cache-write-tokens", c.write)
				}
				var raw []byte
				if stream {
					_, b := h.must("POST", "/v1/messages", strings.TrimSuffix(body, "}")+`,"stream":true}`, hdr...)
					for _, ev := range parseSSE(t, b) {
						if ev.name == "message_start" {
							var s struct{ Message json.RawMessage }
							if err := json.Unmarshal([]byte(ev.data), &s); err != nil {
								t.Fatal(err)
							}
							raw = s.Message
						}
					}
				} else {
					_, raw = h.must("POST", "/v1/messages", body, hdr...)
				}
				u := decode[struct{ Usage cacheUsage }](t, raw).Usage
				if u.CacheRead != c.wantRead || u.CacheCreation != c.wantWritten || u.InputTokens != prompt-c.wantRead-c.wantWritten {
					t.Errorf("usage input %d, cache read %d, written %d; want %d, %d, %d",
						u.InputTokens, u.CacheRead, u.CacheCreation, prompt-c.wantRead-c.wantWritten, c.wantRead, c.wantWritten)
				}
			})
		}
	}
}
