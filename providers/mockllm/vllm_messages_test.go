package mockllm

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// vLLM serves Anthropic's Messages API on its OpenAI server
// (vllm/entrypoints/anthropic/api_router.py); mockllm's default API does too, as the
// gateway's tests take mockllm for vLLM.

// vllmMessagesBody is a Messages request to mockllm's default model.
func vllmMessagesBody(content, extra string) string {
	s := `{"model":"mock-1","max_tokens":50,"messages":[{"role":"user","content":` + quote(content) + `}]`
	if extra != "" {
		s += "," + extra
	}
	return s + "}"
}

// members decodes a JSON object's member names and raw values.
func members(t *testing.T, b []byte) map[string]json.RawMessage {
	t.Helper()
	return decode[map[string]json.RawMessage](t, b)
}

func keys(m map[string]json.RawMessage) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestVLLMMessages: an answer is messages_full_converter's: the chat completion's id,
// type, role, content, model, stop_reason and usage of input_tokens and output_tokens,
// without stop_sequence or the cache counts (None members are dropped), and without
// Anthropic's request-id header; no anthropic-version header is needed.
func TestVLLMMessages(t *testing.T) {
	h := start(t, Options{MaxTokens: 32})
	cases := []struct {
		name   string
		body   string
		hdr    []string
		stop   string
		blocks []string
	}{
		{"text cut by max_tokens", `{"model":"mock-1","max_tokens":3,"messages":[{"role":"user","content":"hi"}]}`, nil, "max_tokens", []string{"text"}},
		{"text that ends by itself", vllmMessagesBody("hi", `"system":"be brief","temperature":1.5,"top_p":0.9,"top_k":40`), nil, "end_turn", []string{"text"}},
		{"members vLLM does not define are dropped, thinking among them",
			vllmMessagesBody("hi", `"thinking":{"type":"enabled","budget_tokens":1024},"service_tier":"auto","kv_transfer_params":null,"n":3,"user":"u"`),
			nil, "end_turn", []string{"text"}},
		{"a system message and Claude Code's ctx role are taken",
			`{"model":"mock-1","max_tokens":50,"messages":[{"role":"system","content":"sys"},{"role":"ctx","content":"c"},{"role":"user","content":"hi"},{"role":"assistant","content":"trailing "}]}`,
			nil, "end_turn", []string{"text"}},
		{"a stop sequence ends the turn", vllmMessagesBody("hi", `"stop_sequences":["a"]`), nil, "end_turn", []string{"text"}},
		{"a mentioned tool is called after a preamble", vllmMessagesBody("what does get_weather say for Paris?", weatherTool), nil, "tool_use", []string{"text", "tool_use"}},
		{"a forced tool is called alone", vllmMessagesBody("hello", weatherTool+`,"tool_choice":{"type":"tool","name":"get_time"}`), nil, "tool_use", []string{"tool_use"}},
		{"x-api-key and anthropic-version are not read", vllmMessagesBody("hi", ""), []string{"x-api-key", "whatever", "anthropic-version", "2023-06-01"}, "end_turn", []string{"text"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := h.must("POST", "/v1/messages", tc.body, tc.hdr...)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			if v := resp.Header.Get("request-id"); v != "" {
				t.Errorf("request-id %q: vLLM sends Anthropic's request-id header not", v)
			}
			if want := []string{"content", "id", "model", "role", "stop_reason", "type", "usage"}; !slices.Equal(keys(members(t, b)), want) {
				t.Errorf("members %v, want %v: %s", keys(members(t, b)), want, b)
			}
			m := decode[anthMessage](t, b)
			if !strings.HasPrefix(m.ID, "chatcmpl-") || len(m.ID) != len("chatcmpl-")+32 || m.Type != "message" || m.Role != "assistant" || m.Model != "mock-1" {
				t.Errorf("head %s", b)
			}
			if m.StopReason == nil || *m.StopReason != tc.stop {
				t.Errorf("stop_reason %v, want %s", m.StopReason, tc.stop)
			}
			var got []string
			for _, blk := range m.Content {
				got = append(got, blk.Type)
				if blk.Type == "tool_use" && (!strings.HasPrefix(blk.ID, "chatcmpl-tool-") || !json.Valid(blk.Input) || blk.Input[0] != '{') {
					t.Errorf("tool_use block %+v", blk)
				}
				if blk.Type == "thinking" {
					t.Errorf("thinking block: vLLM's request has no thinking member")
				}
			}
			if !slices.Equal(got, tc.blocks) {
				t.Errorf("blocks %v, want %v", got, tc.blocks)
			}
			u := members(t, members(t, b)["usage"])
			if want := []string{"input_tokens", "output_tokens"}; !slices.Equal(keys(u), want) {
				t.Errorf("usage %v, want %v", keys(u), want)
			}
			if m.Usage.InputTokens < 1 || m.Usage.OutputTokens == nil || *m.Usage.OutputTokens < 1 {
				t.Errorf("usage %s", b)
			}
		})
	}
}

// TestVLLMMessagesFormat: output_config.format becomes the chat completion's
// json_schema response_format, whatever the model's name and without Anthropic's
// closed objects; its text is a JSON value of the schema, streamed alike.
func TestVLLMMessagesFormat(t *testing.T) {
	h := start(t, Options{MaxTokens: 64})
	body := vllmMessagesBody("Forecast as JSON", `"max_tokens":64,"output_config":{"effort":"max","format":{"schema":{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}}}}}`)
	resp, b := h.must("POST", "/v1/messages", body)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	m := decode[anthMessage](t, b)
	if len(m.Content) != 1 || !json.Valid([]byte(m.Content[0].Text)) || !strings.HasPrefix(m.Content[0].Text, `{"city":`) {
		t.Fatalf("answer %s", b)
	}
	_, sb := h.must("POST", "/v1/messages", body[:len(body)-1]+`,"stream":true}`)
	var text strings.Builder
	for _, ev := range parseSSE(t, sb) {
		if ev.name == "content_block_delta" {
			text.WriteString(decode[struct{ Delta struct{ Text string } }](t, []byte(ev.data)).Delta.Text)
		}
	}
	if text.String() != m.Content[0].Text {
		t.Errorf("streamed %q, answered %q", text.String(), m.Content[0].Text)
	}
}

// TestVLLMMessagesUsage: input_tokens is the prompt's count, as vLLM takes the chat
// completion's prompt_tokens, so the same messages cost what chat charges them;
// X-Request-Id names the answer as it names a chat completion.
func TestVLLMMessagesUsage(t *testing.T) {
	h := start(t, Options{})
	content := "Write a haiku about load balancers, and explain it in one sentence."
	_, cb := h.must("POST", "/v1/chat/completions", chatBody(content, `"max_tokens":4`))
	chat := decode[chatResp](t, cb)
	_, mb := h.must("POST", "/v1/messages", vllmMessagesBody(content, `"max_tokens":4`), "X-Request-Id", "req-42")
	m := decode[anthMessage](t, mb)
	if m.Usage.InputTokens != chat.Usage.PromptTokens || *m.Usage.OutputTokens != 4 {
		t.Errorf("usage %s, want input_tokens %d (chat's prompt_tokens) and output_tokens 4", mb, chat.Usage.PromptTokens)
	}
	if m.ID != "chatcmpl-req-42" {
		t.Errorf("id %q, want chatcmpl-req-42", m.ID)
	}
	if st := h.s.Stats(); st.Requests["/v1/messages"] != 1 || st.PromptTokens != int64(2*chat.Usage.PromptTokens) {
		t.Errorf("stats %+v", st)
	}
}

// TestVLLMMessagesStream: the stream is message_stream_converter's, byte for byte in
// its framing: message_start (no type or role: dumped without unset members),
// content_block_start, one content_block_delta a token, content_block_stop,
// message_delta with input_tokens and output_tokens, message_stop; the index comes
// last; no ping, and no [DONE] (vLLM turns the chat stream's into message_stop).
func TestVLLMMessagesStream(t *testing.T) {
	h := start(t, Options{MaxTokens: 32})
	body := vllmMessagesBody("hi", `"max_tokens":4`)
	_, plain := h.must("POST", "/v1/messages", body, "X-Request-Id", "r1")
	want := decode[anthMessage](t, plain)
	resp, b := h.must("POST", "/v1/messages", body[:len(body)-1]+`,"stream":true}`, "X-Request-Id", "r1")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" {
		t.Fatalf("status %d %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	evs := parseSSE(t, b)
	var names []string
	var text strings.Builder
	for _, ev := range evs {
		names = append(names, ev.name)
		if !json.Valid([]byte(ev.data)) {
			t.Fatalf("event data %q is not JSON", ev.data)
		}
		if typ := decode[struct{ Type string }](t, []byte(ev.data)).Type; typ != ev.name {
			t.Errorf("event %s has type %s", ev.name, typ)
		}
		if ev.name == "content_block_delta" {
			d := decode[struct {
				Delta struct{ Type, Text string }
				Index *int
			}](t, []byte(ev.data))
			if d.Delta.Type != "text_delta" || d.Index == nil || *d.Index != 0 || !strings.HasSuffix(ev.data, `},"index":0}`) {
				t.Errorf("delta %s", ev.data)
			}
			text.WriteString(d.Delta.Text)
		}
	}
	wantNames := []string{"message_start", "content_block_start", "content_block_delta", "content_block_delta",
		"content_block_delta", "content_block_delta", "content_block_stop", "message_delta", "message_stop"}
	if !slices.Equal(names, wantNames) {
		t.Fatalf("events %v, want %v", names, wantNames)
	}
	if got := evs[0].data; got != `{"type":"message_start","message":{"id":"chatcmpl-r1","content":[],"model":"mock-1","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":`+
		strconv.Itoa(want.Usage.InputTokens)+`,"output_tokens":0}}}` {
		t.Errorf("message_start %s", got)
	}
	for i, w := range map[int]string{
		1: `{"type":"content_block_start","content_block":{"type":"text","text":""},"index":0}`,
		6: `{"type":"content_block_stop","index":0}`,
		7: `{"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"input_tokens":` + strconv.Itoa(want.Usage.InputTokens) + `,"output_tokens":4}}`,
		8: `{"type":"message_stop"}`,
	} {
		if evs[i].data != w {
			t.Errorf("event %d %s, want %s", i, evs[i].data, w)
		}
	}
	if text.String() != want.Content[0].Text {
		t.Errorf("streamed %q, answered %q", text.String(), want.Content[0].Text)
	}
	if bytes.Contains(b, []byte("[DONE]")) || bytes.Contains(b, []byte("ping")) || !bytes.HasSuffix(b, []byte("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")) {
		t.Errorf("stream does not end with message_stop alone: %s", b)
	}
}

// TestVLLMMessagesStreamTool: a tool call streams as vLLM's converter sends it: the
// preamble's block, then a tool_use block (index 1, input {}) whose input_json_delta
// pieces, none empty, join into the plain answer's input; stop_reason tool_use.
func TestVLLMMessagesStreamTool(t *testing.T) {
	h := start(t, Options{MaxTokens: 32})
	body := vllmMessagesBody("what does get_weather say for Paris?", weatherTool)
	_, plain := h.must("POST", "/v1/messages", body)
	want := decode[anthMessage](t, plain)
	_, b := h.must("POST", "/v1/messages", body[:len(body)-1]+`,"stream":true}`)
	var input strings.Builder
	var starts []string
	for _, ev := range parseSSE(t, b) {
		switch ev.name {
		case "ping":
			t.Error("ping event")
		case "content_block_start":
			starts = append(starts, ev.data)
		case "content_block_delta":
			d := decode[struct {
				Delta struct {
					Type        string
					PartialJSON string `json:"partial_json"`
				}
				Index int
			}](t, []byte(ev.data))
			if d.Delta.Type == "input_json_delta" {
				if d.Index != 1 || d.Delta.PartialJSON == "" {
					t.Errorf("input delta %s", ev.data)
				}
				input.WriteString(d.Delta.PartialJSON)
			}
		case "message_delta":
			if !strings.Contains(ev.data, `"delta":{"stop_reason":"tool_use"}`) {
				t.Errorf("message_delta %s", ev.data)
			}
		}
	}
	if len(starts) != 2 || !strings.HasPrefix(starts[1], `{"type":"content_block_start","content_block":{"type":"tool_use","id":"chatcmpl-tool-`) ||
		!strings.HasSuffix(starts[1], `,"name":"get_weather","input":{}},"index":1}`) {
		t.Errorf("block starts %q", starts)
	}
	if len(want.Content) != 2 || input.String() != string(want.Content[1].Input) {
		t.Errorf("streamed input %s, answered %s", input.String(), plain)
	}
}

// TestCountTokens: count_tokens answers the prompt tokens the Messages answer to the
// same body reports as usage.input_tokens, with no max_tokens needed: vLLM's
// {"input_tokens","context_management":{"original_input_tokens"}}, dropping members
// its model does not define; Anthropic's {"input_tokens"}, which refuses them.
func TestCountTokens(t *testing.T) {
	bodies := map[string]string{
		"one user message":     `"messages":[{"role":"user","content":"hello there"}]`,
		"system string":        `"system":"You are terse.","messages":[{"role":"user","content":"Write a haiku about load balancers."}]`,
		"system blocks, tools": `"system":[{"type":"text","text":"sys prompt"}],` + weatherTool + `,"messages":[{"role":"user","content":[{"type":"text","text":"what does get_weather say?"}]}]`,
		"a tool loop": weatherTool + `,"messages":[{"role":"user","content":"get_weather for Oslo"},{"role":"assistant","content":[{"type":"text","text":"Checking."},{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Oslo"}}]},` +
			`{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"12C and windy"}]}]`,
	}
	for _, api := range []string{APIOpenAI, APIAnthropic} {
		t.Run(api, func(t *testing.T) {
			o := Options{API: api}
			hdr := []string{"X-Unused", "x"}
			if api == APIAnthropic {
				o.Model, hdr = "claude-mock", []string{"anthropic-version", "2023-06-01"}
			}
			h := start(t, o)
			model := `{"model":` + quote(h.s.opts.Model) + `,`
			for name, members := range bodies {
				t.Run(name, func(t *testing.T) {
					resp, mb := h.must("POST", "/v1/messages", model+`"max_tokens":50,`+members+"}", hdr...)
					if resp.StatusCode != 200 {
						t.Fatalf("messages: %d %s", resp.StatusCode, mb)
					}
					n := decode[anthMessage](t, mb).Usage.InputTokens
					resp, cb := h.must("POST", "/v1/messages/count_tokens", model+members+"}", hdr...)
					if resp.StatusCode != 200 {
						t.Fatalf("count_tokens: %d %s", resp.StatusCode, cb)
					}
					want := `{"input_tokens":` + strconv.Itoa(n) + `}`
					if api == APIOpenAI {
						want = `{"input_tokens":` + strconv.Itoa(n) + `,"context_management":{"original_input_tokens":` + strconv.Itoa(n) + `}}`
					}
					if string(cb) != want {
						t.Errorf("count_tokens %s, want %s (the answer's input_tokens)", cb, want)
					}
				})
			}
			extra := model + `"max_tokens":50,"stream":true,"temperature":0.5,` + bodies["one user message"] + "}"
			resp, b := h.must("POST", "/v1/messages/count_tokens", extra, hdr...)
			switch {
			case api == APIOpenAI && resp.StatusCode != 200:
				t.Errorf("vLLM drops max_tokens and stream on count_tokens: %d %s", resp.StatusCode, b)
			case api == APIAnthropic && (resp.StatusCode != 400 || !strings.Contains(string(b), "max_tokens: Extra inputs are not permitted")):
				t.Errorf("Anthropic refuses max_tokens on count_tokens: %d %s", resp.StatusCode, b)
			}
			if n := h.s.Stats().Requests["/v1/messages/count_tokens"]; n != int64(len(bodies)+1) {
				t.Errorf("count_tokens requests %d", n)
			}
		})
	}
	t.Run("vLLM's errors", func(t *testing.T) {
		h := start(t, Options{})
		for body, want := range map[string]string{
			`{"model":"other","messages":[{"role":"user","content":"x"}]}`: `{"type":"error","error":{"type":"NotFoundError","message":"The model ` + "`other`" + ` does not exist."}}`,
			`{"model":"mock-1"}`: `{"error":{"message":"messages: Field required","type":"Bad Request","param":null,"code":400}}`,
		} {
			if _, b := h.must("POST", "/v1/messages/count_tokens", body); string(b) != want {
				t.Errorf("%s: %s, want %s", body, b, want)
			}
		}
	})
	t.Run("Anthropic's version header", func(t *testing.T) {
		h := start(t, Options{API: APIAnthropic})
		resp, b := h.must("POST", "/v1/messages/count_tokens", `{"model":"mock-1","messages":[{"role":"user","content":"x"}]}`)
		if resp.StatusCode != 400 || !strings.Contains(string(b), "anthropic-version") || resp.Header.Get("request-id") == "" {
			t.Errorf("%d %s", resp.StatusCode, b)
		}
	})
}

// TestVLLMMessagesErrors: a body vLLM's models refuse (bad JSON, a missing or
// mistyped member, max_tokens under 1, an empty model) is the app's validation error
// in OpenAI's shape; what fails while serving (an unknown model, the context length,
// SamplingParams' checks) comes through translate_error_response as
// {"type":"error","error":{"type","message"}}, its type vLLM's OpenAI one.
func TestVLLMMessagesErrors(t *testing.T) {
	h := start(t, Options{MaxModelLen: 1000})
	validation := func(msg string) string {
		return `{"error":{"message":"` + msg + `","type":"Bad Request","param":null,"code":400}}`
	}
	serving := func(typ, msg string) string {
		return `{"type":"error","error":{"type":"` + typ + `","message":"` + msg + `"}}`
	}
	cases := []struct {
		name   string
		body   string
		status int
		want   string
	}{
		{"bad JSON", `{"model":"mock-1",`, 400, validation("JSON decode error")},
		{"missing max_tokens", `{"model":"mock-1","messages":[{"role":"user","content":"x"}]}`, 400, validation("max_tokens: Field required")},
		{"missing messages", `{"model":"mock-1","max_tokens":5}`, 400, validation("messages: Field required")},
		{"missing model", `{"max_tokens":5,"messages":[{"role":"user","content":"x"}]}`, 400, validation("model: Field required")},
		{"empty model", `{"model":"","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`, 400, validation("model: Value error, Model is required")},
		{"max_tokens 0", vllmMessagesBody("x", `"max_tokens":0`), 400, validation("max_tokens: Value error, max_tokens must be positive")},
		{"a role it does not know", `{"model":"mock-1","max_tokens":5,"messages":[{"role":"tool","content":"x"}]}`, 400,
			validation("messages.0.role: Input should be 'user', 'assistant' or 'system'")},
		{"a server tool has no input_schema", vllmMessagesBody("x", `"tools":[{"type":"web_search_20250305","name":"web_search"}]`), 400,
			validation("tools.0.input_schema: Field required")},
		{"temperature not a number", vllmMessagesBody("x", `"temperature":"hot"`), 400, validation("temperature: Input should be a valid number")},
		{"unknown model", `{"model":"llama","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`, 404,
			serving("NotFoundError", "The model `llama` does not exist.")},
		{"prompt plus max_tokens past the context", vllmMessagesBody("x", `"max_tokens":1000`), 400,
			serving("BadRequestError", "'max_tokens' or 'max_completion_tokens' is too large: 1000. This model's maximum context length is 1000 tokens and your request has 1 input tokens (1000 > 1000 - 1).")},
		{"negative temperature", vllmMessagesBody("x", `"temperature":-0.5`), 400, serving("BadRequestError", "temperature must be non-negative, got -0.5.")},
		{"top_p 0", vllmMessagesBody("x", `"top_p":0`), 400, serving("BadRequestError", "top_p must be in (0, 1], got 0.0.")},
		{"an empty stop sequence", vllmMessagesBody("x", `"stop_sequences":[""]`), 400, serving("BadRequestError", "stop cannot contain an empty string.")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := h.must("POST", "/v1/messages", tc.body)
			// Compared decoded: the escaping writer spells > as \u003e.
			if resp.StatusCode != tc.status || !reflect.DeepEqual(decode[any](t, b), decode[any](t, []byte(tc.want))) {
				t.Errorf("%d %s\nwant %d %s", resp.StatusCode, b, tc.status, tc.want)
			}
			if resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("content type %q", resp.Header.Get("Content-Type"))
			}
		})
	}
	t.Run("Content-Type is not JSON", func(t *testing.T) {
		resp, b := h.must("POST", "/v1/messages", vllmMessagesBody("x", ""), "Content-Type", "text/plain")
		if want := validation("Unsupported Media Type: Only 'application/json' is allowed"); resp.StatusCode != 400 || string(b) != want {
			t.Errorf("%d %s, want %s", resp.StatusCode, b, want)
		}
	})
	t.Run("wrong method", func(t *testing.T) {
		if resp, b := h.must("GET", "/v1/messages", ""); resp.StatusCode != 405 || string(b) != `{"detail":"Method Not Allowed"}` {
			t.Errorf("%d %s", resp.StatusCode, b)
		}
	})
}

// TestVLLMMessagesAPIKey: vLLM's AuthenticationMiddleware guards every /v1 path, the
// Messages routes among them, and reads Authorization: Bearer alone; an Anthropic
// client's x-api-key is refused (vllm-project/vllm#51572).
func TestVLLMMessagesAPIKey(t *testing.T) {
	h := start(t, Options{APIKey: "sk-vllm"})
	for _, path := range []string{"/v1/messages", "/v1/messages/count_tokens"} {
		for _, tc := range []struct {
			name   string
			hdr    []string
			status int
		}{
			{"bearer", []string{"Authorization", "Bearer sk-vllm"}, 200},
			{"x-api-key alone", []string{"x-api-key", "sk-vllm", "anthropic-version", "2023-06-01"}, 401},
			{"a wrong bearer with the right x-api-key", []string{"Authorization", "Bearer nope", "x-api-key", "sk-vllm"}, 401},
			{"none", nil, 401},
		} {
			t.Run(path+" "+tc.name, func(t *testing.T) {
				resp, b := h.must("POST", path, vllmMessagesBody("hi", ""), tc.hdr...)
				if resp.StatusCode != tc.status {
					t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
				}
				if tc.status == 401 && string(b) != `{"error":"Unauthorized"}` {
					t.Errorf("body %s, want vLLM's middleware's", b)
				}
			})
		}
	}
}

// TestVLLMMessagesFaults: the x-mock-* faults and --error-rate work on the Messages
// routes as on chat, their errors in translate_error_response's shape; a stream cut
// ends without message_stop, x-mock-error-after ends one with vLLM's error event.
func TestVLLMMessagesFaults(t *testing.T) {
	h := start(t, Options{MaxTokens: 32})
	stream := vllmMessagesBody("hi", `"max_tokens":6,"stream":true`)
	t.Run("x-mock-status", func(t *testing.T) {
		for _, path := range []string{"/v1/messages", "/v1/messages/count_tokens"} {
			resp, b := h.must("POST", path, vllmMessagesBody("hi", ""), "x-mock-status", "503", "x-mock-retry-after", "2")
			want := `{"type":"error","error":{"type":"ServiceUnavailableError","message":"mockllm: status 503 requested by x-mock-status"}}`
			if resp.StatusCode != 503 || string(b) != want || resp.Header.Get("retry-after") != "2" {
				t.Errorf("%s: %d %s retry-after %q", path, resp.StatusCode, b, resp.Header.Get("retry-after"))
			}
		}
	})
	t.Run("x-mock-cut-after", func(t *testing.T) {
		resp, b, err := h.do("POST", "/v1/messages", stream, "x-mock-cut-after", "2")
		if resp == nil || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("read error %v, want unexpected EOF", err)
		}
		if n := bytes.Count(b, []byte("event: content_block_delta")); n != 2 || bytes.Contains(b, []byte("message_stop")) {
			t.Errorf("%d deltas before the cut: %s", n, b)
		}
	})
	t.Run("x-mock-error-after", func(t *testing.T) {
		_, b := h.must("POST", "/v1/messages", stream, "x-mock-error-after", "1")
		evs := parseSSE(t, b)
		last := evs[len(evs)-1]
		if last.name != "error" || last.data != `{"type":"error","error":{"type":"internal_error","message":"mockllm: injected error (x-mock-error-after)"}}` ||
			bytes.Count(b, []byte("event: content_block_delta")) != 1 {
			t.Errorf("stream %s", b)
		}
	})
	t.Run("x-mock-garbage", func(t *testing.T) {
		if _, b := h.must("POST", "/v1/messages", vllmMessagesBody("hi", ""), "x-mock-garbage", "1"); json.Valid(b) {
			t.Errorf("body %s is JSON", b)
		}
	})
	if st := h.s.Stats(); st.CutStreams != 1 || st.InjectedErrors != 3 {
		t.Errorf("cut %d injected %d, want 1 and 3", st.CutStreams, st.InjectedErrors)
	}
	t.Run("error rate", func(t *testing.T) {
		h := start(t, Options{ErrorRate: 1})
		resp, b := h.must("POST", "/v1/messages", vllmMessagesBody("hi", ""))
		if want := `{"type":"error","error":{"type":"InternalServerError","message":"mockllm: injected error (error-rate)"}}`; resp.StatusCode != 500 || string(b) != want {
			t.Errorf("%d %s", resp.StatusCode, b)
		}
		if resp, b := h.must("POST", "/v1/messages/count_tokens", vllmMessagesBody("hi", "")); resp.StatusCode != 200 {
			t.Errorf("count_tokens generates nothing, so the error rate spares it: %d %s", resp.StatusCode, b)
		}
	})
}

// TestVLLMMessagesSchedule: a stream's message_start waits TTFT, as vLLM sends it with
// the first token, then TPOT between tokens; a plain answer waits their sum;
// x-mock-delay, x-mock-ttft and x-mock-tpot apply.
func TestVLLMMessagesSchedule(t *testing.T) {
	var log sleepLog
	h := start(t, Options{TTFT: 50 * time.Millisecond, TPOT: 5 * time.Millisecond, Sleep: log.sleep})
	ms := time.Millisecond
	for _, tc := range []struct {
		body string
		hdr  []string
		want []time.Duration
	}{
		{vllmMessagesBody("x", `"max_tokens":4`), nil, []time.Duration{65 * ms}},
		{vllmMessagesBody("x", `"max_tokens":3,"stream":true`), nil, []time.Duration{50 * ms, 5 * ms, 5 * ms}},
		{vllmMessagesBody("x", `"max_tokens":2,"stream":true`), []string{"x-mock-delay", "200", "x-mock-ttft", "1s", "x-mock-tpot", "7"}, []time.Duration{200 * ms, time.Second, 7 * ms}},
	} {
		resp, b := h.must("POST", "/v1/messages", tc.body, tc.hdr...)
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
		if got := log.take(); !slices.Equal(got, tc.want) {
			t.Errorf("%s %v: slept %v, want %v", tc.body, tc.hdr, got, tc.want)
		}
	}
}
