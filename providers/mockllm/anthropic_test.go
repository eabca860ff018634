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
	Type  string          `json:"type"`
	Text  string          `json:"text"`
	ID    string          `json:"id"`
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input"`
}

var anthHeaders = []string{"x-api-key", "key", "anthropic-version", "2023-06-01"}

func startAnthropic(t *testing.T) *harness {
	return start(t, Options{API: APIAnthropic, Model: "claude-mock", APIKey: "key", MaxTokens: 20})
}

func messagesBody(content string, extra string) string {
	s := `{"model":"claude-mock","max_tokens":50,"messages":[{"role":"user","content":` + quote(content) + `}]`
	if extra != "" {
		s += "," + extra
	}
	return s + "}"
}

const weatherTool = `"tools":[{"name":"get_weather","description":"Weather now","input_schema":{"type":"object","properties":{"city":{"type":"string"},"unit":{"type":"string","enum":["celsius","fahrenheit"]},"days":{"type":"integer"},"detail":{"type":"object","properties":{"hourly":{"type":"boolean"}}}},"required":["city"]}},{"name":"get_time","input_schema":{"type":"object","properties":{"tz":{"type":"string"}}}}]`

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
				Type  string          `json:"type"`
				Text  *string         `json:"text"`
				ID    string          `json:"id"`
				Name  string          `json:"name"`
				Input json.RawMessage `json:"input"`
			}](t, e.ContentBlock)
			m.Content = append(m.Content, anthBlock{Type: blk.Type, ID: blk.ID, Name: blk.Name})
			partial = append(partial, "")
			if blk.Type == "text" && (blk.Text == nil || *blk.Text != "") || blk.Type == "tool_use" && string(blk.Input) != "{}" {
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
			}](t, e.Delta)
			switch {
			case d.Type == "text_delta" && d.Text != nil && m.Content[open].Type == "text":
				m.Content[open].Text += *d.Text
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
				if !json.Valid([]byte(partial[open])) {
					t.Fatalf("joined partial_json %q is not JSON", partial[open])
				}
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
	return m
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
