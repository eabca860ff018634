package mockllm

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// searchTool is the web search server tool with extra members.
func searchTool(extra string) string {
	return `{"type":"web_search_20250305","name":"web_search"` + extra + `}`
}

type searchCitation struct {
	Type           string `json:"type"`
	URL            string `json:"url"`
	Title          string `json:"title"`
	EncryptedIndex string `json:"encrypted_index"`
	CitedText      string `json:"cited_text"`
}

type searchBlock struct {
	Type      string           `json:"type"`
	ID        string           `json:"id"`
	Name      string           `json:"name"`
	Input     json.RawMessage  `json:"input"`
	ToolUseID string           `json:"tool_use_id"`
	Content   json.RawMessage  `json:"content"`
	Text      string           `json:"text"`
	Thinking  string           `json:"thinking"`
	Citations []searchCitation `json:"citations"`
}

type searchUsage struct {
	InputTokens   int `json:"input_tokens"`
	OutputTokens  int `json:"output_tokens"`
	ServerToolUse *struct {
		WebSearchRequests int `json:"web_search_requests"`
	} `json:"server_tool_use"`
}

type searchMessage struct {
	StopReason string        `json:"stop_reason"`
	Content    []searchBlock `json:"content"`
	Usage      searchUsage   `json:"usage"`
}

func (m searchMessage) types() []string {
	var ts []string
	for _, b := range m.Content {
		ts = append(ts, b.Type)
	}
	return ts
}

func (m searchMessage) requests() int {
	if m.Usage.ServerToolUse == nil {
		return -1
	}
	return m.Usage.ServerToolUse.WebSearchRequests
}

// withoutIDs is m with its block ids left out, ids being fresh in every answer; each
// web_search_tool_result must answer the server_tool_use just before it.
func withoutIDs(t *testing.T, m searchMessage) searchMessage {
	t.Helper()
	c := m
	c.Content = append([]searchBlock(nil), m.Content...)
	for i := range c.Content {
		if b := &c.Content[i]; b.Type == "web_search_tool_result" && (i == 0 || b.ToolUseID != c.Content[i-1].ID || c.Content[i-1].Type != "server_tool_use") {
			t.Errorf("block %d answers %q", i, b.ToolUseID)
		}
	}
	for i := range c.Content {
		c.Content[i].ID, c.Content[i].ToolUseID = "", ""
	}
	return c
}

// show is m in JSON, for failure messages.
func show(m searchMessage) string {
	b, _ := json.Marshal(m)
	return string(b)
}

func searchAnswer(t *testing.T, h *harness, body string) searchMessage {
	t.Helper()
	resp, b := h.must("POST", "/v1/messages", body, anthHeaders...)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	return decode[searchMessage](t, b)
}

// searchStream reads a Messages stream with server tool blocks and puts the message
// together as a client of the API does: blocks in index order, each opened, given its
// deltas (text, citations, a server_tool_use's input as input_json_delta) and closed,
// the ping right after the first block's start.
func searchStream(t *testing.T, h *harness, body string) searchMessage {
	t.Helper()
	resp, b := h.must("POST", "/v1/messages", strings.Replace(body, "{", `{"stream":true,`, 1), anthHeaders...)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	var m searchMessage
	var names []string
	var partial string
	open := -1
	for i, ev := range parseSSE(t, b) {
		var e struct {
			Type         string          `json:"type"`
			Index        *int            `json:"index"`
			Message      *searchMessage  `json:"message"`
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
			if e.Message == nil || len(e.Message.Content) != 0 {
				t.Fatalf("message_start %s", ev.data)
			}
			m.Usage.InputTokens = e.Message.Usage.InputTokens
		case "content_block_start":
			if e.Index == nil || *e.Index != len(m.Content) || open >= 0 {
				t.Fatalf("block start %s", ev.data)
			}
			open = *e.Index
			blk := decode[searchBlock](t, e.ContentBlock)
			if blk.Type == "server_tool_use" && string(blk.Input) != "{}" || blk.Type == "text" && (blk.Text != "" || len(blk.Citations) != 0) {
				t.Errorf("block start %s", ev.data)
			}
			m.Content, partial = append(m.Content, blk), ""
		case "content_block_delta":
			if e.Index == nil || *e.Index != open {
				t.Fatalf("delta outside its block: %s", ev.data)
			}
			d := decode[struct {
				Type        string          `json:"type"`
				Text        string          `json:"text"`
				PartialJSON string          `json:"partial_json"`
				Thinking    string          `json:"thinking"`
				Signature   string          `json:"signature"`
				Citation    *searchCitation `json:"citation"`
			}](t, e.Delta)
			blk := &m.Content[open]
			switch {
			case d.Type == "text_delta" && blk.Type == "text":
				blk.Text += d.Text
			case d.Type == "citations_delta" && blk.Type == "text" && d.Citation != nil:
				blk.Citations = append(blk.Citations, *d.Citation)
			case d.Type == "input_json_delta" && (blk.Type == "server_tool_use" || blk.Type == "tool_use"):
				partial += d.PartialJSON
			case d.Type == "thinking_delta" && blk.Type == "thinking":
				blk.Thinking += d.Thinking
			case d.Type == "signature_delta" && blk.Type == "thinking":
			default:
				t.Fatalf("delta %s in a %s block", ev.data, blk.Type)
			}
		case "content_block_stop":
			if e.Index == nil || *e.Index != open {
				t.Fatalf("stop %s", ev.data)
			}
			if blk := &m.Content[open]; blk.Type == "server_tool_use" || blk.Type == "tool_use" {
				blk.Input = json.RawMessage(partial)
			}
			open = -1
		case "message_delta":
			var d struct {
				StopReason string `json:"stop_reason"`
			}
			if err := json.Unmarshal(e.Delta, &d); err != nil {
				t.Fatal(err)
			}
			m.StopReason = d.StopReason
			u := decode[searchUsage](t, e.Usage)
			m.Usage.OutputTokens, m.Usage.ServerToolUse = u.OutputTokens, u.ServerToolUse
		case "ping", "message_stop":
		default:
			t.Fatalf("unknown event %q", ev.name)
		}
	}
	if got := strings.Join(names, ","); !strings.HasPrefix(got, "message_start,content_block_start,ping,") ||
		!strings.HasSuffix(got, ",message_delta,message_stop") || strings.Count(got, "ping") != 1 {
		t.Errorf("event order %s", got)
	}
	return m
}

// TestMessagesWebSearch: with the web search server tool declared, mockllm answers as
// the Messages API does: each search a server_tool_use block (the query) and a
// web_search_tool_result block (its results), then a text block citing the first
// result of each search that ran, then the answer; usage counts the searches in
// server_tool_use.web_search_requests and the cited text in output_tokens. A search
// past max_uses gets the result error max_uses_exceeded. Streamed, the blocks come as
// the API streams them and put together the same message.
func TestMessagesWebSearch(t *testing.T) {
	h := startAnthropic(t)
	ask := "What is new in gateway routing?"
	plain := searchAnswer(t, h, messagesBody(ask, ""))
	cases := []struct {
		name     string
		tools    string
		requests int
	}{
		{"two searches, both cited", searchTool(""), 2},
		{"max_uses 1: the second search is refused", searchTool(`,"max_uses":1`), 1},
		{"max_uses 5 and a location", searchTool(`,"max_uses":5,"user_location":{"type":"approximate","city":"Zürich","region":"Zürich","country":"CH","timezone":"Europe/Zurich"}`), 2},
		{"the later version", `{"type":"web_search_20260209","name":"web_search","allowed_domains":["example.com"],"cache_control":{"type":"ephemeral"}}`, 2},
		{"the latest version", `{"type":"web_search_20260318","name":"web_search"}`, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := messagesBody(ask, `"tools":[`+c.tools+`]`)
			m := searchAnswer(t, h, body)
			want := []string{"server_tool_use", "web_search_tool_result", "server_tool_use", "web_search_tool_result", "text", "text"}
			if !reflect.DeepEqual(m.types(), want) || m.StopReason != "end_turn" {
				t.Fatalf("blocks %v, stop %s", m.types(), m.StopReason)
			}
			var cited []searchCitation
			for k := range 2 {
				use, res := m.Content[2*k], m.Content[2*k+1]
				var in struct{ Query string }
				if err := json.Unmarshal(use.Input, &in); err != nil || use.Name != "web_search" || !strings.HasPrefix(use.ID, "srvtoolu_01") ||
					res.ToolUseID != use.ID || len(strings.Fields(in.Query)) != 3 {
					t.Fatalf("search %d: %+v %+v", k, use, res)
				}
				if k >= c.requests {
					if string(res.Content) != `{"type":"web_search_tool_result_error","error_code":"max_uses_exceeded"}` {
						t.Errorf("search %d past max_uses: %s", k, res.Content)
					}
					continue
				}
				var results []struct {
					Type, URL, Title, EncryptedContent, PageAge string
				}
				if err := json.Unmarshal(res.Content, &results); err != nil || len(results) != 2-k || results[0].Type != "web_search_result" ||
					!strings.HasPrefix(results[0].URL, "https://example.com/") || !strings.HasPrefix(results[0].Title, "Résumé: ") {
					t.Fatalf("search %d results %s: %v", k, res.Content, err)
				}
				cited = append(cited, searchCitation{Type: "web_search_result_location", URL: results[0].URL, Title: results[0].Title})
			}
			text := m.Content[4]
			if !strings.HasPrefix(text.Text, "Résumé ☕ 🌍: ") || len(text.Citations) != len(cited) {
				t.Fatalf("cited text %+v", text)
			}
			for i, ct := range text.Citations {
				if ct.URL != cited[i].URL || ct.Title != cited[i].Title || ct.Type != cited[i].Type || ct.EncryptedIndex == "" || ct.CitedText == "" {
					t.Errorf("citation %d %+v, want %+v", i, ct, cited[i])
				}
			}
			if m.Content[5].Text != plain.Content[0].Text || len(m.Content[5].Citations) != 0 {
				t.Errorf("answer %q, without the tool %q", m.Content[5].Text, plain.Content[0].Text)
			}
			if m.requests() != c.requests || m.Usage.OutputTokens != plain.Usage.OutputTokens+citedTokens {
				t.Errorf("usage %+v (%d searches), without the tool %+v", m.Usage, m.requests(), plain.Usage)
			}
			if s := searchStream(t, h, body); !reflect.DeepEqual(withoutIDs(t, s), withoutIDs(t, m)) {
				t.Errorf("streamed %s\nnot streamed %s", show(s), show(m))
			}
		})
	}
}

// TestMessagesWebSearchWithOtherBlocks: the searches come after the thinking block and
// before a tool call, whose block index they shift; tool_choice none, and a forced
// tool (the call is the first block), make no search, nor does a max_tokens with no
// room for the cited text.
func TestMessagesWebSearchWithOtherBlocks(t *testing.T) {
	h := startAnthropic(t)
	tools := strings.Replace(weatherTool, `"tools":[`, `"tools":[`+searchTool("")+",", 1)
	search := []string{"server_tool_use", "web_search_tool_result", "server_tool_use", "web_search_tool_result", "text"}
	cases := []struct {
		name, body string
		blocks     []string
		requests   int // -1: usage has no server_tool_use
	}{
		{"thinking first", `{"model":"claude-mock","max_tokens":2048,"thinking":{"type":"enabled","budget_tokens":1024},"messages":[{"role":"user","content":"news?"}],"tools":[` + searchTool("") + `]}`,
			append(append([]string{"thinking"}, search...), "text"), 2},
		{"a tool call after the searches", messagesBody("what does get_weather say for Paris?", tools), append(append([]string(nil), search...), "text", "tool_use"), 2},
		{"tool_choice none", messagesBody("what does get_weather say for Paris?", tools+`,"tool_choice":{"type":"none"}`), []string{"text"}, -1},
		{"a forced tool", messagesBody("news?", tools+`,"tool_choice":{"type":"tool","name":"get_time"}`), []string{"tool_use"}, -1},
		{"tool_choice any", messagesBody("news?", tools+`,"tool_choice":{"type":"any"}`), []string{"tool_use"}, -1},
		{"no room in max_tokens", `{"model":"claude-mock","max_tokens":6,"messages":[{"role":"user","content":"news?"}],"tools":[` + searchTool("") + `]}`, []string{"text"}, -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := searchAnswer(t, h, c.body)
			if !reflect.DeepEqual(m.types(), c.blocks) || m.requests() != c.requests {
				t.Fatalf("blocks %v (%d searches), want %v (%d)", m.types(), m.requests(), c.blocks, c.requests)
			}
			for _, b := range m.Content {
				if b.Type == "tool_use" && b.Name == "web_search" {
					t.Errorf("the server tool called as a client tool: %+v", b)
				}
			}
			if s := searchStream(t, h, c.body); !reflect.DeepEqual(withoutIDs(t, s), withoutIDs(t, m)) {
				t.Errorf("streamed %s\nnot streamed %s", show(s), show(m))
			}
		})
	}
}

// TestMessagesWebSearchRefused: mockllm refuses a web search tool the Messages API
// refuses, so that a translation sending one is caught.
func TestMessagesWebSearchRefused(t *testing.T) {
	h := startAnthropic(t)
	const where = "tools.0.web_search_20250305"
	for _, c := range []struct{ name, tool, want string }{
		{"another name", `{"type":"web_search_20250305","name":"search"}`, where + ".name: Input should be 'web_search'"},
		{"an unknown version", `{"type":"web_search_20990101","name":"web_search"}`, `tools.0: Input tag "web_search_20990101"`},
		{"max_uses 0", searchTool(`,"max_uses":0`), where + ".max_uses: Input should be greater than 0"},
		{"max_uses not an integer", searchTool(`,"max_uses":"5"`), where + ".max_uses: Input should be a valid integer"},
		{"a member of OpenAI's", searchTool(`,"search_context_size":"low"`), where + ".search_context_size: Extra inputs are not permitted"},
		{"user_location not an object", searchTool(`,"user_location":"Paris"`), where + ".user_location: Input should be a valid dictionary"},
		{"user_location without its type", searchTool(`,"user_location":{"city":"Paris"}`), where + ".user_location.type: Input should be 'approximate'"},
		{"OpenAI's nesting", searchTool(`,"user_location":{"type":"approximate","approximate":{"city":"Paris"}}`), where + ".user_location.approximate: Extra inputs are not permitted"},
		{"a city that is not a string", searchTool(`,"user_location":{"type":"approximate","city":7}`), where + ".user_location.city: Input should be a valid string"},
		{"both domain lists", searchTool(`,"allowed_domains":["a.com"],"blocked_domains":["b.com"]`), "Only one of allowed_domains or blocked_domains"},
		{"a function of its name", searchTool("") + `,{"name":"web_search","input_schema":{"type":"object"}}`, "Tool names must be unique"},
	} {
		t.Run(c.name, func(t *testing.T) {
			anthRefused(t, h, messagesBody("news?", `"tools":[`+c.tool+`]`), c.want)
		})
	}
}
