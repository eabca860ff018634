package mockllm

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// startClaude serves the Messages API as model: the rules follow the request's model
// value, and only the served one is answered (another is a 404 once the request is
// valid).
func startClaude(t *testing.T, model string) *harness {
	return start(t, Options{API: APIAnthropic, Model: model, APIKey: "key", MaxTokens: 32})
}

// claudeBody is messagesBody for model.
func claudeBody(model, content, extra string) string {
	return strings.Replace(messagesBody(content, extra), `"claude-mock"`, quote(model), 1)
}

// prefillBody ends with an assistant turn: a prefill.
func prefillBody(model, prefill string) string {
	return `{"model":` + quote(model) + `,"max_tokens":50,"messages":[{"role":"user","content":"hi"},` +
		`{"role":"assistant","content":` + quote(prefill) + `}]}`
}

// refusal decodes an Anthropic error body and checks its status and type.
func refusal(t *testing.T, resp int, b []byte) string {
	t.Helper()
	if resp != 400 {
		t.Fatalf("status %d, want 400: %s", resp, b)
	}
	e := decode[struct {
		Type  string `json:"type"`
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}](t, b)
	if e.Type != "error" || e.Error.Type != "invalid_request_error" {
		t.Fatalf("error body %s", b)
	}
	return e.Error.Message
}

// TestClaudeCapsOf: a model value is read as Anthropic, Bedrock and Vertex spell it;
// a name of no listed model takes none of the newer settings.
func TestClaudeCapsOf(t *testing.T) {
	newest := capAdaptiveOnly | capNoPrefill | capXHigh | capMax | capFormat
	for _, c := range []struct {
		model string
		caps  claudeCaps
	}{
		{"claude-opus-4-7", newest},
		{"claude-opus-4-8", newest | capMidSystem},
		{"claude-opus-4-7-20260416", newest},
		{"anthropic.claude-opus-4-7-v1:0", newest},
		{"us.anthropic.claude-opus-4-8-v1:0", newest | capMidSystem},
		{"claude-opus-4-7@20260416", newest},
		{"claude-opus-4-6", capNoPrefill | capMax | capFormat},
		{"claude-sonnet-4-6", capNoPrefill | capMax | capFormat},
		{"claude-opus-4-5-20251101", capFormat},
		{"anthropic.claude-sonnet-4-5-20250929-v1:0", capFormat},
		{"claude-haiku-4-5@20251001", capFormat},
		{"claude-opus-4-1-20250805", 0},
		{"claude-sonnet-4-20250514", 0},
		{"claude-3-7-sonnet-20250219", 0},
		{"claude-opus-4-70", 0},
		{"claude-mock", 0},
	} {
		t.Run(c.model, func(t *testing.T) {
			if got := claudeCapsOf([]byte(c.model)); got != c.caps {
				t.Errorf("caps %05b, want %05b", got, c.caps)
			}
		})
	}
}

// TestMessagesAdaptiveOnlyModels: Opus 4.7 and 4.8, however the model value spells
// them, refuse thinking with a budget, sampling settings but at their defaults, and
// prefills, in the API's words; adaptive thinking, disabled thinking and the defaults
// are taken.
func TestMessagesAdaptiveOnlyModels(t *testing.T) {
	for _, model := range []string{"claude-opus-4-7", "claude-opus-4-8", "anthropic.claude-opus-4-7-v1:0", "claude-opus-4-8@20260805"} {
		t.Run(model, func(t *testing.T) {
			h := startClaude(t, model)
			enabled := `"max_tokens":2048,"thinking":{"type":"enabled","budget_tokens":1024}`
			refused := []struct{ name, body, msg string }{
				{"thinking enabled", strings.Replace(claudeBody(model, "hi", ""), `"max_tokens":50`, enabled, 1), errThinkingEnabled.msg},
				{"thinking enabled with display", strings.Replace(claudeBody(model, "hi", ""), `"max_tokens":50`,
					`"max_tokens":2048,"thinking":{"type":"enabled","budget_tokens":4000,"display":"summarized"}`, 1), errThinkingEnabled.msg},
				{"temperature", claudeBody(model, "hi", `"temperature":0.5`), "`temperature` is deprecated for this model."},
				{"temperature 0", claudeBody(model, "hi", `"temperature":0`), "`temperature` is deprecated for this model."},
				{"top_p", claudeBody(model, "hi", `"top_p":0.9`), "`top_p` is deprecated for this model."},
				{"top_k", claudeBody(model, "hi", `"top_k":40`), "`top_k` is deprecated for this model."},
				{"top_p with thinking disabled", claudeBody(model, "hi", `"thinking":{"type":"disabled"},"top_p":0.99`), "`top_p` is deprecated for this model."},
				{"temperature with adaptive thinking, refused as thinking refuses it", claudeBody(model, "hi", `"thinking":{"type":"adaptive"},"temperature":0.5`), errThinkingTemp.msg},
				{"prefill", prefillBody(model, "The answer:"), errPrefill.msg},
				{"empty final assistant turn", prefillBody(model, ""), errPrefill.msg},
			}
			for _, c := range refused {
				t.Run(c.name, func(t *testing.T) {
					resp, b := h.must("POST", "/v1/messages", c.body, anthHeaders...)
					if got := refusal(t, resp.StatusCode, b); got != c.msg {
						t.Errorf("message %q, want %q", got, c.msg)
					}
				})
			}
			taken := []struct{ name, body string }{
				{"adaptive thinking", claudeBody(model, "hi", `"thinking":{"type":"adaptive"}`)},
				{"thinking disabled", claudeBody(model, "hi", `"thinking":{"type":"disabled"}`)},
				{"sampling at its defaults", claudeBody(model, "hi", `"temperature":1,"top_p":1.0,"top_k":null`)},
				{"sampling null", claudeBody(model, "hi", `"temperature":null,"top_p":null`)},
				{"adaptive thinking with temperature 1", claudeBody(model, "hi", `"thinking":{"type":"adaptive"},"temperature":1`)},
				{"effort xhigh", claudeBody(model, "hi", `"output_config":{"effort":"xhigh"}`)},
				{"a tool result after a tool call", `{"model":` + quote(model) + `,"max_tokens":50,` + weatherTool +
					`,"messages":[{"role":"user","content":"get_weather for Oslo"},{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Oslo"}}]},` +
					`{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"12C"}]}]}`},
			}
			for _, c := range taken {
				t.Run(c.name, func(t *testing.T) {
					if resp, b := h.must("POST", "/v1/messages", c.body, anthHeaders...); resp.StatusCode != 200 {
						t.Fatalf("status %d: %s", resp.StatusCode, b)
					}
				})
			}
		})
	}
}

// TestMessagesOlderModelsKeepTheirSettings: before Opus 4.7 thinking budgets and
// sampling settings are taken; prefills are refused from the 4.6 models on, as
// Anthropic's 4.6 migration guide says, and taken before.
func TestMessagesOlderModelsKeepTheirSettings(t *testing.T) {
	for _, c := range []struct {
		model   string
		prefill bool
	}{
		{"claude-mock", true},
		{"claude-sonnet-4-5-20250929", true},
		{"claude-opus-4-5", true},
		{"claude-haiku-4-5", true},
		{"claude-opus-4-6", false},
		{"claude-sonnet-4-6", false},
	} {
		t.Run(c.model, func(t *testing.T) {
			h := startClaude(t, c.model)
			for _, body := range []string{
				strings.Replace(claudeBody(c.model, "hi", ""), `"max_tokens":50`, `"max_tokens":2048,"thinking":{"type":"enabled","budget_tokens":1024}`, 1),
				claudeBody(c.model, "hi", `"temperature":0.2,"top_p":0.5,"top_k":5`),
			} {
				if resp, b := h.must("POST", "/v1/messages", body, anthHeaders...); resp.StatusCode != 200 {
					t.Errorf("%s: status %d: %s", body, resp.StatusCode, b)
				}
			}
			resp, b := h.must("POST", "/v1/messages", prefillBody(c.model, "The answer:"), anthHeaders...)
			switch {
			case c.prefill && resp.StatusCode != 200:
				t.Errorf("prefill: status %d: %s", resp.StatusCode, b)
			case !c.prefill:
				if got := refusal(t, resp.StatusCode, b); got != errPrefill.msg {
					t.Errorf("prefill: %q", got)
				}
			}
		})
	}
}

// rawThinking is the thinking block as sent: whether "thinking" is there, and what.
type rawThinking struct {
	Type      string  `json:"type"`
	Thinking  *string `json:"thinking"`
	Signature string  `json:"signature"`
}

// TestMessagesThinkingDisplay: display "omitted" (the default on Opus 4.7 and 4.8)
// leaves the thinking block's text empty, its signature there and its tokens counted;
// its stream has no thinking_delta, only the signature_delta, which comes when the
// thinking would have ended. "summarized" (the default elsewhere) shows the text.
func TestMessagesThinkingDisplay(t *testing.T) {
	adaptive := func(display string) string {
		if display == "" {
			return `"thinking":{"type":"adaptive"}`
		}
		return `"thinking":{"type":"adaptive","display":"` + display + `"}`
	}
	for _, c := range []struct {
		name, model, thinking string
		omitted               bool
	}{
		{"opus 4.7 omits by default", "claude-opus-4-7", adaptive(""), true},
		{"opus 4.8 omits by default", "claude-opus-4-8", adaptive(""), true},
		{"opus 4.7 summarized", "claude-opus-4-7", adaptive("summarized"), false},
		{"opus 4.7 omitted", "claude-opus-4-7", adaptive("omitted"), true},
		{"sonnet 4.6 shows by default", "claude-sonnet-4-6", adaptive(""), false},
		{"mock model omitted", "claude-mock", adaptive("omitted"), true},
		{"mock model, thinking enabled, omitted", "claude-mock", `"thinking":{"type":"enabled","budget_tokens":1024,"display":"omitted"}`, true},
		{"display null is the default", "claude-opus-4-7", `"thinking":{"type":"adaptive","display":null}`, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var log sleepLog
			h := start(t, Options{API: APIAnthropic, Model: c.model, APIKey: "key", MaxTokens: 32,
				TTFT: 100 * time.Millisecond, TPOT: 10 * time.Millisecond, Sleep: log.sleep})
			body := strings.Replace(claudeBody(c.model, "think first", c.thinking), `"max_tokens":50`, `"max_tokens":2048`, 1)
			resp, b := h.must("POST", "/v1/messages", body, anthHeaders...)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			m := decode[anthMessage](t, b)
			raw := decode[struct {
				Content []json.RawMessage `json:"content"`
			}](t, b)
			if len(m.Content) != 2 || m.Content[0].Type != "thinking" || m.Content[1].Type != "text" {
				t.Fatalf("content %s", b)
			}
			th := decode[rawThinking](t, raw.Content[0])
			if th.Thinking == nil || th.Signature == "" {
				t.Fatalf("thinking block %s: thinking and signature are always there", raw.Content[0])
			}
			if c.omitted != (*th.Thinking == "") {
				t.Errorf("thinking %q, omitted %v", *th.Thinking, c.omitted)
			}
			if !c.omitted && th.Signature != string(appendThinkingSignature(nil, []byte(*th.Thinking))) {
				t.Errorf("signature %q is not the summarized text's", th.Signature)
			}
			if text := m.Content[1].Text; text == "" {
				t.Errorf("no text after the thinking: %s", b)
			}

			// The other display of the same request thinks as much, so bills as much.
			other := strings.Replace(body, c.thinking, adaptive("summarized"), 1)
			if !c.omitted {
				other = strings.Replace(body, c.thinking, adaptive("omitted"), 1)
			}
			_, ob := h.must("POST", "/v1/messages", other, anthHeaders...)
			om := decode[anthMessage](t, ob)
			if *om.Usage.OutputTokens != *m.Usage.OutputTokens || om.Content[1].Text != m.Content[1].Text {
				t.Errorf("output_tokens %d, %d with the other display; texts %q, %q",
					*m.Usage.OutputTokens, *om.Usage.OutputTokens, m.Content[1].Text, om.Content[1].Text)
			}
			if *m.Usage.OutputTokens <= 3+thinkingWords {
				t.Errorf("output_tokens %d leaves out the thinking", *m.Usage.OutputTokens)
			}

			log.take()
			stream := strings.Replace(body, "{", `{"stream":true,`, 1)
			_, sb := h.must("POST", "/v1/messages", stream, anthHeaders...)
			schedule := log.take()
			deltas := strings.Count(string(sb), `"type":"thinking_delta"`)
			if c.omitted && deltas != 0 || !c.omitted && deltas != 3+thinkingWords {
				t.Errorf("%d thinking_delta events, omitted %v", deltas, c.omitted)
			}
			if n := strings.Count(string(sb), `"type":"signature_delta"`); n != 1 {
				t.Errorf("%d signature_delta events", n)
			}
			s := anthStream(t, h, stream)
			if !reflect.DeepEqual(s.Content, m.Content) || *s.Usage.OutputTokens != *m.Usage.OutputTokens {
				t.Errorf("stream put together\n%+v\nanswer\n%+v", s.Content, m.Content)
			}
			// TTFT, then TPOT for every token after the first, thinking included.
			if want := 100*time.Millisecond + time.Duration(*m.Usage.OutputTokens-1)*10*time.Millisecond; sum(schedule) != want {
				t.Errorf("stream slept %v, want %v: %v", sum(schedule), want, schedule)
			}
		})
	}
	t.Run("refusals", func(t *testing.T) {
		h := startClaude(t, "claude-opus-4-7")
		for _, c := range []struct{ name, body, msg string }{
			{"unknown display", claudeBody("claude-opus-4-7", "hi", adaptive("full")), errDisplayAdaptive.msg},
			{"display not a string", claudeBody("claude-opus-4-7", "hi", `"thinking":{"type":"adaptive","display":true}`), errDisplayAdaptive.msg},
			{"unknown display, thinking enabled: the display is read first", strings.Replace(thinkingBody("hi", ""), `"budget_tokens":1024`, `"budget_tokens":1024,"display":"full"`, 1), errDisplayEnabled.msg},
		} {
			t.Run(c.name, func(t *testing.T) {
				body := strings.Replace(c.body, `"claude-mock"`, `"claude-opus-4-7"`, 1)
				resp, b := h.must("POST", "/v1/messages", body, anthHeaders...)
				if got := refusal(t, resp.StatusCode, b); got != c.msg {
					t.Errorf("message %q, want %q", got, c.msg)
				}
			})
		}
		mock := startAnthropic(t)
		resp, b := mock.must("POST", "/v1/messages", strings.Replace(thinkingBody("hi", ""), `"budget_tokens":1024`, `"budget_tokens":1024,"display":"none"`, 1), anthHeaders...)
		if got := refusal(t, resp.StatusCode, b); got != errDisplayEnabled.msg {
			t.Errorf("message %q, want %q", got, errDisplayEnabled.msg)
		}
	})
}

func sum(ds []time.Duration) time.Duration {
	var t time.Duration
	for _, d := range ds {
		t += d
	}
	return t
}

// TestMessagesOmittedThinkingToolLoop: an omitted thinking block comes back with its
// empty text and its signature, which must be the one mockllm gave: the signature
// carries the thinking the client never saw, so a tampered one, or one put on another
// text, is refused.
func TestMessagesOmittedThinkingToolLoop(t *testing.T) {
	for _, c := range []struct{ model, thinking string }{
		{"claude-opus-4-7", `"thinking":{"type":"adaptive"},`},
		{"claude-mock", `"thinking":{"type":"enabled","budget_tokens":1024,"display":"omitted"},`},
	} {
		t.Run(c.model, func(t *testing.T) {
			h := startClaude(t, c.model)
			head := `{"model":` + quote(c.model) + `,"max_tokens":2048,` + c.thinking + weatherTool
			resp, b := h.must("POST", "/v1/messages", head+`,"messages":[{"role":"user","content":"what does get_weather say for Paris?"}]}`, anthHeaders...)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			raw := decode[struct {
				Content []json.RawMessage `json:"content"`
			}](t, b)
			m := decode[anthMessage](t, b)
			use := m.Content[len(m.Content)-1]
			if len(m.Content) != 3 || m.Content[0].Thinking != "" || use.Type != "tool_use" {
				t.Fatalf("content %s", b)
			}
			block := string(raw.Content[0])
			sig := m.Content[0].Signature
			toolUse := `{"type":"tool_use","id":"` + use.ID + `","name":"get_weather","input":` + string(use.Input) + `}`
			loop := func(thinkingBlock string) string {
				return head + `,"messages":[{"role":"user","content":"what does get_weather say for Paris?"},` +
					`{"role":"assistant","content":[` + thinkingBlock + `,` + toolUse + `]},` +
					`{"role":"user","content":[{"type":"tool_result","tool_use_id":"` + use.ID + `","content":"18C"}]}]}`
			}
			withSig := func(text, s string) string {
				return `{"type":"thinking","thinking":` + quote(text) + `,"signature":` + quote(s) + `}`
			}
			if resp, b := h.must("POST", "/v1/messages", loop(block), anthHeaders...); resp.StatusCode != 200 {
				t.Fatalf("omitted block sent back: status %d: %s", resp.StatusCode, b)
			}
			last := sig[len(sig)-1]
			flipped := "0"
			if last == '0' {
				flipped = "1"
			}
			i := strings.LastIndexByte(sig, 'O')
			for _, c := range []struct{ name, block string }{
				{"check part changed", withSig("", sig[:len(sig)-1]+flipped)},
				{"signed part changed", withSig("", sig[:i-1]+string(sig[i-1]^1)+sig[i:])},
				{"check part dropped", withSig("", sig[:i])},
				{"text put in", withSig("Thinking it over: the model", sig)},
				{"summarized signature of some text, text emptied", withSig("", string(appendThinkingSignature(nil, []byte("Thinking it over: x"))))},
			} {
				t.Run(c.name, func(t *testing.T) {
					resp, b := h.must("POST", "/v1/messages", loop(c.block), anthHeaders...)
					if got := refusal(t, resp.StatusCode, b); got != "messages.1.content.0: Invalid `signature` in `thinking` block" {
						t.Errorf("message %q", got)
					}
				})
			}
		})
	}
}

// TestMessagesEffort: output_config.effort takes the five levels, xhigh on Opus 4.7
// and 4.8 only, max on Opus 4.6 to 4.8 and Sonnet 4.6 only, as Anthropic's effort
// page lists them.
func TestMessagesEffort(t *testing.T) {
	for _, c := range []struct {
		model string
		xhigh bool
		max   bool
	}{
		{"claude-mock", false, false},
		{"claude-opus-4-5", false, false},
		{"claude-opus-4-6", false, true},
		{"claude-sonnet-4-6", false, true},
		{"claude-opus-4-7", true, true},
		{"claude-opus-4-8", true, true},
	} {
		t.Run(c.model, func(t *testing.T) {
			h := startClaude(t, c.model)
			for _, e := range []struct {
				config string
				ok     bool
				msg    string
			}{
				{`{"effort":"low"}`, true, ""},
				{`{"effort":"medium"}`, true, ""},
				{`{"effort":"high"}`, true, ""},
				{`{"effort":null}`, true, ""},
				{`{}`, true, ""},
				{`null`, true, ""},
				{`{"effort":"xhigh"}`, c.xhigh, errEffortXHigh.msg},
				{`{"effort":"max"}`, c.max, errEffortMax.msg},
				{`{"effort":"extreme"}`, false, errEffort.msg},
				{`{"effort":"HIGH"}`, false, errEffort.msg},
				{`{"effort":3}`, false, errEffort.msg},
				{`"high"`, false, errOutputConfigObject.msg},
				{`[]`, false, errOutputConfigObject.msg},
			} {
				resp, b := h.must("POST", "/v1/messages", claudeBody(c.model, "hi", `"output_config":`+e.config), anthHeaders...)
				switch {
				case e.ok && resp.StatusCode != 200:
					t.Errorf("%s: status %d: %s", e.config, resp.StatusCode, b)
				case !e.ok:
					if got := refusal(t, resp.StatusCode, b); got != e.msg {
						t.Errorf("%s: message %q, want %q", e.config, got, e.msg)
					}
				}
			}
		})
	}
}

// formatSchema is a structured-outputs schema: every object closed, a nested object,
// enums (one of UTF-8 text, one of JSON escapes) and values of every type.
const formatSchema = `{"type":"object","additionalProperties":false,"required":["name","count","kind","detail"],"properties":{` +
	`"name":{"type":"string"},"count":{"type":"integer"},"score":{"type":"number"},"ok":{"type":"boolean"},` +
	`"kind":{"type":"string","enum":["café crème","tea"]},"quote":{"enum":["say \"hi\"\n"]},"tags":{"type":"array","items":{"type":"string"}},` +
	`"detail":{"type":"object","additionalProperties":false,"properties":{"hourly":{"type":"boolean"}}}}}`

func formatConfig(schema string) string {
	return `"output_config":{"format":{"type":"json_schema","schema":` + schema + `}}`
}

// TestMessagesOutputFormat: with output_config.format the text is a JSON value of the
// schema, deterministic for the prompt, streamed as text_delta tokens of about four
// bytes (each valid UTF-8) that put together the same text, counted in output_tokens;
// max_tokens or --max-tokens cut it short with stop_reason "max_tokens", a stop
// sequence with "stop_sequence"; a tool call comes without a preamble.
func TestMessagesOutputFormat(t *testing.T) {
	const model = "claude-sonnet-4-5-20250929"
	h := start(t, Options{API: APIAnthropic, Model: model, APIKey: "key", MaxTokens: 64})
	whole := func(t *testing.T, body string) (anthMessage, string) {
		t.Helper()
		resp, b := h.must("POST", "/v1/messages", body, anthHeaders...)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		m := decode[anthMessage](t, b)
		if len(m.Content) == 0 {
			t.Fatalf("no content: %s", b)
		}
		return m, m.Content[len(m.Content)-1].Text
	}
	body := claudeBody(model, "extract it", formatConfig(formatSchema))
	full, text := whole(t, body)
	var v struct {
		Name   *string         `json:"name"`
		Count  *int            `json:"count"`
		Score  *float64        `json:"score"`
		OK     *bool           `json:"ok"`
		Kind   string          `json:"kind"`
		Quote  string          `json:"quote"`
		Tags   []string        `json:"tags"`
		Detail *map[string]any `json:"detail"`
	}
	dec := json.NewDecoder(strings.NewReader(text))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil || dec.More() {
		t.Fatalf("text %q is not a value of the schema: %v", text, err)
	}
	if v.Name == nil || v.Count == nil || v.Score == nil || v.OK == nil || v.Kind != "café crème" || v.Quote != "say \"hi\"\n" || v.Tags == nil || v.Detail == nil || (*v.Detail)["hourly"] == nil {
		t.Errorf("text %s leaves out a property or mistypes it", text)
	}
	tokens := (len(text) + 3) / 4 // ASCII but the two é, which stay inside their tokens
	if *full.StopReason != "end_turn" || len(full.Content) != 1 || *full.Usage.OutputTokens < tokens-1 || *full.Usage.OutputTokens > tokens {
		t.Errorf("stop_reason %s, output_tokens %d for %d bytes", *full.StopReason, *full.Usage.OutputTokens, len(text))
	}
	if _, again := whole(t, body); again != text {
		t.Errorf("text %q, then %q", text, again)
	}
	if _, other := whole(t, claudeBody(model, "extract another", formatConfig(formatSchema))); other == text {
		t.Errorf("another prompt, the same text %q", text)
	}

	stream := func(t *testing.T, body string) (anthMessage, []string) {
		t.Helper()
		s := anthStream(t, h, strings.Replace(body, "{", `{"stream":true,`, 1))
		_, b := h.must("POST", "/v1/messages", strings.Replace(body, "{", `{"stream":true,`, 1), anthHeaders...)
		var pieces []string
		for _, ev := range parseSSE(t, b) {
			var d struct {
				Delta struct {
					Type string `json:"type"`
					Text string `json:"text"`
				} `json:"delta"`
			}
			if json.Unmarshal([]byte(ev.data), &d) == nil && d.Delta.Type == "text_delta" {
				pieces = append(pieces, d.Delta.Text)
			}
		}
		return s, pieces
	}
	t.Run("stream", func(t *testing.T) {
		s, pieces := stream(t, body)
		if s.Content[0].Text != text || *s.Usage.OutputTokens != *full.Usage.OutputTokens || len(pieces) != *full.Usage.OutputTokens {
			t.Errorf("stream %q in %d pieces, output_tokens %d; answer %q, %d", s.Content[0].Text, len(pieces), *s.Usage.OutputTokens, text, *full.Usage.OutputTokens)
		}
		for _, p := range pieces {
			if !utf8.ValidString(p) || len(p) > 5 {
				t.Errorf("piece %q", p)
			}
		}
	})

	for _, c := range []struct {
		name  string
		cap   int
		body  string
		limit int
	}{
		{"max_tokens cuts the JSON", 64, strings.Replace(body, `"max_tokens":50`, `"max_tokens":5`, 1), 5},
		{"--max-tokens cuts the JSON", 3, body, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := start(t, Options{API: APIAnthropic, Model: model, APIKey: "key", MaxTokens: c.cap})
			_, b := h.must("POST", "/v1/messages", c.body, anthHeaders...)
			m := decode[anthMessage](t, b)
			s := anthStream(t, h, strings.Replace(c.body, "{", `{"stream":true,`, 1))
			for _, got := range []anthMessage{m, s} {
				cut := got.Content[0].Text
				if *got.StopReason != "max_tokens" || *got.Usage.OutputTokens != c.limit || !strings.HasPrefix(text, cut) || len(cut) < 4*c.limit || len(cut) > 4*c.limit+2 || json.Valid([]byte(cut)) {
					t.Errorf("stop_reason %s, output_tokens %d, text %q: want max_tokens, %d, the first %d tokens of %q",
						*got.StopReason, *got.Usage.OutputTokens, cut, c.limit, c.limit, text)
				}
			}
		})
	}

	t.Run("stop sequence", func(t *testing.T) {
		m, cut := whole(t, claudeBody(model, "extract it", formatConfig(formatSchema)+`,"stop_sequences":["\"count\""]`))
		if *m.StopReason != "stop_sequence" || m.StopSequence == nil || *m.StopSequence != `"count"` || cut != text[:strings.Index(text, `"count"`)] {
			t.Errorf("stop_reason %s, text %q of %q", *m.StopReason, cut, text)
		}
		if *m.Usage.OutputTokens != (len(cut)+3)/4 {
			t.Errorf("output_tokens %d for %d bytes", *m.Usage.OutputTokens, len(cut))
		}
	})

	t.Run("a string schema", func(t *testing.T) {
		_, s := whole(t, claudeBody(model, "one word", formatConfig(`{"type":"string"}`)))
		var w string
		if err := json.Unmarshal([]byte(s), &w); err != nil || w == "" {
			t.Errorf("text %q: %v", s, err)
		}
	})

	t.Run("a tool call comes without a preamble", func(t *testing.T) {
		m, _ := whole(t, claudeBody(model, "what does get_weather say for Paris?", weatherTool+","+formatConfig(formatSchema)))
		if len(m.Content) != 1 || m.Content[0].Type != "tool_use" || *m.StopReason != "tool_use" {
			t.Errorf("content %+v, stop_reason %s", m.Content, *m.StopReason)
		}
	})

	t.Run("after adaptive thinking", func(t *testing.T) {
		h := start(t, Options{API: APIAnthropic, Model: "claude-opus-4-7", APIKey: "key", MaxTokens: 64})
		ascii := `{"type":"object","additionalProperties":false,"properties":{"a":{"type":"integer"},"b":{"type":"string"}}}`
		b := strings.Replace(claudeBody("claude-opus-4-7", "extract it", formatConfig(ascii)+`,"thinking":{"type":"adaptive"}`), `"max_tokens":50`, `"max_tokens":2048`, 1)
		_, raw := h.must("POST", "/v1/messages", b, anthHeaders...)
		m := decode[anthMessage](t, raw)
		if len(m.Content) != 2 || m.Content[0].Type != "thinking" || !json.Valid([]byte(m.Content[1].Text)) ||
			*m.Usage.OutputTokens != 3+thinkingWords+(len(m.Content[1].Text)+3)/4 {
			t.Errorf("%s", raw)
		}
		if s := anthStream(t, h, strings.Replace(b, "{", `{"stream":true,`, 1)); !reflect.DeepEqual(s.Content, m.Content) {
			t.Errorf("stream %+v, answer %+v", s.Content, m.Content)
		}
	})

	t.Run("cut stream", func(t *testing.T) {
		_, b, err := h.do("POST", "/v1/messages", strings.Replace(body, "{", `{"stream":true,`, 1), append(anthHeaders, "x-mock-cut-after", "2")...)
		if err == nil || strings.Contains(string(b), "message_stop") || strings.Count(string(b), "text_delta") != 2 {
			t.Errorf("err %v: %s", err, b)
		}
	})
}

// TestMessagesOutputFormatErrors: what structured outputs refuse: a format that is
// not a json_schema with an object schema, a model without them, and a schema object
// that does not set additionalProperties to false, named by its path.
func TestMessagesOutputFormatErrors(t *testing.T) {
	const model = "claude-haiku-4-5"
	h := startClaude(t, model)
	closed := func(props string) string {
		return `{"type":"object","additionalProperties":false,"properties":{` + props + `}}`
	}
	for _, c := range []struct{ name, body, msg string }{
		{"format not an object", claudeBody(model, "hi", `"output_config":{"format":"json"}`), errFormatObject.msg},
		{"no type", claudeBody(model, "hi", `"output_config":{"format":{"schema":{}}}`), errFormatTypeMissing.msg},
		{"another type", claudeBody(model, "hi", `"output_config":{"format":{"type":"json_object","schema":{}}}`), errFormatType.msg},
		{"no schema", claudeBody(model, "hi", `"output_config":{"format":{"type":"json_schema"}}`), errFormatSchemaMissing.msg},
		{"schema not an object", claudeBody(model, "hi", formatConfig(`[]`)), errFormatSchemaObject.msg},
		{"claude-mock has no structured outputs", messagesBody("hi", formatConfig(formatSchema)), errFormatModel.msg},
		{"opus 4.1 has none", claudeBody("claude-opus-4-1-20250805", "hi", formatConfig(formatSchema)), errFormatModel.msg},
		{"sonnet 4 has none", claudeBody("claude-sonnet-4-20250514", "hi", formatConfig(formatSchema)), errFormatModel.msg},
		{"open root", claudeBody(model, "hi", formatConfig(`{"type":"object","properties":{}}`)),
			"output_config.format.schema: For 'object' type, 'additionalProperties' must be explicitly set to false"},
		{"root allowing more", claudeBody(model, "hi", formatConfig(`{"type":"object","additionalProperties":true}`)),
			"output_config.format.schema: For 'object' type, 'additionalProperties' must be explicitly set to false"},
		{"open nested property", claudeBody(model, "hi", formatConfig(closed(`"a":{"type":"string"},"detail":{"type":"object","properties":{}}`))),
			"output_config.format.schema.properties.detail: For 'object' type, 'additionalProperties' must be explicitly set to false"},
		{"open array items", claudeBody(model, "hi", formatConfig(closed(`"tags":{"type":"array","items":{"type":["object","null"]}}`))),
			"output_config.format.schema.properties.tags.items: For 'object' type, 'additionalProperties' must be explicitly set to false"},
		{"open $defs entry", claudeBody(model, "hi", formatConfig(`{"type":"object","additionalProperties":false,"$defs":{"addr":{"type":"object"}}}`)),
			"output_config.format.schema.$defs.addr: For 'object' type, 'additionalProperties' must be explicitly set to false"},
		{"open anyOf branch", claudeBody(model, "hi", formatConfig(closed(`"x":{"anyOf":[{"type":"string"},{"type":"object"}]}`))),
			"output_config.format.schema.properties.x.anyOf.1: For 'object' type, 'additionalProperties' must be explicitly set to false"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, b := h.must("POST", "/v1/messages", c.body, anthHeaders...)
			if got := refusal(t, resp.StatusCode, b); got != c.msg {
				t.Errorf("message %q, want %q", got, c.msg)
			}
		})
	}
	t.Run("format null is none", func(t *testing.T) {
		resp, b := h.must("POST", "/v1/messages", claudeBody(model, "hi", `"output_config":{"format":null,"effort":"low"}`), anthHeaders...)
		if resp.StatusCode != 200 || json.Valid([]byte(decode[anthMessage](t, b).Content[0].Text)) {
			t.Errorf("status %d: %s", resp.StatusCode, b)
		}
	})
}

// claude5Models are the Claude 5 models as the Anthropic API, Bedrock and Vertex
// spell them, and unlisted ones of major version 5 or later.
var claude5Models = []string{
	"claude-opus-5", "anthropic.claude-opus-5", "claude-sonnet-5", "claude-sonnet-5@20260701",
	"claude-opus-5-5", "us.anthropic.claude-opus-5-5-v1:0", "claude-sonnet-5-5", "claude-fable-5", "anthropic.claude-fable-5",
	"claude-haiku-5-5", "anthropic.claude-haiku-5-5", "claude-fable-5-1", "claude-mythos-5", "anthropic.claude-mythos-5-1",
	"claude-opus-5-1", "claude-haiku-6@20270101",
}

// TestClaude5ModelOf: the Claude 5 names, however spelled, find their own entry, a
// x.5 or x.1 model never its x.0 one; a minor version of a listed name that is not
// listed itself (Opus 5.1) is none of them, while a date or a Bedrock version suffix
// is no minor version.
func TestClaude5ModelOf(t *testing.T) {
	for _, c := range []struct {
		model     string
		caps      claudeCaps
		noDisable *badRequest
	}{
		{"claude-opus-5", capsClaude5 | capNoDisableHighEffort, nil},
		{"anthropic.claude-opus-5", capsClaude5 | capNoDisableHighEffort, nil},
		{"claude-opus-5@20260724", capsClaude5 | capNoDisableHighEffort, nil},
		{"claude-sonnet-5", capsClaude5, nil},
		{"claude-sonnet-5-20260701", capsClaude5, nil},
		{"claude-opus-5-5", capsClaude5 | capNoForcedTool, errDisabledOpus55},
		{"us.anthropic.claude-opus-5-5-v1:0", capsClaude5 | capNoForcedTool, errDisabledOpus55},
		{"claude-sonnet-5-5", capsClaude5 | capNoForcedTool | capBetweenTools, errDisabledSonnet55},
		{"claude-fable-5", capsClaude5 | capForcedNoThinking, errDisabledFable5},
		{"anthropic.claude-fable-5", capsClaude5 | capForcedNoThinking, errDisabledFable5},
		{"claude-haiku-5-5", capsClaude5 | capNoDisableHighEffort, nil},
		{"anthropic.claude-haiku-5-5", capsClaude5 | capNoDisableHighEffort, nil},
		{"claude-haiku-5-5@20261007", capsClaude5 | capNoDisableHighEffort, nil},
		{"claude-fable-5-1", capsClaude5 | capNoForcedTool, errDisabledFable5},
		{"anthropic.claude-fable-5-1", capsClaude5 | capNoForcedTool, errDisabledFable5},
		{"claude-mythos-5-1", capsClaude5 | capNoForcedTool, errDisabledFable5},
		{"anthropic.claude-mythos-5-1", capsClaude5 | capNoForcedTool, errDisabledFable5},
		{"claude-mythos-5", capsClaude5 | capForcedNoThinking, errDisabledFable5},
		{"anthropic.claude-mythos-5", capsClaude5 | capForcedNoThinking, errDisabledFable5},
		{"claude-mythos-5@20260609", capsClaude5 | capForcedNoThinking, errDisabledFable5},
		{"claude-opus-5-1", 0, nil},
		{"claude-opus-50", 0, nil},
	} {
		t.Run(c.model, func(t *testing.T) {
			m := claudeModelOf([]byte(c.model))
			switch {
			case c.caps == 0 && m != nil && m != &claude5Later:
				t.Errorf("found %s", m.name)
			case c.caps == 0:
			case m == nil || m == &claude5Later:
				t.Errorf("found no entry of its own: %v", m)
			case m.caps != c.caps || m.noDisable != c.noDisable:
				t.Errorf("%s: caps %010b, want %010b; noDisable %v, want %v", m.name, m.caps, c.caps, m.noDisable, c.noDisable)
			}
		})
	}
}

// TestClaude5LaterModelOf: a Claude model of major version 5 or later that no entry
// names, however spelled, keeps to the Claude 5 models' common rules; one of an
// earlier major version, an old-style name, a date where the version goes or another
// model is none of them.
func TestClaude5LaterModelOf(t *testing.T) {
	for _, model := range []string{
		"claude-opus-5-1", "claude-sonnet-5-1-20261201", "claude-haiku-5", "claude-haiku-5-7",
		"claude-haiku-6", "claude-opus-6-5", "anthropic.claude-sonnet-6-v1:0", "us.anthropic.claude-fable-6-1-v1:0",
		"claude-opus-7@20280101", "claude-sonnet-10", "claude-opus-50", "claude-epic-5",
	} {
		t.Run(model, func(t *testing.T) {
			if m := claudeModelOf([]byte(model)); m != &claude5Later {
				t.Errorf("found %v, want the Claude 5 common rules", m)
			}
			if got := claudeCapsOf([]byte(model)); got != capsClaude5 {
				t.Errorf("caps %010b, want %010b", got, capsClaude5)
			}
		})
	}
	for _, model := range []string{
		"claude-opus-4-9", "claude-haiku-4", "claude-3-7-sonnet-20250219", "claude-3-5-haiku-latest",
		"claude-sonnet-20260701", "claude-opus-05", "claude-mock", "claude-", "claude-opus-", "claude-opus5", "mock-5",
		"claude-Opus-5",
	} {
		t.Run(model, func(t *testing.T) {
			if m := claudeModelOf([]byte(model)); m != nil {
				t.Errorf("found %s", m.name)
			}
		})
	}
}

// TestMessagesClaude5ThinkByDefault: a Claude 5 request without thinking (or with
// null) thinks as adaptive does: a thinking block first, its text omitted but its
// signature there and its tokens counted, a stream sending only its
// signature_delta; display "summarized" shows it. Opus 4.8 does not think unasked.
func TestMessagesClaude5ThinkByDefault(t *testing.T) {
	for _, model := range append(claude5Models, "claude-opus-4-8") {
		t.Run(model, func(t *testing.T) {
			h := start(t, Options{API: APIAnthropic, Model: model, APIKey: "key", MaxTokens: 32})
			thinks := model != "claude-opus-4-8"
			cases := []struct {
				name, extra string
				summarized  bool
			}{
				{"no thinking field", "", false},
				{"thinking null", `"thinking":null`, false},
				{"display summarized", `"thinking":{"type":"adaptive","display":"summarized"}`, true},
			}
			if !thinks {
				cases = cases[:2] // asked to think, it does: TestMessagesThinkingDisplay
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					body := strings.Replace(claudeBody(model, "think first", c.extra), `"max_tokens":50`, `"max_tokens":2048`, 1)
					resp, b := h.must("POST", "/v1/messages", body, anthHeaders...)
					if resp.StatusCode != 200 {
						t.Fatalf("status %d: %s", resp.StatusCode, b)
					}
					m := decode[anthMessage](t, b)
					if !thinks {
						if len(m.Content) != 1 || m.Content[0].Type != "text" {
							t.Errorf("content %s: Opus 4.8 thinks only when asked", b)
						}
						return
					}
					if len(m.Content) != 2 || m.Content[0].Type != "thinking" || m.Content[1].Type != "text" || m.Content[0].Signature == "" {
						t.Fatalf("content %s", b)
					}
					if got := m.Content[0].Thinking != ""; got != c.summarized {
						t.Errorf("thinking %q, summarized %v", m.Content[0].Thinking, c.summarized)
					}
					if *m.Usage.OutputTokens <= 3+thinkingWords {
						t.Errorf("output_tokens %d leaves out the thinking", *m.Usage.OutputTokens)
					}
					stream := strings.Replace(body, "{", `{"stream":true,`, 1)
					_, sb := h.must("POST", "/v1/messages", stream, anthHeaders...)
					deltas := strings.Count(string(sb), `"type":"thinking_delta"`)
					if c.summarized && deltas != 3+thinkingWords || !c.summarized && deltas != 0 || strings.Count(string(sb), `"type":"signature_delta"`) != 1 {
						t.Errorf("%d thinking_delta events, summarized %v: %s", deltas, c.summarized, sb)
					}
					if s := anthStream(t, h, stream); !reflect.DeepEqual(s.Content, m.Content) {
						t.Errorf("stream put together\n%+v\nanswer\n%+v", s.Content, m.Content)
					}
				})
			}
		})
	}
}

// TestMessagesClaude5ThinkingRules: what each Claude 5 model takes and refuses of
// thinking, effort and sampling, in the API's words: disabled is taken on Opus 5 and
// Haiku 5.5 at effort high and below and on Sonnet 5 and the unlisted models of major
// version 5 or later at any, refused on the models that always think;
// between_tools is Sonnet 5.5's, at effort high and below; thinking budgets, sampling
// settings but their defaults and prefills are refused as on Opus 4.8, with thinking
// on by default refusing sampling first as thinking does.
func TestMessagesClaude5ThinkingRules(t *testing.T) {
	const (
		disabled = `"thinking":{"type":"disabled"}`
		between  = `"thinking":{"type":"between_tools"}`
		// strictTool is a strict tool the model may call: answered with thinking first.
		strictTool = `"tools":[{"name":"get_weather","strict":true,"input_schema":{"type":"object","additionalProperties":false,` +
			`"properties":{"city":{"type":"string"}},"required":["city"]}}]`
	)
	effort := func(level string) string { return `"output_config":{"effort":"` + level + `"}` }
	type rule struct {
		name, extra string
		msg         string // empty: taken
		thinking    bool   // taken: the answer opens with a thinking block
	}
	common := []rule{
		{"adaptive", `"thinking":{"type":"adaptive"}`, "", true},
		{"effort xhigh", effort("xhigh"), "", true},
		{"effort max", effort("max"), "", true},
		{"effort low", effort("low"), "", true},
		{"structured outputs", formatConfig(`{"type":"string"}`), "", true},
		{"thinking enabled", `"thinking":{"type":"enabled","budget_tokens":1024}`, errThinkingEnabled.msg, false},
		{"temperature, refused as thinking refuses it", `"temperature":0.5`, errThinkingTemp.msg, false},
		{"top_k, refused as thinking refuses it", `"top_k":5`, errThinkingTopK.msg, false},
		{"top_p", `"top_p":0.99`, "`top_p` is deprecated for this model.", false},
		{"sampling at its defaults", `"temperature":1,"top_p":1`, "", true},
		{"unknown thinking type", `"thinking":{"type":"auto"}`, errThinkingType.msg, false},
	}
	for _, c := range []struct {
		model string
		rules []rule
	}{
		{"claude-opus-5", []rule{
			{"disabled", disabled, "", false},
			{"disabled at effort high", disabled + "," + effort("high"), "", false},
			{"disabled at effort xhigh", disabled + "," + effort("xhigh"), errXHighDisabled.msg, false},
			{"disabled at effort max", disabled + "," + effort("max"), errMaxDisabled.msg, false},
			{"disabled with temperature", disabled + `,"temperature":0.2`, "`temperature` is deprecated for this model.", false},
			{"between_tools", between, errThinkingType.msg, false},
		}},
		{"claude-sonnet-5", []rule{
			{"disabled", disabled, "", false},
			{"disabled at effort max", disabled + "," + effort("max"), "", false},
			{"between_tools", between, errThinkingType.msg, false},
		}},
		{"claude-opus-5-5", []rule{
			{"disabled", disabled, errDisabledOpus55.msg, false},
			{"disabled at effort low", disabled + "," + effort("low"), errDisabledOpus55.msg, false},
			{"between_tools", between, errThinkingType.msg, false},
		}},
		{"claude-sonnet-5-5", []rule{
			{"disabled", disabled, errDisabledSonnet55.msg, false},
			{"between_tools", between, "", false},
			{"between_tools at effort high", between + "," + effort("high"), "", false},
			{"between_tools at effort xhigh", between + "," + effort("xhigh"), errXHighBetween.msg, false},
			{"between_tools at effort max", between + "," + effort("max"), errMaxBetween.msg, false},
		}},
		{"claude-fable-5", []rule{
			{"disabled", disabled, errDisabledFable5.msg, false},
			{"between_tools", between, errThinkingType.msg, false},
		}},
		{"claude-haiku-5-5", []rule{
			{"disabled", disabled, "", false},
			{"disabled at effort low", disabled + "," + effort("low"), "", false},
			{"disabled at effort medium", disabled + "," + effort("medium"), "", false},
			{"disabled at effort high", disabled + "," + effort("high"), "", false},
			{"disabled at effort xhigh", disabled + "," + effort("xhigh"), errXHighDisabled.msg, false},
			{"disabled at effort max", disabled + "," + effort("max"), errMaxDisabled.msg, false},
			{"between_tools", between, errThinkingType.msg, false},
		}},
		{"claude-fable-5-1", []rule{
			{"disabled", disabled, errDisabledFable5.msg, false},
			{"disabled at effort low", disabled + "," + effort("low"), errDisabledFable5.msg, false},
			{"between_tools", between, errThinkingType.msg, false},
			{"strict tool", strictTool, "", true},
		}},
		{"claude-mythos-5", []rule{
			{"disabled", disabled, errDisabledFable5.msg, false},
			{"between_tools", between, errThinkingType.msg, false},
		}},
		{"claude-mythos-5-1", []rule{
			{"disabled", disabled, errDisabledFable5.msg, false},
			{"between_tools", between, errThinkingType.msg, false},
			{"strict tool", strictTool, "", true},
		}},
		{"claude-haiku-6", []rule{ // unlisted: the common rules
			{"disabled", disabled, "", false},
			{"disabled at effort max", disabled + "," + effort("max"), "", false},
			{"between_tools", between, errThinkingType.msg, false},
		}},
		{"anthropic.claude-opus-5-1-v1:0", []rule{
			{"disabled", disabled, "", false},
			{"disabled at effort xhigh", disabled + "," + effort("xhigh"), "", false},
		}},
	} {
		t.Run(c.model, func(t *testing.T) {
			h := startClaude(t, c.model)
			for _, r := range append(c.rules, common...) {
				t.Run(r.name, func(t *testing.T) {
					body := strings.Replace(claudeBody(c.model, "hi", r.extra), `"max_tokens":50`, `"max_tokens":2048`, 1)
					resp, b := h.must("POST", "/v1/messages", body, anthHeaders...)
					if r.msg != "" {
						if got := refusal(t, resp.StatusCode, b); got != r.msg {
							t.Errorf("message %q, want %q", got, r.msg)
						}
						return
					}
					if resp.StatusCode != 200 {
						t.Fatalf("status %d: %s", resp.StatusCode, b)
					}
					if m := decode[anthMessage](t, b); (m.Content[0].Type == "thinking") != r.thinking {
						t.Errorf("content %s, thinking %v", b, r.thinking)
					}
				})
			}
			t.Run("prefill", func(t *testing.T) {
				resp, b := h.must("POST", "/v1/messages", prefillBody(c.model, "The answer:"), anthHeaders...)
				if got := refusal(t, resp.StatusCode, b); got != errPrefill.msg {
					t.Errorf("message %q", got)
				}
			})
		})
	}
}

// TestMessagesClaude5ForcedToolUse: tool_choice any or tool is refused while thinking
// is on, and Opus 5, Sonnet 5, Haiku 5.5 and the unlisted models think unless told
// not to; Opus 5.5, Sonnet 5.5, Fable 5.1 and Mythos 5.1 refuse it whatever the
// thinking; Fable 5 and Mythos 5 take it, answering with the tool call alone. auto
// and none are taken everywhere.
func TestMessagesClaude5ForcedToolUse(t *testing.T) {
	const (
		anyTool   = `"tool_choice":{"type":"any"}`
		namedTool = `"tool_choice":{"type":"tool","name":"get_time"}`
		disabled  = `"thinking":{"type":"disabled"}`
	)
	for _, c := range []struct {
		model, extra string
		msg          string // empty: taken, answered with the forced call alone
	}{
		{"claude-opus-5", anyTool, errThinkingForced.msg},
		{"claude-opus-5", namedTool + `,"thinking":{"type":"adaptive"}`, errThinkingForced.msg},
		{"claude-opus-5", anyTool + "," + disabled, ""},
		{"claude-sonnet-5", namedTool, errThinkingForced.msg},
		{"claude-sonnet-5", namedTool + "," + disabled, ""},
		{"claude-opus-5-5", anyTool, errForcedTool.msg},
		{"claude-opus-5-5", namedTool, errForcedTool.msg},
		{"claude-sonnet-5-5", anyTool, errForcedTool.msg},
		{"claude-sonnet-5-5", namedTool + `,"thinking":{"type":"between_tools"}`, errForcedTool.msg},
		{"claude-fable-5", anyTool, ""},
		{"claude-fable-5", namedTool + `,"thinking":{"type":"adaptive"}`, ""},
		{"claude-mythos-5", anyTool, ""},
		{"claude-mythos-5", namedTool, ""},
		{"claude-fable-5-1", anyTool, errForcedTool.msg},
		{"claude-fable-5-1", namedTool + `,"thinking":{"type":"adaptive"}`, errForcedTool.msg},
		{"claude-mythos-5-1", namedTool, errForcedTool.msg},
		{"claude-haiku-5-5", anyTool, errThinkingForced.msg},
		{"claude-haiku-5-5", namedTool + "," + disabled, ""},
		{"claude-haiku-6", anyTool, errThinkingForced.msg},
		{"claude-haiku-6", anyTool + "," + disabled, ""},
	} {
		t.Run(c.model+" "+c.extra, func(t *testing.T) {
			h := startClaude(t, c.model)
			body := strings.Replace(claudeBody(c.model, "what time is it?", weatherTool+","+c.extra), `"max_tokens":50`, `"max_tokens":2048`, 1)
			resp, b := h.must("POST", "/v1/messages", body, anthHeaders...)
			if c.msg != "" {
				if got := refusal(t, resp.StatusCode, b); got != c.msg {
					t.Errorf("message %q, want %q", got, c.msg)
				}
				return
			}
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			m := decode[anthMessage](t, b)
			if len(m.Content) != 1 || m.Content[0].Type != "tool_use" || *m.StopReason != "tool_use" {
				t.Errorf("content %s", b)
			}
			// Each request has its ids: the stream's call is the same but for its id.
			s := anthStream(t, h, strings.Replace(body, "{", `{"stream":true,`, 1))
			if len(s.Content) != 1 {
				t.Fatalf("stream %+v", s.Content)
			}
			s.Content[0].ID = m.Content[0].ID
			if !reflect.DeepEqual(s.Content, m.Content) {
				t.Errorf("stream %+v, answer %+v", s.Content, m.Content)
			}
		})
	}
	for _, model := range []string{"claude-opus-5-5", "claude-sonnet-5-5", "claude-fable-5", "claude-fable-5-1", "claude-mythos-5", "claude-mythos-5-1"} {
		for _, choice := range []string{`"tool_choice":{"type":"auto"}`, `"tool_choice":{"type":"none"}`} {
			t.Run(model+" "+choice, func(t *testing.T) {
				h := startClaude(t, model)
				body := strings.Replace(claudeBody(model, "what does get_weather say for Paris?", weatherTool+","+choice), `"max_tokens":50`, `"max_tokens":2048`, 1)
				if resp, b := h.must("POST", "/v1/messages", body, anthHeaders...); resp.StatusCode != 200 {
					t.Errorf("status %d: %s", resp.StatusCode, b)
				}
			})
		}
	}
}

// TestMessagesClaude5ToolLoop: with thinking on by default, a tool loop's last
// assistant turn must begin with the thinking block the call came with, sent back
// as it was (its text omitted); Sonnet 5.5's between_tools answers without up-front
// thinking and takes the loop back with or without thinking blocks (its notes
// between tool calls are thinking blocks), where thinking disabled refuses them.
func TestMessagesClaude5ToolLoop(t *testing.T) {
	const question = "what does get_weather say for Paris?"
	for _, model := range claude5Models {
		t.Run(model, func(t *testing.T) {
			h := startClaude(t, model)
			head := `{"model":` + quote(model) + `,"max_tokens":2048,` + weatherTool
			resp, b := h.must("POST", "/v1/messages", head+`,"messages":[{"role":"user","content":`+quote(question)+`}]}`, anthHeaders...)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			raw := decode[struct {
				Content []json.RawMessage `json:"content"`
			}](t, b)
			m := decode[anthMessage](t, b)
			use := m.Content[len(m.Content)-1]
			if m.Content[0].Type != "thinking" || m.Content[0].Thinking != "" || use.Type != "tool_use" {
				t.Fatalf("content %s", b)
			}
			toolUse := `{"type":"tool_use","id":"` + use.ID + `","name":"get_weather","input":` + string(use.Input) + `}`
			loop := func(blocks string) string {
				return head + `,"messages":[{"role":"user","content":` + quote(question) + `},` +
					`{"role":"assistant","content":[` + blocks + `]},` +
					`{"role":"user","content":[{"type":"tool_result","tool_use_id":"` + use.ID + `","content":"18C"}]}]}`
			}
			if resp, b := h.must("POST", "/v1/messages", loop(string(raw.Content[0])+","+toolUse), anthHeaders...); resp.StatusCode != 200 {
				t.Errorf("thinking block sent back: status %d: %s", resp.StatusCode, b)
			}
			resp, b = h.must("POST", "/v1/messages", loop(toolUse), anthHeaders...)
			if got := refusal(t, resp.StatusCode, b); !strings.HasPrefix(got, "messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found `tool_use`.") {
				t.Errorf("thinking block left out: %q", got)
			}
		})
	}
	t.Run("sonnet 5.5 between_tools", func(t *testing.T) {
		const model = "claude-sonnet-5-5"
		h := startClaude(t, model)
		head := `{"model":"` + model + `","max_tokens":2048,"thinking":{"type":"between_tools"},` + weatherTool
		resp, b := h.must("POST", "/v1/messages", head+`,"messages":[{"role":"user","content":`+quote(question)+`}]}`, anthHeaders...)
		m := decode[anthMessage](t, b)
		use := m.Content[len(m.Content)-1]
		if resp.StatusCode != 200 || m.Content[0].Type == "thinking" || use.Type != "tool_use" {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		note := `{"type":"thinking","thinking":"checking","signature":"` + string(appendThinkingSignature(nil, []byte("checking"))) + `"}`
		toolUse := `{"type":"tool_use","id":"` + use.ID + `","name":"get_weather","input":` + string(use.Input) + `}`
		h5 := startClaude(t, "claude-opus-5")
		for _, blocks := range []string{toolUse, note + "," + toolUse} {
			body := head + `,"messages":[{"role":"user","content":` + quote(question) + `},{"role":"assistant","content":[` + blocks + `]},` +
				`{"role":"user","content":[{"type":"tool_result","tool_use_id":"` + use.ID + `","content":"18C"}]}]}`
			if resp, b := h.must("POST", "/v1/messages", body, anthHeaders...); resp.StatusCode != 200 {
				t.Errorf("%s: status %d: %s", blocks, resp.StatusCode, b)
			}
			opus := strings.Replace(strings.Replace(body, model, "claude-opus-5", 1), "between_tools", "disabled", 1)
			resp, b := h5.must("POST", "/v1/messages", opus, anthHeaders...)
			switch {
			case blocks == toolUse && resp.StatusCode != 200:
				t.Errorf("opus 5, thinking disabled, no thinking block: status %d: %s", resp.StatusCode, b)
			case blocks != toolUse:
				if got := refusal(t, resp.StatusCode, b); got != "messages.1.content.0"+errThinkingOff {
					t.Errorf("opus 5, thinking disabled, a thinking block: %q", got)
				}
			}
		}
	})
}
