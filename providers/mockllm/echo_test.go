package mockllm

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestCompletionsEcho: vLLM's CompletionRequest takes echo (OpenAI's legacy
// parameter): the choice's text is the prompt followed by the completion.
func TestCompletionsEcho(t *testing.T) {
	h := start(t, Options{})
	const prompt = "Once upon a time"
	resp, b := h.must("POST", "/v1/completions", `{"model":"mock-1","prompt":"`+prompt+`","max_tokens":3,"echo":true}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	r := decode[chatResp](t, b)
	if text := *r.Choices[0].Text; !strings.HasPrefix(text, prompt) {
		t.Errorf("echo: text %q, want it to begin with the prompt %q", text, prompt)
	}
}

// completionText is the text of each choice of a completions answer, streamed or not,
// and its usage.
func completionText(t *testing.T, h *harness, body string) ([]string, *usage) {
	t.Helper()
	resp, b := h.must("POST", "/v1/completions", body)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	if !strings.Contains(body, `"stream":true`) {
		r := decode[chatResp](t, b)
		var texts []string
		for _, c := range r.Choices {
			texts = append(texts, *c.Text)
		}
		return texts, r.Usage
	}
	var texts []string
	var u *usage
	for _, ev := range parseSSE(t, b) {
		if ev.data == "[DONE]" {
			continue
		}
		c := decode[chatResp](t, []byte(ev.data))
		if len(c.Choices) == 0 {
			u = c.Usage
			continue
		}
		for len(texts) <= c.Choices[0].Index {
			texts = append(texts, "")
		}
		texts[c.Choices[0].Index] += *c.Choices[0].Text
	}
	return texts, u
}

// TestCompletionsEchoPrompts: each choice echoes its own prompt before the completion
// it would have without echo, streamed or not (a stream in its first chunk); a text
// prompt comes back as sent, escapes decoded, and a token-id prompt as /detokenize
// spells it, as vLLM detokenizes a token prompt for echo.
func TestCompletionsEchoPrompts(t *testing.T) {
	h := start(t, Options{MaxTokens: 8})
	_, b := h.must("POST", "/detokenize", `{"tokens":[1,2,70]}`)
	ids := decode[struct {
		Prompt string `json:"prompt"`
	}](t, b).Prompt
	cases := []struct {
		name, prompt, extra string
		want                []string // the prompt of each choice
	}{
		{"text", `"Once upon a time"`, "", []string{"Once upon a time"}},
		{"escapes", `"say \"hi\"\n\u00e9<b>"`, "", []string{"say \"hi\"\né<b>"}},
		{"token ids", `[1,2,70]`, "", []string{ids}},
		{"two prompts, two choices each", `["one","two"]`, `,"n":2`, []string{"one", "one", "two", "two"}},
	}
	for _, tc := range cases {
		for _, stream := range []bool{false, true} {
			name := tc.name
			body := `{"prompt":` + tc.prompt + `,"max_tokens":4` + tc.extra
			if stream {
				name += " stream"
				body += `,"stream":true,"stream_options":{"include_usage":true}`
			}
			t.Run(name, func(t *testing.T) {
				plain, pu := completionText(t, h, body+"}")
				echoed, eu := completionText(t, h, body+`,"echo":true}`)
				if len(echoed) != len(tc.want) || len(plain) != len(tc.want) {
					t.Fatalf("choices %q and %q, want %d", echoed, plain, len(tc.want))
				}
				for i := range echoed {
					if echoed[i] != tc.want[i]+plain[i] {
						t.Errorf("choice %d: %q, want the prompt %q then %q", i, echoed[i], tc.want[i], plain[i])
					}
				}
				if *eu != *pu {
					t.Errorf("usage %+v with echo, %+v without", *eu, *pu)
				}
			})
		}
	}
}

// echoLogprobs decodes CompletionLogProbs whose first entry, a prompt's first token,
// has no logprob.
type echoLogprobs struct {
	TextOffset    []int                `json:"text_offset"`
	TokenLogprobs []*float64           `json:"token_logprobs"`
	Tokens        []string             `json:"tokens"`
	TopLogprobs   []map[string]float64 `json:"top_logprobs"`
}

// TestCompletionsEchoLogprobs: with echo, vLLM asks for prompt logprobs as many as
// logprobs, and lists the prompt's tokens before the completion's: one per prompt
// token, the first without a logprob or candidates, the tokens spelling the text, at
// offsets that count characters.
func TestCompletionsEchoLogprobs(t *testing.T) {
	h := start(t, Options{MaxTokens: 8})
	for _, prompt := range []string{`"Once upon a time"`, `"héllo wörld ☃ and \"more\""`, `[5,6,7]`} {
		for _, stream := range []bool{false, true} {
			name := prompt
			body := `{"prompt":` + prompt + `,"max_tokens":5,"logprobs":2,"echo":true`
			if stream {
				name += " stream"
				body += `,"stream":true,"stream_options":{"include_usage":true}`
			}
			t.Run(name, func(t *testing.T) {
				resp, b := h.must("POST", "/v1/completions", body+"}")
				if resp.StatusCode != 200 {
					t.Fatalf("status %d: %s", resp.StatusCode, b)
				}
				var all echoLogprobs
				var text string
				var u *usage
				add := func(raw json.RawMessage) {
					var lp echoLogprobs
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
					text, u = *r.Choices[0].Text, r.Usage
					add(r.Choices[0].Logprobs)
				} else {
					for _, ev := range parseSSE(t, b) {
						if ev.data == "[DONE]" {
							continue
						}
						c := decode[chatResp](t, []byte(ev.data))
						if len(c.Choices) == 0 {
							u = c.Usage
							continue
						}
						text += *c.Choices[0].Text
						add(c.Choices[0].Logprobs)
					}
				}
				n := u.PromptTokens + u.CompletionTokens
				if len(all.Tokens) != n || len(all.TokenLogprobs) != n || len(all.TextOffset) != n || len(all.TopLogprobs) != n {
					t.Fatalf("logprobs %+v: want %d entries in each list, the prompt's and the completion's", all, n)
				}
				if all.TokenLogprobs[0] != nil || all.TopLogprobs[0] != nil {
					t.Errorf("the prompt's first token has logprob %v, candidates %v; want null", all.TokenLogprobs[0], all.TopLogprobs[0])
				}
				runes := []rune(text)
				off := 0
				for i, tok := range all.Tokens {
					l := utf8.RuneCountInString(tok)
					if all.TextOffset[i] != off || off+l > len(runes) || string(runes[off:off+l]) != tok {
						t.Errorf("token %d %q at offset %d, want %d in %q", i, tok, all.TextOffset[i], off, text)
					}
					off += l
					if i == 0 {
						continue
					}
					if lp, ok := all.TopLogprobs[i][tok]; len(all.TopLogprobs[i]) != 2 || !ok || all.TokenLogprobs[i] == nil || lp != *all.TokenLogprobs[i] {
						t.Errorf("token %d %q: top_logprobs %v, logprob %v; want 2, the token's own among them", i, tok, all.TopLogprobs[i], all.TokenLogprobs[i])
					}
				}
				if off != len(runes) {
					t.Errorf("tokens spell %d characters of %q", off, text)
				}
			})
		}
	}
}

// TestCompletionsSuffix: vLLM's create_completion refuses suffix, once the model is
// known; null is no suffix.
func TestCompletionsSuffix(t *testing.T) {
	h := start(t, Options{})
	cases := []struct {
		name, body string
		status     int
		want       string // exact body; "" for any
	}{
		{"refused", `{"prompt":"hi","suffix":"end"}`, 400,
			`{"error":{"message":"suffix is not currently supported","type":"BadRequestError","param":null,"code":400}}`},
		{"null is none", `{"prompt":"hi","suffix":null}`, 200, ""},
		{"the model is checked first", `{"model":"other","prompt":"hi","suffix":"end"}`, 404, ""},
		{"not a string", `{"prompt":"hi","suffix":3}`, 400,
			`{"error":{"message":"suffix: Input should be a valid string","type":"Bad Request","param":null,"code":400}}`},
		{"echo not a boolean", `{"prompt":"hi","echo":"yes"}`, 400,
			`{"error":{"message":"echo: Input should be a valid boolean","type":"Bad Request","param":null,"code":400}}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := h.must("POST", "/v1/completions", tc.body)
			if resp.StatusCode != tc.status || tc.want != "" && string(b) != tc.want {
				t.Errorf("%d %s\nwant %d %s", resp.StatusCode, b, tc.status, tc.want)
			}
		})
	}
}
