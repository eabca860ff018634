package mockllm

import (
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// thinkingBody is a request with extended thinking on and room for it.
func thinkingBody(content, extra string) string {
	s := `{"model":"claude-mock","max_tokens":2048,"thinking":{"type":"enabled","budget_tokens":1024},` +
		`"messages":[{"role":"user","content":` + quote(content) + `}]`
	if extra != "" {
		s += "," + extra
	}
	return s + "}"
}

// thinkingMember is a request's thinking object.
var thinkingMember = regexp.MustCompile(`"thinking":\{[^}]*\}`)

// TestMessagesThinking: with thinking on, the answer opens with a thinking block, its
// text and signature the same buffered and streamed (thinking_delta per word, then
// signature_delta), and its tokens count in output_tokens.
func TestMessagesThinking(t *testing.T) {
	h := startAnthropic(t)
	for _, c := range []struct {
		name, body string
		blocks     []string
	}{
		{"text", thinkingBody("hi", ""), []string{"thinking", "text"}},
		{"adaptive", strings.Replace(thinkingBody("hi", ""), `{"type":"enabled","budget_tokens":1024}`, `{"type":"adaptive"}`, 1), []string{"thinking", "text"}},
		{"tool call after a preamble", thinkingBody("what does get_weather say for Paris?", weatherTool), []string{"thinking", "text", "tool_use"}},
		{"temperature 1 and top_p 0.95 are allowed", thinkingBody("hi", `"temperature":1,"top_p":0.95`), []string{"thinking", "text"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, b := h.must("POST", "/v1/messages", c.body, anthHeaders...)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			m := decode[anthMessage](t, b)
			var types []string
			for _, blk := range m.Content {
				types = append(types, blk.Type)
			}
			if !reflect.DeepEqual(types, c.blocks) {
				t.Fatalf("blocks %v, want %v: %s", types, c.blocks, b)
			}
			th := m.Content[0]
			if !strings.HasPrefix(th.Thinking, "Thinking it over: ") || len(strings.Fields(th.Thinking)) != 3+thinkingWords {
				t.Errorf("thinking %q", th.Thinking)
			}
			if want := string(appendThinkingSignature(nil, []byte(th.Thinking))); th.Signature != want {
				t.Errorf("signature %q, want %q", th.Signature, want)
			}
			s := anthStream(t, h, strings.TrimSuffix(c.body, "}")+`,"stream":true}`)
			for i := range s.Content {
				if i < len(m.Content) {
					// Every answer has tool_use ids of its own.
					s.Content[i].ID = m.Content[i].ID
				}
			}
			if !reflect.DeepEqual(s.Content, m.Content) {
				t.Errorf("stream put together\n%+v\nanswer\n%+v", s.Content, m.Content)
			}
			if *s.Usage.OutputTokens != *m.Usage.OutputTokens {
				t.Errorf("stream output_tokens %d, answer %d", *s.Usage.OutputTokens, *m.Usage.OutputTokens)
			}
			// The same request with thinking disabled (a renamed member is an extra input
			// the API refuses).
			off := thinkingMember.ReplaceAllString(c.body, `"thinking":{"type":"disabled"}`)
			plain, pb := h.must("POST", "/v1/messages", off, anthHeaders...)
			if plain.StatusCode != 200 {
				t.Fatalf("without thinking: status %d: %s", plain.StatusCode, pb)
			}
			if pm := decode[anthMessage](t, pb); *m.Usage.OutputTokens != *pm.Usage.OutputTokens+3+thinkingWords {
				t.Errorf("output_tokens %d with thinking, %d without: thinking tokens not counted", *m.Usage.OutputTokens, *pm.Usage.OutputTokens)
			}
		})
	}
}

// TestMessagesThinkingToolLoop: with thinking on, the last assistant turn of a
// tool-use loop must begin with the thinking block the answer gave, signature intact,
// as the Messages API requires; without thinking the turn needs none and may hold
// none. No assistant turn may end with a thinking block or mark one for caching.
func TestMessagesThinkingToolLoop(t *testing.T) {
	h := startAnthropic(t)
	resp, b := h.must("POST", "/v1/messages", thinkingBody("what does get_weather say for Paris?", weatherTool), anthHeaders...)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	m := decode[anthMessage](t, b)
	thinkingBlock, _ := json.Marshal(m.Content[0])
	var use anthBlock
	for _, blk := range m.Content {
		if blk.Type == "tool_use" {
			use = blk
		}
	}
	if use.ID == "" {
		t.Fatalf("no tool call: %s", b)
	}
	toolUse := `{"type":"tool_use","id":"` + use.ID + `","name":"get_weather","input":` + string(use.Input) + `}`
	loop := func(thinking, assistant string) string {
		return `{"model":"claude-mock","max_tokens":2048,` + thinking + weatherTool + `,"messages":[` +
			`{"role":"user","content":"what does get_weather say for Paris?"},` +
			`{"role":"assistant","content":[` + assistant + `]},` +
			`{"role":"user","content":[{"type":"tool_result","tool_use_id":"` + use.ID + `","content":"18C"}]}]}`
	}
	const on = `"thinking":{"type":"enabled","budget_tokens":1024},`
	ok := []struct{ name, body string }{
		{"thinking block sent back", loop(on, string(thinkingBlock)+","+toolUse)},
		{"redacted thinking first", loop(on, `{"type":"redacted_thinking","data":"EmwK"},`+toolUse)},
		{"thinking off needs none", loop("", toolUse)},
	}
	for _, c := range ok {
		t.Run(c.name, func(t *testing.T) {
			if resp, b := h.must("POST", "/v1/messages", c.body, anthHeaders...); resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
		})
	}
	tampered := strings.Replace(string(thinkingBlock), "Thinking it over", "Thinking it through", 1)
	refused := []struct{ name, body, msg string }{
		{"thinking block left out", loop(on, `{"type":"text","text":"Let me check."},`+toolUse),
			"messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found `text`. When `thinking` is enabled, a final `assistant` message must start with a thinking block"},
		{"thinking text changed", loop(on, tampered+","+toolUse), "messages.1.content.0: Invalid `signature` in `thinking` block"},
		{"signature missing", loop(on, `{"type":"thinking","thinking":"hmm"},`+toolUse), "messages.1.content.0.thinking.signature: Field required"},
		{"thinking block with thinking off", loop("", string(thinkingBlock)+","+toolUse),
			"messages.1.content.0: When thinking is disabled, an `assistant` message in the final position cannot contain `thinking`."},
		{"redacted block with thinking disabled", loop(`"thinking":{"type":"disabled"},`, `{"type":"redacted_thinking","data":"EmwK"},`+toolUse),
			"messages.1.content.0: When thinking is disabled, an `assistant` message in the final position cannot contain `thinking`."},
		{"cache_control on a thinking block", loop(on, strings.TrimSuffix(string(thinkingBlock), "}")+`,"cache_control":{"type":"ephemeral"}},`+toolUse),
			"messages.1.content.0.thinking.cache_control: Extra inputs are not permitted"},
		{"turn of thinking alone", `{"model":"claude-mock","max_tokens":2048,` + on + `"messages":[{"role":"user","content":"hi"},` +
			`{"role":"assistant","content":[` + string(thinkingBlock) + `]},{"role":"user","content":"go on"}]}`,
			"messages.1: The final block in an assistant message cannot be `thinking`."},
		{"turn ending with redacted thinking", `{"model":"claude-mock","max_tokens":2048,` + on + `"messages":[{"role":"user","content":"hi"},` +
			`{"role":"assistant","content":[{"type":"text","text":"Hm."},{"type":"redacted_thinking","data":"EmwK"}]},{"role":"user","content":"go on"}]}`,
			"messages.1: The final block in an assistant message cannot be `thinking`."},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			resp, b := h.must("POST", "/v1/messages", c.body, anthHeaders...)
			if resp.StatusCode != 400 || !strings.Contains(string(b), c.msg) {
				t.Fatalf("status %d: %s, want 400 %q", resp.StatusCode, b, c.msg)
			}
		})
	}
}

// TestMessagesThinkingErrors: what the Messages API refuses around thinking, in its
// words.
func TestMessagesThinkingErrors(t *testing.T) {
	h := startAnthropic(t)
	for _, c := range []struct{ name, body, msg string }{
		{"budget under 1024", strings.Replace(thinkingBody("hi", ""), "1024", "1000", 1), "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"},
		{"budget not under max_tokens", strings.Replace(thinkingBody("hi", ""), `"max_tokens":2048`, `"max_tokens":1024`, 1), "`max_tokens` must be greater than `thinking.budget_tokens`."},
		{"no budget", strings.Replace(thinkingBody("hi", ""), `,"budget_tokens":1024`, "", 1), "thinking.enabled.budget_tokens: Field required"},
		{"unknown type", strings.Replace(thinkingBody("hi", ""), `"enabled"`, `"on"`, 1), "thinking: Input tag does not match"},
		{"not an object", messagesBody("hi", `"thinking":true`), "thinking: Input should be a valid dictionary"},
		{"temperature", thinkingBody("hi", `"temperature":0.5`), "`temperature` may only be set to 1 when thinking is enabled"},
		{"top_k", thinkingBody("hi", `"top_k":40`), "`top_k` must be unset when thinking is enabled"},
		{"top_p under 0.95", thinkingBody("hi", `"top_p":0.9`), "`top_p` must be greater than or equal to 0.95"},
		{"tool_choice any", thinkingBody("hi", weatherTool+`,"tool_choice":{"type":"any"}`), "Thinking may not be enabled when `tool_choice` forces tool use."},
		{"tool_choice tool", thinkingBody("hi", weatherTool+`,"tool_choice":{"type":"tool","name":"get_time"}`), "Thinking may not be enabled when `tool_choice` forces tool use."},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, b := h.must("POST", "/v1/messages", c.body, anthHeaders...)
			if resp.StatusCode != 400 || !strings.Contains(string(b), c.msg) || !strings.Contains(string(b), "invalid_request_error") {
				t.Fatalf("status %d: %s, want 400 %q", resp.StatusCode, b, c.msg)
			}
		})
	}
	t.Run("disabled takes any sampling", func(t *testing.T) {
		body := messagesBody("hi", `"thinking":{"type":"disabled"},"temperature":0.2,"top_k":5`)
		if resp, b := h.must("POST", "/v1/messages", body, anthHeaders...); resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
	})
}
