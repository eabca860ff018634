package providers

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/tollgate/tollgate/internal/ssespec"
)

// relayEvents reads the upstream bytes in through the stream translation mode selects,
// as the gateway's relay reads them: 0 an OpenAI-format stream passed through (chat,
// legacy completions), 1 a chat stream served as /v1/completions chunks (MLflow's
// openai/mistral llm/v1/completions), 2 the same as MLflow's invocation chunks, 3 a
// legacy completions stream as MLflow's invocation chunks, 4 an Anthropic stream.
func relayEvents(in string, mode uint8) ([]Event, error) {
	r := &sseReader{br: bufio.NewReaderSize(strings.NewReader(in), 64)}
	var next func(*Event) error
	switch mode % 5 {
	case 0:
		next = r.Next
	case 1:
		next = (&textStream{r: r}).Next
	case 2:
		next = (&textStream{r: r, delta: true}).Next
	case 3:
		next = (&textStream{r: r, delta: true, fromText: true}).Next
	default:
		next = (&anthropicStream{r: r, created: 1700000000}).Next
	}
	var evs []Event
	for range 10000 {
		var ev Event
		err := next(&ev)
		if err == io.EOF {
			return evs, nil
		}
		if err != nil {
			return evs, err
		}
		if ev.KeepAlive {
			continue
		}
		ev.Data = append([]byte(nil), ev.Data...)
		evs = append(evs, ev)
	}
	return evs, nil
}

// checkRelayed writes each event as gateway/handler.go's relay does ("data: " +
// Data + "\n\n", or "data: [DONE]\n\n") and reads the bytes back as a client's SSE
// parser does: each event must come back whole, one JSON object.
func checkRelayed(t *testing.T, in string, mode uint8) {
	t.Helper()
	evs, _ := relayEvents(in, mode)
	for i, ev := range evs {
		var wire []byte
		if ev.Done {
			wire = []byte("data: [DONE]\n\n")
		} else {
			wire = append(append([]byte("data: "), ev.Data...), "\n\n"...)
		}
		got := ssespec.Events(wire)
		if ev.Done {
			if len(got) != 1 || got[0] != "[DONE]" {
				t.Fatalf("mode %d: [DONE] read back as %q", mode, got)
			}
			continue
		}
		obj := bytes.TrimLeft(ev.Data, " \t\r\n")
		if len(got) != 1 || got[0] != string(ev.Data) || !json.Valid([]byte(got[0])) || len(obj) == 0 || obj[0] != '{' {
			t.Fatalf("mode %d, upstream %q:\nevent %d relayed as %q\na client's SSE parser reads %q: not the one JSON object sent", mode, in, i, wire, got)
		}
	}
}

// FuzzRelayedEvents: whatever bytes the upstream sends, every event the
// gateway relays (OpenAI passthrough, completions through chat, MLflow's invocation
// chunks, the Anthropic translation) reaches a spec-compliant SSE client as the one
// JSON object the gateway meant to send.
func FuzzRelayedEvents(f *testing.F) {
	for _, s := range []string{
		"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: [DONE]\n\n",
		"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n",
		"data: {\"id\":\"cmpl\",\"object\":\"text_completion\",\"choices\":[{\"index\":0,\"text\":\"Hi\",\"logprobs\":null}]}\n\ndata: [DONE]\n\n",
		"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n" +
			"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n" +
			"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n" +
			"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":2}}\n\n" +
			"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
	} {
		for mode := range uint8(5) {
			f.Add(s, mode)
		}
	}
	f.Fuzz(func(t *testing.T, in string, mode uint8) {
		checkRelayed(t, in, mode)
	})
}

// loneCRStream is an OpenAI-format stream whose second chunk has a CR between two
// members, JSON whitespace (RFC 8259 §2), and so has its usage chunk: its lines end in
// LF, as the first shows.
const loneCRStream = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n" +
	"data: {\"id\":\"c\",\r\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\r\"finish_reason\":null}]}\n\n" +
	"data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":1,\r\"completion_tokens\":1}}\n\n" +
	"data: [DONE]\n\n"

// TestRelayedLoneCRKeepsEventWhole: a lone CR inside an LF-ended line of an event's
// data (JSON whitespace) does not reach the client's data: line, where the SSE spec
// (and openai-python, browsers) would end the line and read `{"id":"c",`; every
// translation passes the event on as one JSON object.
func TestRelayedLoneCRKeepsEventWhole(t *testing.T) {
	for _, mode := range []uint8{0, 1, 2, 3} {
		t.Run(string('0'+mode), func(t *testing.T) { checkRelayed(t, loneCRStream, mode) })
	}
}

// dupKey returns a member name that an object of the JSON value b holds twice (an
// upstream's parser keeps one of them, whichever it likes); ok is false when there is
// none.
func dupKey(b []byte) (key string, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	var walk func() (string, bool)
	walk = func() (string, bool) {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return "", false
				}
				k, _ := kt.(string)
				if seen[k] {
					return k, true
				}
				seen[k] = true
				if d, ok := walk(); ok {
					return d, true
				}
			}
			_, _ = dec.Token()
		case json.Delim('['):
			for dec.More() {
				if d, ok := walk(); ok {
					return d, true
				}
			}
			_, _ = dec.Token()
		}
		return "", false
	}
	return walk()
}

// fuzzClaudeModels are model names of each kind the translation tells apart: budget
// thinking, structured outputs, adaptive, adaptive without sampling, thinking by
// default, always thinking, always thinking with forced tools allowed.
var fuzzClaudeModels = []string{"claude-3-7-sonnet-20250219", "claude-sonnet-4-5", "claude-opus-4-6", "claude-opus-4-7",
	"claude-opus-5", "claude-sonnet-5-5", "claude-fable-5"}

// FuzzAnthropicRequestModels: for every JSON body, on every kind of Claude
// model and streamed or not, the Messages API request is valid JSON with no member
// given twice, a positive max_tokens and at least one message, or the client gets a
// 400 with a message (README: "A request the Messages API cannot express … gets 400").
func FuzzAnthropicRequestModels(f *testing.F) {
	files, _ := filepath.Glob("testdata/anthropic/request_*.json")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b, uint8(0))
		}
	}
	f.Add([]byte(`{"messages":[{"role":"user","content":"hi"}],"reasoning_effort":"high","output_config":{"effort":"low","format":{"type":"json_schema"}}}`), uint8(3))
	f.Fuzz(func(t *testing.T, body []byte, pick uint8) {
		if !json.Valid(body) {
			return
		}
		if _, dup := dupKey(body); dup {
			return // the client's own duplicates may pass on
		}
		name := fuzzClaudeModels[int(pick)%len(fuzzClaudeModels)]
		cm := claudeModelOf(name)
		for _, stream := range []bool{false, true} {
			out, rerr := appendAnthropicRequest(nil, body, quoteModel(name), 4096, cm, stream)
			if rerr != nil {
				if rerr.msg == "" {
					t.Fatal("refusal without a message")
				}
				return
			}
			if !json.Valid(out) {
				t.Fatalf("%s: translation is not JSON:\n%s\n->\n%s", name, body, out)
			}
			if k, dup := dupKey(out); dup {
				t.Fatalf("%s: translation holds %q twice:\n%s\n->\n%s", name, k, body, out)
			}
			var req struct {
				Model     string            `json:"model"`
				MaxTokens int64             `json:"max_tokens"`
				Messages  []json.RawMessage `json:"messages"`
			}
			if err := json.Unmarshal(out, &req); err != nil || req.Model != name || req.MaxTokens < 1 || len(req.Messages) == 0 {
				t.Fatalf("%s: translation lacks model, max_tokens or messages (%v):\n%s\n->\n%s", name, err, body, out)
			}
		}
	})
}

// FuzzCompletionsViaChatRequest: a legacy completions body served through chat (MLflow's
// openai and mistral providers) becomes valid JSON whose model is the backend's, whose
// one user message is the prompt, and whose temperature is scaled, or a 400 (README:
// "the prompt (one string) goes as one user message, the other parameters as sent").
func FuzzCompletionsViaChatRequest(f *testing.F) {
	for _, s := range []string{`{"model":"c","prompt":"Once","max_tokens":5,"temperature":1.5}`, `{"prompt":["a"],"stream":true,"stream_options":{"x":1}}`,
		`{"model":"c","prompt":"x","stream_options":null,"n":2}`} {
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, force bool) {
		if !json.Valid(body) {
			return
		}
		if _, dup := dupKey(body); dup {
			return
		}
		out, rerr := appendChatRequest(nil, body, []byte(`"up-model"`), 0.5, force)
		if rerr != nil {
			if rerr.msg == "" {
				t.Fatal("refusal without a message")
			}
			return
		}
		if !json.Valid(out) {
			t.Fatalf("%s -> %s is not JSON", body, out)
		}
		var in, got map[string]json.RawMessage
		if json.Unmarshal(body, &in) != nil || json.Unmarshal(out, &got) != nil {
			t.Fatalf("%s -> %s is not an object", body, out)
		}
		if string(got["model"]) != `"up-model"` {
			t.Fatalf("%s -> %s: model %s", body, out, got["model"])
		}
		var msgs []struct{ Role, Content string }
		if err := json.Unmarshal(got["messages"], &msgs); err != nil || len(msgs) != 1 || msgs[0].Role != "user" {
			t.Fatalf("%s -> %s: messages %s", body, out, got["messages"])
		}
		if force {
			var so map[string]json.RawMessage
			if json.Unmarshal(got["stream_options"], &so) != nil || string(so["include_usage"]) != "true" {
				t.Fatalf("%s -> %s: usage not asked for", body, out)
			}
		}
	})
}

// blankText reports whether s holds only whitespace (unicode.IsSpace), as the
// translation reckons it.
func blankText(s string) bool { return strings.TrimFunc(s, unicode.IsSpace) == "" }

// anthropicRuleBroken checks a Messages API request against what README promises the
// translation sends: no blank text block anywhere, no blank stop sequence, temperature
// at most 1 and never beside top_p, top_k at least 1, metadata.user_id as 32 hex
// digits, tool_use ids Anthropic takes and never repeated, and every tool_result
// answering a tool_use of the assistant turn just before it.
func anthropicRuleBroken(out []byte, toolsPaired bool) string {
	var req struct {
		System        json.RawMessage `json:"system"`
		StopSequences []string        `json:"stop_sequences"`
		Temperature   *float64        `json:"temperature"`
		TopP          *float64        `json:"top_p"`
		TopK          *float64        `json:"top_k"`
		Metadata      *struct {
			UserID *string `json:"user_id"`
		} `json:"metadata"`
		Messages []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(out, &req); err != nil {
		return "does not decode: " + err.Error()
	}
	type block struct {
		Type      string          `json:"type"`
		Text      *string         `json:"text"`
		ID        string          `json:"id"`
		ToolUseID string          `json:"tool_use_id"`
		Content   json.RawMessage `json:"content"`
	}
	blocks := func(raw json.RawMessage) ([]block, bool) {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return []block{{Type: "text", Text: &s}}, true
		}
		var bs []block
		return bs, json.Unmarshal(raw, &bs) == nil
	}
	checkText := func(where string, bs []block) string {
		for _, b := range bs {
			if b.Type == "text" && (b.Text == nil || blankText(*b.Text)) {
				return where + " holds a blank text block"
			}
			if b.Type == "tool_result" && len(b.Content) > 0 {
				inner, _ := blocks(b.Content)
				for _, ib := range inner {
					if ib.Type == "text" && ib.Text != nil && blankText(*ib.Text) {
						return where + " holds a tool_result with a blank text"
					}
				}
			}
		}
		return ""
	}
	if len(req.System) > 0 {
		if bs, ok := blocks(req.System); ok {
			if p := checkText("system", bs); p != "" {
				return p
			}
		}
	}
	for _, s := range req.StopSequences {
		if blankText(s) {
			return "blank stop sequence"
		}
	}
	if req.Temperature != nil && *req.Temperature > 1 {
		return "temperature above 1"
	}
	if req.Temperature != nil && req.TopP != nil {
		return "temperature and top_p both sent"
	}
	if req.TopK != nil && *req.TopK < 1 {
		return "top_k below 1"
	}
	if m := req.Metadata; m != nil && m.UserID != nil && !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(*m.UserID) {
		return "metadata.user_id is not 32 hex digits"
	}
	seen := map[string]bool{}
	var prev map[string]bool
	for i, m := range req.Messages {
		bs, ok := blocks(m.Content)
		if !ok {
			return "message content is neither a string nor blocks"
		}
		if p := checkText("message "+strconv.Itoa(i), bs); p != "" {
			return p
		}
		cur := map[string]bool{}
		for _, b := range bs {
			switch b.Type {
			case "tool_use":
				if !anthropicToolID.MatchString(b.ID) {
					return "tool_use id " + strconv.Quote(b.ID) + " is not one Anthropic takes"
				}
				if seen[b.ID] {
					return "tool_use id " + strconv.Quote(b.ID) + " repeated"
				}
				seen[b.ID], cur[b.ID] = true, true
			case "tool_result":
				if toolsPaired && (m.Role != "user" || !prev[b.ToolUseID]) {
					return "tool_result " + strconv.Quote(b.ToolUseID) + " answers no tool_use of the turn before"
				}
			}
		}
		prev = cur
	}
	return ""
}

// toolResultsPaired reports whether every tool message of the chat request (read as the
// translation reads it, encoding/json) answers a tool call of the assistant message
// before its run of tool messages, as OpenAI requires: only then must every
// tool_result sent answer a tool_use of the turn before.
func toolResultsPaired(body []byte) bool {
	var req struct {
		// Tagged: encoding/json would take toolCalls or TOOL_CALLS for an untagged
		// ToolCalls field, which the translation (OpenAI's keys) does not.
		Messages []struct {
			Role       string  `json:"role"`
			ToolCallID *string `json:"tool_call_id"`
			ToolCalls  []struct {
				ID *string `json:"id"`
			} `json:"tool_calls"`
		} `json:"messages"`
	}
	if json.Unmarshal(body, &req) != nil {
		return false
	}
	var calls map[string]bool
	for _, m := range req.Messages {
		switch m.Role {
		case "tool":
			if m.ToolCallID == nil || !calls[*m.ToolCallID] {
				return false
			}
		case "assistant":
			calls = map[string]bool{}
			for _, c := range m.ToolCalls {
				if c.ID == nil {
					return false
				}
				calls[*c.ID] = true
			}
		default:
			calls = nil
		}
	}
	return true
}

// FuzzAnthropicRequestRules: whatever the client's chat request, what the
// translation sends (on every kind of Claude model) keeps the rules README lists, or
// the client gets a 400.
func FuzzAnthropicRequestRules(f *testing.F) {
	files, _ := filepath.Glob("testdata/anthropic/request_*.json")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b, uint8(0))
		}
	}
	f.Fuzz(func(t *testing.T, body []byte, pick uint8) {
		if !json.Valid(body) {
			return
		}
		name := fuzzClaudeModels[int(pick)%len(fuzzClaudeModels)]
		out, rerr := appendAnthropicRequest(nil, body, quoteModel(name), 4096, claudeModelOf(name), false)
		if rerr != nil {
			return
		}
		if p := anthropicRuleBroken(out, toolResultsPaired(body)); p != "" {
			t.Fatalf("%s: %s:\n%s\n->\n%s", name, p, body, out)
		}
	})
}
