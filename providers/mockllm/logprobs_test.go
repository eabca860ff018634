package mockllm

import (
	"encoding/json"
	"strings"
	"testing"
)

// chatLogprobs decodes vLLM's ChatCompletionLogProbs.
type chatLogprobs struct {
	Content []struct {
		chatLogprob
		TopLogprobs []chatLogprob `json:"top_logprobs"`
	} `json:"content"`
}

type chatLogprob struct {
	Token   string   `json:"token"`
	Logprob *float64 `json:"logprob"`
	Bytes   []int    `json:"bytes"`
}

// completionLogprobs decodes vLLM's CompletionLogProbs.
type completionLogprobs struct {
	TextOffset    []int                `json:"text_offset"`
	TokenLogprobs []float64            `json:"token_logprobs"`
	Tokens        []string             `json:"tokens"`
	TopLogprobs   []map[string]float64 `json:"top_logprobs"`
}

// TestChatLogprobs: vLLM (protocol.py ChatCompletionRequest logprobs and
// top_logprobs; serving_chat.py _create_chat_logprobs) answers "logprobs": true with
// choices[i].logprobs.content, one entry per generated token (per chunk when
// streamed), each with token, logprob, the token's UTF-8 bytes and top_logprobs
// entries, the generated token ranked first; the entries spell the answer. As in
// vLLM, an explicit "top_logprobs": null turns them off.
func TestChatLogprobs(t *testing.T) {
	h := start(t, Options{MaxTokens: 8})
	cases := []struct {
		name, extra string
		top         int
		wantNull    bool
	}{
		{"top_logprobs 2", `"logprobs":true,"top_logprobs":2`, 2, false},
		{"logprobs without top_logprobs", `"logprobs":true`, 0, false},
		{"logprobs false", `"logprobs":false`, 0, true},
		{"top_logprobs null", `"logprobs":true,"top_logprobs":null`, 0, true},
		{"not asked", ``, 0, true},
	}
	for _, tc := range cases {
		for _, stream := range []bool{false, true} {
			name := tc.name
			extra := `"max_tokens":4,"n":2`
			if tc.extra != "" {
				extra += "," + tc.extra
			}
			if stream {
				name += " stream"
				extra += `,"stream":true,"stream_options":{"include_usage":true}`
			}
			t.Run(name, func(t *testing.T) {
				resp, b := h.must("POST", "/v1/chat/completions", chatBody("logprobs please", extra))
				if resp.StatusCode != 200 {
					t.Fatalf("status %d: %s", resp.StatusCode, b)
				}
				text := map[int]string{}
				entries := map[int][]string{}
				check := func(index int, raw json.RawMessage, content string) {
					if tc.wantNull || content == "" {
						if string(raw) != "null" {
							t.Errorf("choice %d: logprobs %s, want null", index, raw)
						}
						return
					}
					var lp chatLogprobs
					if err := json.Unmarshal(raw, &lp); err != nil {
						t.Fatalf("logprobs %s: %v", raw, err)
					}
					for _, c := range lp.Content {
						if c.Logprob == nil || *c.Logprob >= 0 || string(bytesOf(c.Bytes)) != c.Token || len(c.TopLogprobs) != tc.top {
							t.Errorf("entry %+v: want a negative logprob, the token's bytes and %d top_logprobs", c, tc.top)
						}
						for k, alt := range c.TopLogprobs {
							if k == 0 && (alt.Token != c.Token || *alt.Logprob != *c.Logprob) || k > 0 && *alt.Logprob >= *c.TopLogprobs[k-1].Logprob {
								t.Errorf("top_logprobs %+v: want the token first, then less likely ones", c.TopLogprobs)
							}
							if string(bytesOf(alt.Bytes)) != alt.Token {
								t.Errorf("top_logprobs entry %+v: bytes are not the token's", alt)
							}
						}
						entries[index] = append(entries[index], c.Token)
					}
				}
				var completion int
				if !stream {
					r := decode[chatResp](t, b)
					for _, c := range r.Choices {
						text[c.Index] = c.Message.Content
						check(c.Index, c.Logprobs, c.Message.Content)
					}
					completion = r.Usage.CompletionTokens
				} else {
					for _, ev := range parseSSE(t, b) {
						if ev.data == "[DONE]" {
							continue
						}
						c := decode[chatResp](t, []byte(ev.data))
						if len(c.Choices) == 0 {
							completion = c.Usage.CompletionTokens
							continue
						}
						ch := c.Choices[0]
						content := ""
						if ch.Delta.Content != nil {
							content = *ch.Delta.Content
						}
						text[ch.Index] += content
						check(ch.Index, ch.Logprobs, content)
					}
				}
				if tc.wantNull {
					return
				}
				n := 0
				for i, toks := range entries {
					n += len(toks)
					if strings.Join(toks, "") != text[i] {
						t.Errorf("choice %d: tokens %q do not spell the answer %q", i, toks, text[i])
					}
				}
				if n != completion {
					t.Errorf("%d logprobs entries, want one per completion token (%d)", n, completion)
				}
			})
		}
	}
}

func bytesOf(v []int) []byte {
	b := make([]byte, len(v))
	for i, x := range v {
		b[i] = byte(x)
	}
	return b
}

// TestCompletionsLogprobs: vLLM's legacy completions (serving_completion.py
// _create_completion_logprobs) answer "logprobs": N with {"text_offset",
// "token_logprobs", "tokens", "top_logprobs"}, one entry per generated token, the
// offsets counting on across a stream's chunks, and N top candidates a token (one
// for logprobs 0: the token's own).
func TestCompletionsLogprobs(t *testing.T) {
	h := start(t, Options{MaxTokens: 8})
	cases := []struct {
		name   string
		n, top int
	}{
		{"logprobs 1", 1, 1},
		{"logprobs 3", 3, 3},
		{"logprobs 0", 0, 1},
	}
	for _, tc := range cases {
		for _, stream := range []bool{false, true} {
			name := tc.name
			body := `{"prompt":"logprobs please","max_tokens":5,"logprobs":` + string(rune('0'+tc.n))
			if stream {
				name += " stream"
				body += `,"stream":true,"stream_options":{"include_usage":true}`
			}
			t.Run(name, func(t *testing.T) {
				resp, b := h.must("POST", "/v1/completions", body+"}")
				if resp.StatusCode != 200 {
					t.Fatalf("status %d: %s", resp.StatusCode, b)
				}
				var all completionLogprobs
				var text string
				var completion int
				add := func(raw json.RawMessage) {
					var lp completionLogprobs
					if err := json.Unmarshal(raw, &lp); err != nil {
						t.Fatalf("logprobs %s: %v", raw, err)
					}
					all.TextOffset = append(all.TextOffset, lp.TextOffset...)
					all.TokenLogprobs = append(all.TokenLogprobs, lp.TokenLogprobs...)
					all.Tokens = append(all.Tokens, lp.Tokens...)
					all.TopLogprobs = append(all.TopLogprobs, lp.TopLogprobs...)
				}
				if !stream {
					r := decode[chatResp](t, b)
					text, completion = *r.Choices[0].Text, r.Usage.CompletionTokens
					add(r.Choices[0].Logprobs)
				} else {
					for _, ev := range parseSSE(t, b) {
						if ev.data == "[DONE]" {
							continue
						}
						c := decode[chatResp](t, []byte(ev.data))
						if len(c.Choices) == 0 {
							completion = c.Usage.CompletionTokens
							continue
						}
						text += *c.Choices[0].Text
						add(c.Choices[0].Logprobs)
					}
				}
				if len(all.Tokens) != completion || len(all.TokenLogprobs) != completion || len(all.TextOffset) != completion || len(all.TopLogprobs) != completion {
					t.Fatalf("logprobs %+v: want %d entries in each list", all, completion)
				}
				off := 0
				for i, tok := range all.Tokens {
					if all.TextOffset[i] != off || text[off:off+len(tok)] != tok {
						t.Errorf("token %d %q at offset %d, want %d in %q", i, tok, all.TextOffset[i], off, text)
					}
					off += len(tok)
					if lp, ok := all.TopLogprobs[i][tok]; len(all.TopLogprobs[i]) != tc.top || !ok || lp != all.TokenLogprobs[i] {
						t.Errorf("token %d top_logprobs %v: want %d, the token's own among them", i, all.TopLogprobs[i], tc.top)
					}
				}
				if off != len(text) {
					t.Errorf("tokens spell %d bytes of %q", off, text)
				}
			})
		}
	}
}
