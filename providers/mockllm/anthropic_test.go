package mockllm

import (
	"encoding/json"
	"strings"
	"testing"
)

type anthMessage struct {
	ID           string      `json:"id"`
	Type         string      `json:"type"`
	Role         string      `json:"role"`
	Model        string      `json:"model"`
	StopReason   *string     `json:"stop_reason"`
	StopSequence *string     `json:"stop_sequence"`
	Content      []anthBlock `json:"content"`
	Usage        struct {
		InputTokens  int  `json:"input_tokens"`
		OutputTokens *int `json:"output_tokens"`
	} `json:"usage"`
}

type anthBlock struct {
	Type      string          `json:"type"`
	Thinking  string          `json:"thinking"`
	Signature string          `json:"signature"`
	Text      string          `json:"text"`
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Input     json.RawMessage `json:"input"`
}

var anthHeaders = []string{"x-api-key", "key", "anthropic-version", "2023-06-01"}

// startAnthropic serves the Messages API with room for a preamble and a whole
// weatherTool call under --max-tokens, and text answers that end by themselves under
// messagesBody's max_tokens.
func startAnthropic(t *testing.T) *harness {
	return start(t, Options{API: APIAnthropic, Model: "claude-mock", APIKey: "key", MaxTokens: 32})
}

func messagesBody(content string, extra string) string {
	s := `{"model":"claude-mock","max_tokens":50,"messages":[{"role":"user","content":` + quote(content) + `}]`
	if extra != "" {
		s += "," + extra
	}
	return s + "}"
}

const weatherTool = `"tools":[{"name":"get_weather","description":"Weather now","input_schema":{"type":"object","properties":{"city":{"type":"string"},"unit":{"type":"string","enum":["celsius","fahrenheit"]},"days":{"type":"integer"},"detail":{"type":"object","properties":{"hourly":{"type":"boolean"}}}},"required":["city"]}},{"name":"get_time","input_schema":{"type":"object","properties":{"tz":{"type":"string"}}}}]`

// anthError is the Messages API's error body.
type anthError struct {
	Type  string `json:"type"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
	RequestID string `json:"request_id"`
}

// anthRefused sends body and wants the API's 400 invalid_request_error with a message
// holding want.
func anthRefused(t *testing.T, h *harness, body, want string) {
	t.Helper()
	resp, b := h.must("POST", "/v1/messages", body, anthHeaders...)
	if resp.StatusCode != 400 {
		t.Fatalf("status %d, want 400 (%q): %s", resp.StatusCode, want, b)
	}
	e := decode[anthError](t, b)
	if e.Type != "error" || e.Error.Type != "invalid_request_error" || !strings.Contains(e.Error.Message, want) {
		t.Errorf("error %s, want invalid_request_error with %q", b, want)
	}
}

// anthAccepted sends body and wants a 200.
func anthAccepted(t *testing.T, h *harness, body string) {
	t.Helper()
	resp, b := h.must("POST", "/v1/messages", body, anthHeaders...)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d, want 200: %s", resp.StatusCode, b)
	}
}

func TestMessages(t *testing.T) {
	h := startAnthropic(t)
	cases := []struct {
		name     string
		body     string
		stop     string
		blocks   []string
		toolName string
	}{
		{"text answer cut by max_tokens", `{"model":"claude-mock","max_tokens":3,"messages":[{"role":"user","content":"hi"}]}`, "max_tokens", []string{"text"}, ""},
		{"text answer ends by itself", messagesBody("hi", `"system":"be brief","temperature":0.2,"top_p":0.9`), "end_turn", []string{"text"}, ""},
		{"blocks and system blocks", `{"model":"claude-mock","max_tokens":50,"system":[{"type":"text","text":"sys"}],"messages":[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}}]}]}`, "end_turn", []string{"text"}, ""},
		{"mentioning a tool calls it after a preamble", messagesBody("what does get_weather say for Paris?", weatherTool), "tool_use", []string{"text", "tool_use"}, "get_weather"},
		{"tool_choice tool forces that tool alone", messagesBody("hello", weatherTool+`,"tool_choice":{"type":"tool","name":"get_time"}`), "tool_use", []string{"tool_use"}, "get_time"},
		{"tool_choice any picks the first tool", messagesBody("hello", weatherTool+`,"tool_choice":{"type":"any"}`), "tool_use", []string{"tool_use"}, "get_weather"},
		{"tool_choice none answers in text", messagesBody("use get_weather", weatherTool+`,"tool_choice":{"type":"none"}`), "end_turn", []string{"text"}, ""},
		{"no mention, no tool", messagesBody("hello", weatherTool), "end_turn", []string{"text"}, ""},
		{"temperature and top_p at 1, a padded stop sequence", messagesBody("hi", `"temperature":1,"top_p":1.0,"stop_sequences":[" END "]`), "end_turn", []string{"text"}, ""},
		{"a prefill is continued", `{"model":"claude-mock","max_tokens":50,"messages":[{"role":"user","content":" hi "},{"role":"assistant","content":[{"type":"text","text":"The answer:"}]}]}`, "end_turn", []string{"text"}, ""},
		{"an empty final assistant turn is allowed", `{"model":"claude-mock","max_tokens":50,"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":""}]}`, "end_turn", []string{"text"}, ""},
		{"a tool result is answered in text", `{"model":"claude-mock","max_tokens":50,` + weatherTool + `,"messages":[{"role":"user","content":"get_weather for Oslo"},{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Oslo"}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"12C"}]}]}`, "end_turn", []string{"text"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := h.must("POST", "/v1/messages", tc.body, anthHeaders...)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			m := decode[anthMessage](t, b)
			if !strings.HasPrefix(m.ID, "msg_01") || m.Type != "message" || m.Role != "assistant" || m.Model != "claude-mock" {
				t.Errorf("head %s", b)
			}
			if m.StopReason == nil || *m.StopReason != tc.stop || m.StopSequence != nil {
				t.Errorf("stop_reason %v, want %s", m.StopReason, tc.stop)
			}
			if len(m.Content) != len(tc.blocks) {
				t.Fatalf("content %s", b)
			}
			for i, typ := range tc.blocks {
				if m.Content[i].Type != typ {
					t.Errorf("block %d type %q, want %q", i, m.Content[i].Type, typ)
				}
			}
			last := m.Content[len(m.Content)-1]
			if tc.toolName != "" {
				var in map[string]any
				if last.Name != tc.toolName || !strings.HasPrefix(last.ID, "toolu_01") || json.Unmarshal(last.Input, &in) != nil {
					t.Errorf("tool block %s", b)
				}
				if tc.toolName == "get_weather" {
					if _, ok := in["city"].(string); !ok || in["unit"] != "celsius" {
						t.Errorf("input %s does not follow the schema", last.Input)
					}
					if _, ok := in["days"].(float64); !ok {
						t.Errorf("input %s: days is no number", last.Input)
					}
					if d, ok := in["detail"].(map[string]any); !ok || d["hourly"] == nil {
						t.Errorf("input %s: nested object", last.Input)
					}
				}
			}
			if m.Usage.InputTokens < 1 || m.Usage.OutputTokens == nil || *m.Usage.OutputTokens < 1 {
				t.Errorf("usage %s", b)
			}
		})
	}
}

func TestMessagesStopSequence(t *testing.T) {
	h := startAnthropic(t)
	_, b := h.must("POST", "/v1/messages", messagesBody("stop here", ""), anthHeaders...)
	full := decode[anthMessage](t, b).Content[0].Text
	stop := strings.Fields(full)[2]
	_, b = h.must("POST", "/v1/messages", messagesBody("stop here", `"stop_sequences":[`+quote(stop)+`]`), anthHeaders...)
	m := decode[anthMessage](t, b)
	if m.Content[0].Text != full[:strings.Index(full, stop)] || *m.StopReason != "stop_sequence" || m.StopSequence == nil || *m.StopSequence != stop {
		t.Errorf("full %q, got %s", full, b)
	}
}

// anthStream reads a Messages stream and checks Anthropic's event grammar: every
// event's name equals its data's type; message_start, then per content block a
// content_block_start, deltas and content_block_stop, a ping after the first block
// start, then message_delta and message_stop. It returns the assembled message.
func anthStream(t *testing.T, h *harness, body string) anthMessage {
	t.Helper()
	resp, b := h.must("POST", "/v1/messages", body, anthHeaders...)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" {
		t.Fatalf("status %d %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	evs := parseSSE(t, b)
	var m anthMessage
	var names []string
	var partial []string
	open := -1
	for i, ev := range evs {
		var e struct {
			Type         string          `json:"type"`
			Index        *int            `json:"index"`
			Message      json.RawMessage `json:"message"`
			ContentBlock json.RawMessage `json:"content_block"`
			Delta        json.RawMessage `json:"delta"`
			Usage        json.RawMessage `json:"usage"`
		}
		if err := json.Unmarshal([]byte(ev.data), &e); err != nil || e.Type != ev.name {
			t.Fatalf("event %d %q: %s (%v)", i, ev.name, ev.data, err)
		}
		names = append(names, ev.name)
		switch ev.name {
		case "message_start":
			m = decode[anthMessage](t, e.Message)
			if len(m.Content) != 0 || m.StopReason != nil || m.Usage.InputTokens < 1 {
				t.Errorf("message_start %s", ev.data)
			}
		case "content_block_start":
			if e.Index == nil || *e.Index != len(m.Content) || open >= 0 {
				t.Fatalf("block start %s", ev.data)
			}
			open = *e.Index
			blk := decode[struct {
				Type     string          `json:"type"`
				Text     *string         `json:"text"`
				Thinking *string         `json:"thinking"`
				ID       string          `json:"id"`
				Name     string          `json:"name"`
				Input    json.RawMessage `json:"input"`
			}](t, e.ContentBlock)
			m.Content = append(m.Content, anthBlock{Type: blk.Type, ID: blk.ID, Name: blk.Name})
			partial = append(partial, "")
			if blk.Type == "text" && (blk.Text == nil || *blk.Text != "") || blk.Type == "tool_use" && string(blk.Input) != "{}" ||
				blk.Type == "thinking" && (blk.Thinking == nil || *blk.Thinking != "") {
				t.Errorf("block start %s", ev.data)
			}
		case "content_block_delta":
			if e.Index == nil || *e.Index != open {
				t.Fatalf("delta outside its block: %s", ev.data)
			}
			d := decode[struct {
				Type        string  `json:"type"`
				Text        *string `json:"text"`
				PartialJSON *string `json:"partial_json"`
				Thinking    *string `json:"thinking"`
				Signature   *string `json:"signature"`
			}](t, e.Delta)
			switch {
			case d.Type == "text_delta" && d.Text != nil && m.Content[open].Type == "text":
				m.Content[open].Text += *d.Text
			case d.Type == "thinking_delta" && d.Thinking != nil && m.Content[open].Type == "thinking":
				m.Content[open].Thinking += *d.Thinking
			case d.Type == "signature_delta" && d.Signature != nil && m.Content[open].Type == "thinking":
				m.Content[open].Signature += *d.Signature
			case d.Type == "input_json_delta" && d.PartialJSON != nil && m.Content[open].Type == "tool_use":
				partial[open] += *d.PartialJSON
			default:
				t.Fatalf("delta %s in a %s block", ev.data, m.Content[open].Type)
			}
		case "content_block_stop":
			if e.Index == nil || *e.Index != open {
				t.Fatalf("stop %s", ev.data)
			}
			if m.Content[open].Type == "tool_use" {
				m.Content[open].Input = json.RawMessage(partial[open])
			}
			open = -1
		case "message_delta":
			var d struct {
				StopReason   *string `json:"stop_reason"`
				StopSequence *string `json:"stop_sequence"`
			}
			if err := json.Unmarshal(e.Delta, &d); err != nil {
				t.Fatal(err)
			}
			m.StopReason, m.StopSequence = d.StopReason, d.StopSequence
			var u struct {
				OutputTokens *int `json:"output_tokens"`
			}
			if err := json.Unmarshal(e.Usage, &u); err != nil || u.OutputTokens == nil {
				t.Fatalf("message_delta usage %s", ev.data)
			}
			m.Usage.OutputTokens = u.OutputTokens
		case "ping", "message_stop":
		default:
			t.Fatalf("unknown event %q", ev.name)
		}
	}
	got := strings.Join(names, ",")
	if !strings.HasPrefix(got, "message_start,content_block_start,ping,") || !strings.HasSuffix(got, ",message_delta,message_stop") {
		t.Errorf("event order %s", got)
	}
	// Only max_tokens leaves a tool input unfinished, as the API does.
	for _, blk := range m.Content {
		if blk.Type == "tool_use" && (m.StopReason == nil || *m.StopReason != "max_tokens") && !json.Valid(blk.Input) {
			t.Errorf("joined partial_json %q is not JSON", blk.Input)
		}
	}
	return m
}

// TestMessagesMaxTokensCutsToolCalls: the Messages API never generates past
// max_tokens, nor mockllm past --max-tokens, tool calls included: a call without room
// for its input stops with stop_reason "max_tokens" and the input cut short (the
// members generated whole in the answer, the bytes generated in the stream), and one
// whose preamble used up max_tokens is never begun.
func TestMessagesMaxTokensCutsToolCalls(t *testing.T) {
	body := func(maxTokens, content, extra string) string {
		return `{"model":"claude-mock","max_tokens":` + maxTokens + `,"messages":[{"role":"user","content":` +
			quote(content) + `}],` + weatherTool + extra + `}`
	}
	// The whole input the calls below cut: the prompt alone decides it.
	_, b := startAnthropic(t).must("POST", "/v1/messages", body("50", "hello", `,"tool_choice":{"type":"any"}`), anthHeaders...)
	full := decode[anthMessage](t, b)
	if len(full.Content) != 1 || *full.StopReason != "tool_use" || *full.Usage.OutputTokens <= 5 {
		t.Fatalf("uncut call %s", b)
	}
	cases := []struct {
		name   string
		cap    int // --max-tokens
		body   string
		limit  int
		blocks []string
	}{
		{"max_tokens ends the preamble before the call", 64, body("2", "call get_weather now", ""), 2, []string{"text"}},
		{"max_tokens cuts the tool input", 64, body("5", "hello", `,"tool_choice":{"type":"any"}`), 5, []string{"tool_use"}},
		{"--max-tokens cuts the tool input", 5, body("1000", "hello", `,"tool_choice":{"type":"any"}`), 5, []string{"tool_use"}},
		{"max_tokens of one leaves the input an empty object", 64, body("1", "hello", `,"tool_choice":{"type":"any"}`), 1, []string{"tool_use"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, Options{API: APIAnthropic, Model: "claude-mock", APIKey: "key", MaxTokens: tc.cap})
			_, b := h.must("POST", "/v1/messages", tc.body, anthHeaders...)
			plain := decode[anthMessage](t, b)
			streamed := anthStream(t, h, strings.Replace(tc.body, "{", `{"stream":true,`, 1))
			for _, m := range []anthMessage{plain, streamed} {
				var types []string
				for _, blk := range m.Content {
					types = append(types, blk.Type)
				}
				if *m.StopReason != "max_tokens" || *m.Usage.OutputTokens != tc.limit || strings.Join(types, ",") != strings.Join(tc.blocks, ",") {
					t.Errorf("stop_reason %s, output_tokens %d, blocks %v; want max_tokens, %d, %v", *m.StopReason, *m.Usage.OutputTokens, types, tc.limit, tc.blocks)
				}
			}
			if len(plain.Content) != len(streamed.Content) || plain.Content[0].Text != streamed.Content[0].Text {
				t.Fatalf("plain %+v, stream %+v", plain.Content, streamed.Content)
			}
			last := len(plain.Content) - 1
			if plain.Content[last].Type != "tool_use" {
				return
			}
			var got, whole map[string]json.RawMessage
			if err := json.Unmarshal(plain.Content[last].Input, &got); err != nil {
				t.Fatalf("input %s: %v", plain.Content[last].Input, err)
			}
			if err := json.Unmarshal(full.Content[0].Input, &whole); err != nil {
				t.Fatal(err)
			}
			for k, v := range got {
				if string(whole[k]) != string(v) {
					t.Errorf("input %s is not part of %s", plain.Content[last].Input, full.Content[0].Input)
				}
			}
			in := string(streamed.Content[last].Input)
			if len(in) > 4*tc.limit || len(in) >= len(full.Content[0].Input) || !strings.HasPrefix(string(full.Content[0].Input), in) {
				t.Errorf("streamed input %q is not the start of %s", in, full.Content[0].Input)
			}
		})
	}
}

func TestMessagesStream(t *testing.T) {
	h := startAnthropic(t)
	cases := []struct {
		name string
		body string
	}{
		{"text", messagesBody("stream a story", "")},
		{"text cut by max_tokens", `{"model":"claude-mock","max_tokens":2,"messages":[{"role":"user","content":"x"}]}`},
		{"preamble and tool", messagesBody("call get_weather now", weatherTool)},
		{"forced tool", messagesBody("hello", weatherTool+`,"tool_choice":{"type":"tool","name":"get_weather"}`)},
		{"stop sequence", messagesBody("stream a story", `"stop_sequences":["a","e"]`)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := anthStream(t, h, strings.Replace(tc.body, "{", `{"stream":true,`, 1))
			_, b := h.must("POST", "/v1/messages", tc.body, anthHeaders...)
			want := decode[anthMessage](t, b)
			if len(got.Content) != len(want.Content) {
				t.Fatalf("stream blocks %+v, plain %s", got.Content, b)
			}
			for i := range want.Content {
				g, w := got.Content[i], want.Content[i]
				if g.Type != w.Type || g.Text != w.Text || g.Name != w.Name || string(g.Input) != string(w.Input) {
					t.Errorf("block %d: stream %+v, plain %+v", i, g, w)
				}
			}
			if *got.StopReason != *want.StopReason || *got.Usage.OutputTokens != *want.Usage.OutputTokens {
				t.Errorf("stream stop %v/%d, plain %v/%d", *got.StopReason, *got.Usage.OutputTokens, *want.StopReason, *want.Usage.OutputTokens)
			}
			if (got.StopSequence == nil) != (want.StopSequence == nil) {
				t.Errorf("stop_sequence %v vs %v", got.StopSequence, want.StopSequence)
			}
		})
	}
	t.Run("cut stream has no message_stop", func(t *testing.T) {
		_, b, err := h.do("POST", "/v1/messages", messagesBody("x", `"stream":true`), append(anthHeaders, "x-mock-cut-after", "1")...)
		if err == nil || strings.Contains(string(b), "message_stop") || strings.Count(string(b), "text_delta") != 1 {
			t.Errorf("err %v: %s", err, b)
		}
	})
}

func TestMessagesErrors(t *testing.T) {
	h := startAnthropic(t)
	cases := []struct {
		name, method, path, body string
		hdr                      []string
		status                   int
		typ, msg                 string
	}{
		{"missing key", "POST", "/v1/messages", messagesBody("x", ""), []string{"anthropic-version", "2023-06-01"}, 401, "authentication_error", "x-api-key header is required"},
		{"wrong key", "POST", "/v1/messages", messagesBody("x", ""), []string{"x-api-key", "nope", "anthropic-version", "2023-06-01"}, 401, "authentication_error", "invalid x-api-key"},
		{"missing version", "POST", "/v1/messages", messagesBody("x", ""), []string{"x-api-key", "key"}, 400, "invalid_request_error", "anthropic-version: header is required"},
		{"missing max_tokens", "POST", "/v1/messages", `{"model":"claude-mock","messages":[{"role":"user","content":"x"}]}`, anthHeaders, 400, "invalid_request_error", "max_tokens: Field required"},
		{"missing model", "POST", "/v1/messages", `{"max_tokens":5,"messages":[{"role":"user","content":"x"}]}`, anthHeaders, 400, "invalid_request_error", "model: Field required"},
		{"missing messages", "POST", "/v1/messages", `{"model":"claude-mock","max_tokens":5}`, anthHeaders, 400, "invalid_request_error", "messages: Field required"},
		{"empty messages", "POST", "/v1/messages", `{"model":"claude-mock","max_tokens":5,"messages":[]}`, anthHeaders, 400, "invalid_request_error", "messages: at least one message is required"},
		{"malformed JSON", "POST", "/v1/messages", `{"model"`, anthHeaders, 400, "invalid_request_error", "JSON decode error"},
		{"unknown model", "POST", "/v1/messages", `{"model":"claude-9","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`, anthHeaders, 404, "not_found_error", "model: claude-9"},
		{"bad tool_choice", "POST", "/v1/messages", messagesBody("x", weatherTool+`,"tool_choice":{"type":"maybe"}`), anthHeaders, 400, "invalid_request_error", ""},
		{"system role in messages", "POST", "/v1/messages", `{"model":"claude-mock","max_tokens":5,"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}]}`, anthHeaders, 400, "invalid_request_error", "messages: Unexpected role \"system\". The Messages API accepts a top-level `system` parameter, not \"system\" as an input message role."},
		{"tool role in messages", "POST", "/v1/messages", `{"model":"claude-mock","max_tokens":5,"messages":[{"role":"user","content":"hi"},{"role":"tool","content":"12C"}]}`, anthHeaders, 400, "invalid_request_error", "messages.1.role: Input should be 'user' or 'assistant'"},
		{"message without content", "POST", "/v1/messages", `{"model":"claude-mock","max_tokens":5,"messages":[{"role":"user"}]}`, anthHeaders, 400, "invalid_request_error", "messages.0.content: Field required"},
		{"empty user content", "POST", "/v1/messages", `{"model":"claude-mock","max_tokens":5,"messages":[{"role":"user","content":""}]}`, anthHeaders, 400, "invalid_request_error", "messages.0: all messages must have non-empty content except for the optional final assistant message"},
		{"empty assistant content before the last turn", "POST", "/v1/messages", `{"model":"claude-mock","max_tokens":5,"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":[]},{"role":"user","content":"hi"}]}`, anthHeaders, 400, "invalid_request_error", "messages.1: all messages must have non-empty content except for the optional final assistant message"},
		{"whitespace-only text block", "POST", "/v1/messages", `{"model":"claude-mock","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"text","text":" \n"}]}]}`, anthHeaders, 400, "invalid_request_error", "messages: text content blocks must contain non-whitespace text"},
		{"whitespace-only string content", "POST", "/v1/messages", messagesBody("\t", ""), anthHeaders, 400, "invalid_request_error", "messages: text content blocks must contain non-whitespace text"},
		{"empty text block", "POST", "/v1/messages", `{"model":"claude-mock","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":""}]}]}`, anthHeaders, 400, "invalid_request_error", "messages: text content blocks must be non-empty"},
		{"whitespace-only system block", "POST", "/v1/messages", messagesBody("hi", `"system":[{"type":"text","text":"  "}]`), anthHeaders, 400, "invalid_request_error", "system: text content blocks must contain non-whitespace text"},
		{"prefill ending in whitespace", "POST", "/v1/messages", `{"model":"claude-mock","max_tokens":5,"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"` + "```json\\n" + `"}]}`, anthHeaders, 400, "invalid_request_error", "messages: final assistant content cannot end with trailing whitespace"},
		{"empty stop sequence", "POST", "/v1/messages", messagesBody("hi", `"stop_sequences":["END",""]`), anthHeaders, 400, "invalid_request_error", "stop_sequences: each stop sequence must be non-empty"},
		{"whitespace-only stop sequence", "POST", "/v1/messages", messagesBody("hi", `"stop_sequences":["\n"]`), anthHeaders, 400, "invalid_request_error", "stop_sequences: each stop sequence must contain non-whitespace"},
		{"temperature above 1", "POST", "/v1/messages", messagesBody("hi", `"temperature":1.5`), anthHeaders, 400, "invalid_request_error", "temperature: range: 0..1"},
		{"temperature below 0", "POST", "/v1/messages", messagesBody("hi", `"temperature":-0.1`), anthHeaders, 400, "invalid_request_error", "temperature: range: 0..1"},
		{"temperature as a string", "POST", "/v1/messages", messagesBody("hi", `"temperature":"0.5"`), anthHeaders, 400, "invalid_request_error", "temperature: Input should be a valid number"},
		{"top_p above 1", "POST", "/v1/messages", messagesBody("hi", `"top_p":1e1`), anthHeaders, 400, "invalid_request_error", "top_p: range: 0..1"},
		{"x-mock-status overloaded", "POST", "/v1/messages", messagesBody("x", ""), append([]string{"x-mock-status", "529"}, anthHeaders...), 529, "overloaded_error", ""},
		{"openai route is not served", "POST", "/v1/chat/completions", "{}", anthHeaders, 404, "not_found_error", "Not Found"},
		{"wrong method", "GET", "/v1/messages", "", anthHeaders, 405, "invalid_request_error", "Method Not Allowed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := h.must(tc.method, tc.path, tc.body, tc.hdr...)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
			}
			e := decode[struct {
				Type  string `json:"type"`
				Error struct {
					Type    string `json:"type"`
					Message string `json:"message"`
				} `json:"error"`
			}](t, b)
			if e.Type != "error" || e.Error.Type != tc.typ || tc.msg != "" && e.Error.Message != tc.msg {
				t.Errorf("body %s, want %s %q", b, tc.typ, tc.msg)
			}
		})
	}
}

func TestAnthropicModels(t *testing.T) {
	h := startAnthropic(t)
	_, b := h.must("GET", "/v1/models", "", anthHeaders...)
	r := decode[struct {
		Data []struct {
			Type      string `json:"type"`
			ID        string `json:"id"`
			CreatedAt string `json:"created_at"`
		} `json:"data"`
		HasMore bool `json:"has_more"`
	}](t, b)
	if len(r.Data) != 1 || r.Data[0].ID != "claude-mock" || r.Data[0].Type != "model" || r.Data[0].CreatedAt != "2023-11-14T22:13:20Z" {
		t.Errorf("%s", b)
	}
}
