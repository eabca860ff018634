package providers

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	asdk "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/internal/jsonscan"
)

// messages_api chooses how an openai backend serves the Messages API; azure serves it
// through chat only, anthropic and mock only natively. A value that cannot be is a
// config error naming the key.
func TestMessagesBridgeConfig(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		chat bool
		err  string
	}{
		{"openai default", Config{Provider: "openai", BaseURL: "http://h/v1", Model: "m"}, false, ""},
		{"openai native", Config{Provider: "openai", BaseURL: "http://h/v1", Model: "m", MessagesAPI: "native"}, false, ""},
		{"openai chat", Config{Provider: "openai", BaseURL: "http://h/v1", Model: "m", MessagesAPI: "chat"}, true, ""},
		{"azure", Config{Provider: "azure", BaseURL: "http://h", Model: "m", Deployment: "d"}, true, ""},
		{"azure chat", Config{Provider: "azure", BaseURL: "http://h", Model: "m", Deployment: "d", MessagesAPI: "chat"}, true, ""},
		{"anthropic", Config{Provider: "anthropic", BaseURL: "http://h/v1", Model: "m"}, false, ""},
		{"mock", Config{Provider: "mock", Model: "m"}, false, ""},
		{"azure native", Config{Provider: "azure", BaseURL: "http://h", Model: "m", Deployment: "d", MessagesAPI: "native"}, false, "messages_api: must be chat for provider azure"},
		{"anthropic chat", Config{Provider: "anthropic", BaseURL: "http://h/v1", Model: "m", MessagesAPI: "chat"}, false, "messages_api: must be native for provider anthropic"},
		{"mock chat", Config{Provider: "mock", Model: "m", MessagesAPI: "chat"}, false, "messages_api: must be native for provider mock"},
		{"unknown", Config{Provider: "openai", BaseURL: "http://h/v1", Model: "m", MessagesAPI: "bridge"}, false, "messages_api: must be native or chat"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			if c.err != "" {
				var fe *FieldError
				if err == nil || !strings.Contains(err.Error(), c.err) || !errors.As(err, &fe) || fe.Key() != "messages_api" {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b := newTestBackend(t, c.cfg); b.messagesChat != c.chat {
				t.Errorf("messagesChat %v, want %v", b.messagesChat, c.chat)
			}
		})
	}
}

func msgsChat(body string, stream, usage bool) (string, bridgeSpans, *requestError) {
	var opts []byte
	if usage {
		opts = includeUsageJSON
	}
	out, sp, rerr := appendMessagesChat(nil, []byte(body), []byte(`"chat"`), stream, opts)
	return string(out), sp, rerr
}

// Each Messages API request goes up as the chat completions request that asks the
// same, byte for byte.
func TestMessagesBridgeRequest(t *testing.T) {
	cases := []struct {
		name, in, want string
		stream         bool
	}{
		{"string content and system",
			`{"model":"chat","max_tokens":16,"system":"Be brief.","messages":[{"role":"user","content":"Hi"}]}`,
			`{"model":"chat","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}],"max_tokens":16}`, false},
		{"system text blocks joined, one text block a string",
			`{"model":"chat","max_tokens":16,"system":[{"type":"text","text":"A"},{"type":"text","text":"B \"q\"","cache_control":{"type":"ephemeral"}}],` +
				`"messages":[{"role":"user","content":[{"type":"text","text":"Hi"}]}]}`,
			`{"model":"chat","messages":[{"role":"system","content":"A\nB \"q\""},{"role":"user","content":"Hi"}],"max_tokens":16}`, false},
		{"images as parts",
			`{"model":"chat","max_tokens":8,"messages":[{"role":"user","content":[{"type":"text","text":"What?"},` +
				`{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0K"}},` +
				`{"type":"image","source":{"type":"url","url":"https://x.test/a.jpg"}}]}]}`,
			`{"model":"chat","messages":[{"role":"user","content":[{"type":"text","text":"What?"},` +
				`{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0K"}},{"type":"image_url","image_url":{"url":"https://x.test/a.jpg"}}]}],"max_tokens":8}`, false},
		{"tool round trip, thinking dropped",
			`{"model":"chat","max_tokens":64,"messages":[{"role":"user","content":"Weather?"},` +
				`{"role":"assistant","content":[{"type":"thinking","thinking":"hm","signature":"s"},{"type":"text","text":"Checking."},` +
				`{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{ "city" : "Paris" }},{"type":"tool_use","id":"toolu_2","name":"now","input":{}}]},` +
				`{"role":"user","content":[{"type":"text","text":"Thanks"},{"type":"tool_result","tool_use_id":"toolu_1","content":"sunny"},` +
				`{"type":"tool_result","tool_use_id":"toolu_2","content":[{"type":"text","text":"12:00"},{"type":"text","text":"UTC"}],"is_error":false}]}],` +
				`"tools":[{"name":"get_weather","description":"Weather by city","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}},` +
				`{"type":"custom","name":"now","input_schema":{"type":"object"}}],"tool_choice":{"type":"auto","disable_parallel_tool_use":true}}`,
			`{"model":"chat","messages":[{"role":"user","content":"Weather?"},` +
				`{"role":"assistant","content":"Checking.","tool_calls":[{"id":"toolu_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},` +
				`{"id":"toolu_2","type":"function","function":{"name":"now","arguments":"{}"}}]},` +
				`{"role":"tool","tool_call_id":"toolu_1","content":"sunny"},{"role":"tool","tool_call_id":"toolu_2","content":"12:00\nUTC"},` +
				`{"role":"user","content":"Thanks"}],` +
				`"tools":[{"type":"function","function":{"name":"get_weather","description":"Weather by city","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}},` +
				`{"type":"function","function":{"name":"now","parameters":{"type":"object"}}}],"tool_choice":"auto","parallel_tool_calls":false,"max_tokens":64}`, false},
		{"tool calls alone: content null",
			`{"model":"chat","max_tokens":8,"messages":[{"role":"user","content":"x"},{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":{"a":"\u00e9"}}]}]}`,
			`{"model":"chat","messages":[{"role":"user","content":"x"},{"role":"assistant","content":null,"tool_calls":[{"id":"t","type":"function","function":{"name":"f","arguments":"{\"a\":\"\\u00e9\"}"}}]}],"max_tokens":8}`, false},
		{"tool results alone, no user message",
			`{"model":"chat","max_tokens":8,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t"}]}]}`,
			`{"model":"chat","messages":[{"role":"tool","tool_call_id":"t","content":""}],"max_tokens":8}`, false},
		{"tool_choice any, tool, none",
			`{"model":"chat","max_tokens":8,"messages":[{"role":"user","content":"x"}],"tools":[{"name":"f","input_schema":{"type":"object"}}],"tool_choice":{"type":"tool","name":"f"}}`,
			`{"model":"chat","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],` +
				`"tool_choice":{"type":"function","function":{"name":"f"}},"max_tokens":8}`, false},
		{"tool_choice any",
			`{"model":"chat","max_tokens":8,"messages":[{"role":"user","content":"x"}],"tools":[{"name":"f"}],"tool_choice":{"type":"any"}}`,
			`{"model":"chat","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{}}}}],` +
				`"tool_choice":"required","max_tokens":8}`, false},
		{"sampling, stop, user, thinking and service_tier left out",
			`{"model":"chat","max_tokens":8,"messages":[{"role":"user","content":"x"}],"stop_sequences":["END"],"temperature":0.2,"top_p":0.9,"top_k":40,` +
				`"metadata":{"user_id":"u-1"},"thinking":{"type":"enabled","budget_tokens":1024},"service_tier":"auto","stream":false}`,
			`{"model":"chat","messages":[{"role":"user","content":"x"}],"max_tokens":8,"stop":["END"],"temperature":0.2,"top_p":0.9,"top_k":40,"user":"u-1"}`, false},
		{"stream asks for usage",
			`{"model":"chat","max_tokens":8,"stream":true,"messages":[{"role":"user","content":"x"}]}`,
			`{"model":"chat","messages":[{"role":"user","content":"x"}],"max_tokens":8,"stream":true,"stream_options":{"include_usage":true}}`, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, sp, rerr := msgsChat(c.in, c.stream, true)
			if rerr != nil {
				t.Fatalf("refused: %s: %s", rerr.param, rerr.msg)
			}
			if got != c.want {
				t.Fatalf("got  %s\nwant %s", got, c.want)
			}
			if m := got[sp.model[0]:sp.model[1]]; m != `"chat"` {
				t.Errorf("model span %q", m)
			}
			if c.stream && got[sp.streamOptions[0]:sp.streamOptions[1]] != `{"include_usage":true}` {
				t.Errorf("stream_options span %v", sp.streamOptions)
			}
			if !c.stream && sp.streamOptions != [2]int{-1, -1} {
				t.Errorf("stream_options span %v without a stream", sp.streamOptions)
			}
		})
	}
}

// What chat cannot express is refused, naming the member.
func TestMessagesBridgeRefusals(t *testing.T) {
	cases := []struct{ name, in, param, msg string }{
		{"not JSON", `{"messages":`, "", "parse"},
		{"no messages", `{"max_tokens":8}`, "messages", "messages must be"},
		{"empty messages", `{"max_tokens":8,"messages":[]}`, "messages", "at least one"},
		{"document", `{"messages":[{"role":"user","content":[{"type":"text","text":"x"},{"type":"document","source":{"type":"text","data":"d"}}]}]}`, "messages[0].content[1]", "document"},
		{"unknown block", `{"messages":[{"role":"user","content":[{"type":"search_result"}]}]}`, "messages[0].content[0].type", "not supported"},
		{"server tool", `{"messages":[{"role":"user","content":"x"}],"tools":[{"name":"f"},{"type":"web_search_20250305","name":"web_search"}]}`, "tools[1]", "server tools"},
		{"bash tool", `{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"bash_20250124","name":"bash"}]}`, "tools[0]", "server tools"},
		{"mcp servers", `{"messages":[{"role":"user","content":"x"}],"mcp_servers":[{"type":"url","url":"https://m"}]}`, "mcp_servers", "not supported"},
		{"bad role", `{"messages":[{"role":"tool","content":"x"}]}`, "messages[0].role", "user, assistant or system"},
		{"system messages alone", `{"messages":[{"role":"system","content":"x"}]}`, "messages", "at least one"},
		{"image in a system message", `{"messages":[{"role":"user","content":"x"},{"role":"system","content":[{"type":"image","source":{"type":"url","url":"https://x/a.png"}}]}]}`, "messages[1].content[0]", "text blocks only"},
		{"system message content not a list", `{"messages":[{"role":"user","content":"x"},{"role":"system","content":{"type":"text"}}]}`, "messages[1].content", "string or a list"},
		{"tool_reference without a name", `{"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"tool_reference"}]}]}]}`, "messages[0].content[0].content[0].tool_name", "tool_name"},
		{"image in a tool result without a source", `{"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"image"}]}]}]}`, "messages[0].content[0].content[0].source", "source object"},
		{"image in a tool result, bad source", `{"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"image","source":{"type":"file"}}]}]}]}`, "messages[0].content[0].content[0].source.type", "base64 or url"},
		{"document in a tool result", `{"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"document","source":{}}]}]}]}`, "messages[0].content[0].content[0]", "text, image and tool_reference blocks"},
		{"file image source", `{"messages":[{"role":"user","content":[{"type":"image","source":{"type":"file","file_id":"f"}}]}]}`, "messages[0].content[0].source.type", "base64 or url"},
		{"tool_use in a user turn", `{"messages":[{"role":"user","content":[{"type":"tool_use","id":"a","name":"b","input":{}}]}]}`, "messages[0].content[0]", "assistant"},
		{"tool_choice type", `{"messages":[{"role":"user","content":"x"}],"tool_choice":{"type":"some"}}`, "tool_choice", "auto, any"},
		{"tool_choice without name", `{"messages":[{"role":"user","content":"x"}],"tool_choice":{"type":"tool"}}`, "tool_choice.name", "required"},
		{"system image", `{"system":[{"type":"image"}],"messages":[{"role":"user","content":"x"}]}`, "system[0]", "text blocks"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, rerr := msgsChat(c.in, false, true)
			if rerr == nil {
				t.Fatal("not refused")
			}
			if rerr.param != c.param || !strings.Contains(rerr.msg, c.msg) {
				t.Errorf("refused %q: %q; want %q, %q", rerr.param, rerr.msg, c.param, c.msg)
			}
		})
	}
}

var msgIDs = regexp.MustCompile(`"(msg|toolu)_[0-9a-f]{48}"`)

// A chat completion comes back as the Messages API's message, byte for byte but for
// its id; the SDK reads it.
func TestMessagesBridgeAnswer(t *testing.T) {
	cases := []struct {
		name, chat, want string
		u                Usage
	}{
		{"text",
			chatAnswerJSON,
			`{"id":"ID","type":"message","role":"assistant","model":"backend-model","content":[{"type":"text","text":"Hi there."}],` +
				`"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":9,"cache_read_input_tokens":0,"output_tokens":3}}`,
			Usage{Input: 9, Output: 3}},
		{"tool calls, cached input",
			`{"id":"c","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[` +
				`{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"Paris\"}"}},` +
				`{"type":"function","function":{"name":"now","arguments":"not json"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":20,"completion_tokens":5}}`,
			`{"id":"ID","type":"message","role":"assistant","model":"backend-model","content":[` +
				`{"type":"tool_use","id":"call_1","name":"get_weather","input":{"city": "Paris"}},{"type":"tool_use","id":"ID","name":"now","input":{}}],` +
				`"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":12,"cache_read_input_tokens":8,"output_tokens":5}}`,
			Usage{Input: 20, CachedInput: 8, Output: 5}},
		{"length",
			`{"choices":[{"index":0,"message":{"role":"assistant","content":"Hel"},"finish_reason":"length"}]}`,
			`{"id":"ID","type":"message","role":"assistant","model":"backend-model","content":[{"type":"text","text":"Hel"}],` +
				`"stop_reason":"max_tokens","stop_sequence":null,"usage":{"input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0}}`,
			Usage{}},
		{"stop string matched (vLLM's stop_reason)",
			`{"choices":[{"index":0,"message":{"role":"assistant","content":"Hel"},"finish_reason":"stop","stop_reason":"lo\n"}]}`,
			`{"id":"ID","type":"message","role":"assistant","model":"backend-model","content":[{"type":"text","text":"Hel"}],` +
				`"stop_reason":"stop_sequence","stop_sequence":"lo\n","usage":{"input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0}}`,
			Usage{}},
		{"stop token (a number) is no stop sequence",
			`{"choices":[{"index":0,"message":{"role":"assistant","content":"Hel"},"finish_reason":"stop","stop_reason":128009}]}`,
			`{"id":"ID","type":"message","role":"assistant","model":"backend-model","content":[{"type":"text","text":"Hel"}],` +
				`"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0}}`,
			Usage{}},
		{"content filter, empty",
			`{"choices":[{"index":0,"message":{"role":"assistant","content":""},"finish_reason":"content_filter"}]}`,
			`{"id":"ID","type":"message","role":"assistant","model":"backend-model","content":[],` +
				`"stop_reason":"refusal","stop_sequence":null,"usage":{"input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0}}`,
			Usage{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := appendMessagesAnswer(nil, []byte(c.chat), []byte(`"backend-model"`), &c.u)
			if !ok {
				t.Fatal("not read")
			}
			if s := msgIDs.ReplaceAllString(string(got), `"ID"`); s != c.want {
				t.Fatalf("got  %s\nwant %s", s, c.want)
			}
			var m asdk.Message
			if err := json.Unmarshal(got, &m); err != nil || m.Role != "assistant" || !strings.HasPrefix(m.ID, "msg_") {
				t.Fatalf("SDK reads %+v: %v", m, err)
			}
		})
	}
	if _, ok := appendMessagesAnswer(nil, []byte(`{"error":{"message":"boom"}}`), []byte(`"m"`), &Usage{}); ok {
		t.Error("an error object read as an answer")
	}
}

// msgStreamOf is the bridge's stream over a chat stream of data.
func msgStreamOf(data ...string) *msgStream {
	s := msgStreamPool.Get().(*msgStream)
	s.in = newChunkEvents(data...)
	s.chat = bodyPool.Get().(*[]byte)
	s.model = append(s.model[:0], `"backend-model"`...)
	return s
}

// accumulateMsg checks a Messages API stream as the SDK reads it: every event's name is
// its type, it begins with message_start and its last event is message_stop (or an
// error), the end alone after it; the message accumulated is returned with the
// events' names.
func accumulateMsg(t *testing.T, evs []Event) (asdk.Message, string) {
	t.Helper()
	var m asdk.Message
	var names []string
	ended, done := false, false
	for _, ev := range evs {
		switch {
		case ev.KeepAlive:
			continue
		case done:
			t.Fatalf("event after the end: %s", ev.Data)
		case ev.Done:
			if !ended || len(ev.Data) != 0 {
				t.Fatal("end before message_stop, or with data")
			}
			done = true
			continue
		case ended:
			t.Fatalf("event after message_stop: %s", ev.Data)
		}
		if typ, _ := jsonscan.Field(ev.Data, "type"); string(typ) != `"`+string(ev.Name)+`"` {
			t.Fatalf("event named %s holds %s", ev.Name, ev.Data)
		}
		names = append(names, string(ev.Name))
		if string(ev.Name) == "error" {
			ended = true
			continue
		}
		var u asdk.MessageStreamEventUnion
		if err := json.Unmarshal(ev.Data, &u); err != nil {
			t.Fatalf("SDK cannot read %s: %v", ev.Data, err)
		}
		if err := m.Accumulate(u); err != nil {
			t.Fatalf("SDK cannot accumulate %s: %v", ev.Data, err)
		}
		ended = u.Type == "message_stop"
	}
	if !done {
		t.Fatal("no end")
	}
	return m, strings.Join(names, " ")
}

func callDelta(i int, id, name, args string) string {
	fn := `{"arguments":` + strconvQuote(args)
	if name != "" {
		fn += `,"name":"` + name + `"`
	}
	head := `{"index":` + string(rune('0'+i))
	if id != "" {
		head += `,"id":"` + id + `","type":"function"`
	}
	return delta(`{"tool_calls":[`+head+`,"function":`+fn+`}}]}`, "")
}

func strconvQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// A chat stream comes back as the Messages API's events: a block per text and per
// tool call, the usage chunk's usage on message_delta (the whole of it on the
// event), message_stop, the end.
func TestMessagesBridgeStream(t *testing.T) {
	t.Run("text", func(t *testing.T) {
		s := msgStreamOf(`{"choices":[],"prompt_filter_results":[]}`, delta(`{"role":"assistant","content":""}`, ""), "!ping",
			delta(`{"content":"Hel"}`, ""), delta(`{"content":"lo \"you\""}`, ""), delta(`{}`, "stop"), usageChunk, "[DONE]")
		got := readBridged(s)
		_ = s.Close()
		if got.err != nil {
			t.Fatal(got.err)
		}
		m, names := accumulateMsg(t, got.events)
		if names != "message_start content_block_start content_block_delta content_block_delta content_block_stop message_delta message_stop" {
			t.Fatalf("events %s", names)
		}
		if len(m.Content) != 1 || m.Content[0].Text != `Hello "you"` || m.StopReason != "end_turn" || m.Model != "backend-model" {
			t.Errorf("message %+v", m)
		}
		if m.Usage.InputTokens != 5 || m.Usage.CacheReadInputTokens != 2 || m.Usage.OutputTokens != 4 {
			t.Errorf("usage %+v", m.Usage)
		}
		var last Event
		for _, ev := range got.events {
			if string(ev.Name) == "message_delta" {
				last = ev
			}
		}
		if !last.HasUsage || last.Usage.Input != 7 || last.Usage.CachedInput != 2 || last.Usage.Output != 4 {
			t.Errorf("message_delta carries %+v (%v)", last.Usage, last.HasUsage)
		}
		want := `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"lo \"you\""}}`
		if string(got.events[4].Data) != want || !got.events[4].Content {
			t.Errorf("event %s, want %s", got.events[4].Data, want)
		}
	})
	t.Run("text then tool calls", func(t *testing.T) {
		s := msgStreamOf(delta(`{"content":"Let me check."}`, ""),
			callDelta(0, "call_a", "get_weather", ""), callDelta(0, "", "", `{"city":`), callDelta(0, "", "", `"Paris"}`),
			callDelta(1, "call_b", "now", "{}"), delta(`{}`, "tool_calls"), usageChunk, "[DONE]")
		got := readBridged(s)
		_ = s.Close()
		if got.err != nil {
			t.Fatal(got.err)
		}
		m, names := accumulateMsg(t, got.events)
		if names != "message_start content_block_start content_block_delta content_block_stop "+
			"content_block_start content_block_delta content_block_delta content_block_stop "+
			"content_block_start content_block_delta content_block_stop message_delta message_stop" {
			t.Fatalf("events %s", names)
		}
		if len(m.Content) != 3 || m.Content[1].Type != "tool_use" || m.Content[1].ID != "call_a" || m.Content[1].Name != "get_weather" ||
			string(m.Content[1].Input) != `{"city":"Paris"}` || m.Content[2].Name != "now" || m.StopReason != "tool_use" {
			t.Errorf("message %+v", m)
		}
		want := `{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"call_a","name":"get_weather","input":{}}}`
		if string(got.events[4].Data) != want {
			t.Errorf("event %s, want %s", got.events[4].Data, want)
		}
	})
	t.Run("no usage, ended by DONE", func(t *testing.T) {
		s := msgStreamOf(delta(`{"content":"Hi"}`, "length"), "[DONE]")
		got := readBridged(s)
		_ = s.Close()
		m, _ := accumulateMsg(t, got.events)
		if m.StopReason != "max_tokens" {
			t.Errorf("stop reason %s", m.StopReason)
		}
		for _, ev := range got.events {
			if ev.HasUsage {
				t.Errorf("usage without a usage chunk: %s", ev.Data)
			}
		}
	})
	t.Run("error mid-stream", func(t *testing.T) {
		in := newChunkEvents(delta(`{"content":"Hi"}`, ""))
		s := msgStreamOf()
		s.in = &errorAfter{Events: in, data: `{"error":{"message":"engine died","type":"internal_error"}}`}
		got := readBridged(s)
		_ = s.Close()
		_, names := accumulateMsg(t, got.events)
		if names != "message_start content_block_start content_block_delta error" {
			t.Fatalf("events %s", names)
		}
		ev := got.events[3]
		if want := `{"type":"error","error":{"type":"api_error","message":"engine died"}}`; string(ev.Data) != want || !ev.Error {
			t.Errorf("error event %s (%v), want %s", ev.Data, ev.Error, want)
		}
	})
	t.Run("error then a silent upstream", func(t *testing.T) {
		// An upstream that stops sending after its error object: the client's stream
		// ends at the error event, not when the upstream's connection times out.
		in := &silentAfterError{data: `{"error":{"message":"engine died"}}`, closed: make(chan struct{})}
		s := msgStreamOf()
		s.in = in
		done := make(chan streamed, 1)
		go func() { done <- readBridged(s) }()
		var got streamed
		select {
		case got = <-done:
		case <-time.After(10 * time.Second):
			_ = s.Close()
			t.Fatal("the stream did not end at the error event")
		}
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if _, names := accumulateMsg(t, got.events); names != "error" {
			t.Errorf("events %s", names)
		}
		select {
		case <-in.closed:
		default:
			t.Error("the inner stream was not closed")
		}
	})
	t.Run("tool call resumed", func(t *testing.T) {
		s := msgStreamOf(callDelta(0, "a", "f", "{"), delta(`{"content":"x"}`, ""), callDelta(0, "", "", "}"))
		got := readBridged(s)
		_ = s.Close()
		if !errors.Is(got.err, ErrBadResponse) {
			t.Errorf("error %v", got.err)
		}
	})
}

// errorAfter is a chat stream that sends an error object after its chunks.
type errorAfter struct {
	Events
	data string
	sent bool
}

func (e *errorAfter) Next(ev *Event) error {
	err := e.Events.Next(ev)
	if err != nil && !e.sent {
		e.sent = true
		*ev = Event{Data: []byte(e.data), Error: true}
		return nil
	}
	return err
}

// silentAfterError is a chat stream whose first event is an error object, after which
// Next waits until the stream is closed.
type silentAfterError struct {
	data   string
	sent   bool
	closed chan struct{}
}

func (e *silentAfterError) Next(ev *Event) error {
	if !e.sent {
		e.sent = true
		*ev = Event{Data: []byte(e.data), Error: true}
		return nil
	}
	<-e.closed
	return io.ErrUnexpectedEOF
}

func (e *silentAfterError) Close() error {
	close(e.closed)
	return nil
}

// messagesCall is the Call the gateway makes of a Messages API body.
func messagesCall(kind Kind, body string) *Call {
	c := responsesCall([]byte(body), clientHeader())
	c.Kind = kind
	c.Header.Set("X-Request-Id", "req-7")
	return c
}

// Through Send, an Azure deployment serves the Messages API through its chat
// completions URL: the answer a message, the usage chat's; an upstream error comes in
// the Messages API's shape; a token count and a request chat cannot express are
// refused before any upstream is asked; a stream comes back as events.
func TestMessagesBridgeSend(t *testing.T) {
	status := 200
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetStatusCode(status)
		switch {
		case status != 200:
			ctx.SetBodyString(`{"error":{"message":"Invalid value for 'top_k'.","type":"invalid_request_error","param":"top_k","code":null}}`)
		case strings.Contains(string(ctx.PostBody()), `"stream":true`):
			ctx.SetContentType("text/event-stream")
			ctx.SetBodyString("data: " + delta(`{"content":"Hi"}`, "stop") + "\n\ndata: " + usageChunk + "\n\ndata: [DONE]\n\n")
		default:
			ctx.SetBodyString(chatAnswerJSON)
		}
	})
	b := newTestBackend(t, Config{Provider: "azure", BaseURL: up.URL, Deployment: "gpt4o", Model: "gpt-4o", APIKey: "az-key", DropParams: []string{"top_k"}})
	body := `{"model":"chat","max_tokens":9,"top_k":3,"messages":[{"role":"user","content":"Hi"}]}`
	call := messagesCall(Messages, body)
	var out fasthttp.Response
	var res Result
	if err := b.Send(call, &out, &res); err != nil {
		t.Fatalf("%v: %s", err, out.Body())
	}
	uri, h, sent, _ := up.last()
	if !strings.HasPrefix(uri, "/openai/deployments/gpt4o/chat/completions?api-version=") || h["api-key"] != "az-key" {
		t.Errorf("sent to %s with %v", uri, h)
	}
	if string(sent) != `{"model":"gpt-4o","messages":[{"role":"user","content":"Hi"}],"max_tokens":9}` {
		t.Errorf("sent %s", sent)
	}
	var m asdk.Message
	if err := json.Unmarshal(out.Body(), &m); err != nil || m.Content[0].Text != "Hi there." || m.Model != "gpt-4o" || m.Usage.InputTokens != 9 {
		t.Fatalf("%v: %s", err, out.Body())
	}
	if res.Usage.Input != 9 || res.Usage.Output != 3 || call.Kind != Messages || string(call.Body) != body {
		t.Errorf("usage %+v; call %v %s", res.Usage, call.Kind, call.Body)
	}

	t.Run("stream", func(t *testing.T) {
		call := messagesCall(Messages, `{"model":"chat","max_tokens":9,"stream":true,"messages":[{"role":"user","content":"Hi"}]}`)
		call.Deadline = time.Now().Add(5 * time.Second)
		var out fasthttp.Response
		var res Result
		if err := b.Send(call, &out, &res); err != nil {
			t.Fatal(err)
		}
		got := readBridged(res.Stream)
		_ = res.Stream.Close()
		m, _ := accumulateMsg(t, got.events)
		if m.Content[0].Text != "Hi" || m.Usage.OutputTokens != 4 {
			t.Errorf("message %+v", m)
		}
		if _, _, sent, _ := up.last(); !strings.Contains(string(sent), `"stream_options":{"include_usage":true}`) {
			t.Errorf("sent %s", sent)
		}
	})
	t.Run("upstream error", func(t *testing.T) {
		status = 400
		defer func() { status = 200 }()
		var out fasthttp.Response
		var res Result
		err := b.Send(messagesCall(Messages, body), &out, &res)
		if _, ok := errors.AsType[*UpstreamError](err); !ok {
			t.Fatalf("error %v", err)
		}
		// The upstream's own body: the gateway shapes it as it answers, once its
		// context fallbacks have read it.
		if !strings.Contains(string(out.Body()), `"param":"top_k"`) {
			t.Errorf("body %s, want the upstream's", out.Body())
		}
		AnthropicErrorShape(&out, nil)
		if want := `{"type":"error","error":{"type":"invalid_request_error","message":"Invalid value for 'top_k'."}}`; string(out.Body()) != want {
			t.Errorf("shaped body %s, want %s", out.Body(), want)
		}
	})
	t.Run("refused", func(t *testing.T) {
		_, _, _, before := up.last()
		var out fasthttp.Response
		var res Result
		err := b.Send(messagesCall(Messages, `{"model":"chat","max_tokens":9,"messages":[{"role":"user","content":[{"type":"document","source":{}}]}]}`), &out, &res)
		if _, ok := errors.AsType[*RequestError](err); !ok || out.StatusCode() != 400 {
			t.Fatalf("error %v, status %d", err, out.StatusCode())
		}
		want := `{"type":"error","error":{"type":"invalid_request_error","message":"messages[0].content[0]: document blocks are not supported: ` +
			`this model is served through a chat completions API, which cannot express it."},"request_id":"req-7"}`
		if string(out.Body()) != want {
			t.Errorf("body %s\nwant %s", out.Body(), want)
		}
		if _, _, _, after := up.last(); after != before {
			t.Error("the upstream was asked")
		}
	})
	t.Run("count_tokens", func(t *testing.T) {
		var out fasthttp.Response
		var res Result
		err := b.Send(messagesCall(CountTokens, `{"model":"chat","messages":[{"role":"user","content":"Hi"}]}`), &out, &res)
		var ue *UnsupportedError
		if !errors.As(err, &ue) || !strings.Contains(ue.Error(), "no token count") {
			t.Errorf("error %v", err)
		}
	})
}

// An openai backend with messages_api chat sends a Messages call to its chat
// completions; one without sends it to its /messages as it came.
func TestMessagesBridgeOpenAI(t *testing.T) {
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		if strings.HasSuffix(string(ctx.Path()), "/messages") {
			ctx.SetBodyString(`{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[],"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":1}}`)
			return
		}
		ctx.SetBodyString(chatAnswerJSON)
	})
	body := `{"model":"chat","max_tokens":9,"messages":[{"role":"user","content":"Hi"}]}`
	for _, c := range []struct{ api, path string }{{"chat", "/v1/chat/completions"}, {"", "/v1/messages"}} {
		b := newTestBackend(t, Config{Provider: "openai", BaseURL: up.URL + "/v1", Model: "m", MessagesAPI: c.api})
		var out fasthttp.Response
		var res Result
		if err := b.Send(messagesCall(Messages, body), &out, &res); err != nil {
			t.Fatal(err)
		}
		if uri, _, _, _ := up.last(); uri != c.path {
			t.Errorf("messages_api %q: sent to %s", c.api, uri)
		}
		if !strings.HasPrefix(string(out.Body()), `{"id":"msg_`) {
			t.Errorf("answer %s", out.Body())
		}
	}
}

// FuzzMessagesBridgeRequest feeds the Messages request translation any body: it never
// panics, and a body it accepts becomes one JSON object whose messages are chat's,
// with the spans pointing where the call's say.
func FuzzMessagesBridgeRequest(f *testing.F) {
	f.Add(benchMsgsBody, true)
	f.Add(`{"model":"chat","max_tokens":8,"system":[{"type":"text","text":"a\u0041"}],"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AA=="}}]}]}`, false)
	f.Add(`{"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"r"}]},{"type":"text","text":"x"}]}],"tool_choice":{"type":"none"}}`, true)
	f.Add(`{"m\u0065ssages" : [ { "role" : "assistant" , "content" : [ { "type" : "tool_use" , "id" : "i" , "name" : "n" , "input" : { "a" : [ 1 , 2 ] } } ] } ] }`, false)
	f.Add(`{"messages":[{"role":"system","content":"a"},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"tool_reference","tool_name":"W"}]}]},`+
		`{"role":"system","content":[{"type":"text","text":"b"}]},{"role":"assistant","content":"c"},{"role":"system","content":""},{"role":"system","content":"d"}]}`, true)
	f.Add(`{"messages":[{"role":"user","content":[{"type":"text","text":""},{"type":"image","source":{"type":"url","url":"u"}}]},{"role":"system","content":"s"}]}`, false)
	f.Fuzz(func(t *testing.T, body string, stream bool) {
		out, sp, rerr := appendMessagesChat(nil, []byte(body), []byte(`"m"`), stream, continuousUsageJSON)
		tok, tsp, terr := appendMessagesTokenize(nil, []byte(body), []byte(`"m"`))
		if (rerr == nil) != (terr == nil) || rerr != nil && *rerr != *terr {
			t.Fatalf("chat refused %+v, a count %+v, of %s", rerr, terr, body)
		}
		if rerr != nil {
			return
		}
		// A count is the chat body up to its tools, then add_generation_prompt.
		prompt, ok := bytes.CutSuffix(tok, strGenerationPrompt)
		if !ok || !json.Valid(tok) || !bytes.HasPrefix(out, prompt) || string(tok[tsp.model[0]:tsp.model[1]]) != `"m"` {
			t.Fatalf("tokenize body %s\nfor the chat body %s", tok, out)
		}
		var chat struct {
			Messages []struct {
				Role string `json:"role"`
			} `json:"messages"`
		}
		if !json.Valid(out) || out[0] != '{' || json.Unmarshal(out, &chat) != nil || len(chat.Messages) == 0 {
			t.Fatalf("invalid chat body %s\nfrom %s", out, body)
		}
		for _, m := range chat.Messages {
			switch m.Role {
			case "system", "user", "assistant", "tool":
			default:
				t.Fatalf("role %q in %s", m.Role, out)
			}
		}
		if string(out[sp.model[0]:sp.model[1]]) != `"m"` {
			t.Fatalf("model span %v in %s", sp.model, out)
		}
		if stream && string(out[sp.streamOptions[0]:sp.streamOptions[1]]) != `{"include_usage":true,"continuous_usage_stats":true}` {
			t.Fatalf("stream_options span %v in %s", sp.streamOptions, out)
		}
	})
}

// FuzzMessagesBridgeStream feeds the stream translation chat chunks (one a line):
// every event out is one JSON object named by its type, and none follows the end.
func FuzzMessagesBridgeStream(f *testing.F) {
	f.Add(strings.Join([]string{delta(`{"content":"Hi"}`, ""), callDelta(0, "a", "f", `{"x":1}`), delta(`{}`, "tool_calls"), usageChunk, "[DONE]"}, "\n"))
	f.Add(strings.Join([]string{callDelta(1, "a", "f", `{`), callDelta(0, "b", "g", `}`), "!ping", "[DONE]"}, "\n"))
	f.Add(strings.Join([]string{msgNameless(0, "a", `{`), callDelta(1, "b", "", `{`), msgNameOf(1, "g"), msgPiece(0, `}`), msgNameOf(0, "f"), "[DONE]"}, "\n"))
	f.Fuzz(func(t *testing.T, in string) {
		s := msgStreamOf(strings.Split(in, "\n")...)
		defer s.Close()
		// The stream's grammar as the SDKs read it: message_start first, content
		// blocks one at a time numbered from 0, each delta and stop naming the block
		// open, message_delta and message_stop with none open, nothing after
		// message_stop or an error but the end.
		done, started, ended := false, false, false
		open, next := int64(-1), int64(0)
		for range 10000 {
			var ev Event
			if err := s.Next(&ev); err != nil {
				return
			}
			if done {
				t.Fatalf("event after the end: %s", ev.Data)
			}
			if ev.Done {
				done = true
				continue
			}
			if ev.KeepAlive {
				continue
			}
			typ, _ := jsonscan.Field(ev.Data, "type")
			if !json.Valid(ev.Data) || string(typ) != `"`+string(ev.Name)+`"` {
				t.Fatalf("event %s: %s", ev.Name, ev.Data)
			}
			if ended {
				t.Fatalf("event after message_stop or an error: %s", ev.Data)
			}
			idx := int64(-2)
			if v, ok := jsonscan.Field(ev.Data, "index"); ok {
				idx, _ = jsonscan.Int(v)
			}
			switch name := string(ev.Name); {
			case name == "error":
				ended = true
			case name == "message_start":
				if started {
					t.Fatalf("a second message_start: %s", ev.Data)
				}
				started = true
			case !started:
				t.Fatalf("%s before message_start", ev.Data)
			case name == "content_block_start":
				if open != -1 || idx != next {
					t.Fatalf("block %d started with %d open, %d next: %s", idx, open, next, ev.Data)
				}
				open, next = idx, next+1
			case name == "content_block_delta", name == "content_block_stop":
				if idx != open || open < 0 {
					t.Fatalf("%s for block %d, %d open", ev.Data, idx, open)
				}
				if name == "content_block_stop" {
					open = -1
				}
			case name == "message_delta", name == "message_stop":
				if open != -1 {
					t.Fatalf("%s with block %d open", ev.Data, open)
				}
				ended = name == "message_stop"
			}
		}
	})
}

const benchMsgsBody = `{"model":"chat","max_tokens":1024,"stream":true,"system":[{"type":"text","text":"You are a careful assistant. Answer briefly."}],` +
	`"messages":[{"role":"user","content":"What is the weather in Paris?"},` +
	`{"role":"assistant","content":[{"type":"text","text":"Let me check."},{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris","unit":"c"}}]},` +
	`{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"18C, sunny"},{"type":"text","text":"And tomorrow?"}]}],` +
	`"tools":[{"name":"get_weather","description":"Weather by city","input_schema":{"type":"object","properties":{"city":{"type":"string"},"unit":{"type":"string"}},"required":["city"]}}],` +
	`"tool_choice":{"type":"auto"},"temperature":0.3,"metadata":{"user_id":"u-42"}}`

const benchMsgsAnswer = `{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant",` +
	`"content":"Tomorrow looks cloudy.","tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\",\"day\":\"tomorrow\"}"}}]},` +
	`"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":412,"completion_tokens":38,"total_tokens":450}}`

// benchMsgsDeltas is a chat stream of 16 text deltas, one tool call in 8 pieces and
// the usage chunk.
func benchMsgsDeltas() *chunkEvents {
	var data []string
	for range 16 {
		data = append(data, delta(`{"content":"word "}`, ""))
	}
	data = append(data, callDelta(0, "call_1", "get_weather", ""))
	for range 8 {
		data = append(data, callDelta(0, "", "", `{"a":1}`))
	}
	return newChunkEvents(append(data, delta(`{}`, "tool_calls"), usageChunk, "[DONE]")...)
}

// runMsgStream reads a bridged stream of in to its end, in rewound, and returns how
// many events it gave; continuous is whether the stream asked for usage on every
// chunk.
func runMsgStream(tb testing.TB, in *chunkEvents, continuous bool) int {
	in.i = 0
	s := msgStreamPool.Get().(*msgStream)
	s.in, s.continuous = in, continuous
	s.model = append(s.model[:0], `"gpt-4o"`...)
	n := 0
	var ev Event
	for {
		if err := s.Next(&ev); err != nil {
			break
		}
		n++
	}
	_ = s.Close()
	if n < 30 {
		tb.Fatalf("%d events", n)
	}
	return n
}

func BenchmarkMessagesBridgeRequest(b *testing.B) {
	b.ReportAllocs()
	model := quoteModel("chat")
	buf := make([]byte, 0, 4096)
	body := []byte(benchMsgsBody)
	for b.Loop() {
		buf, _, _ = appendMessagesChat(buf[:0], body, model, true, continuousUsageJSON)
	}
}

func BenchmarkMessagesBridgeAnswer(b *testing.B) {
	b.ReportAllocs()
	model := quoteModel("gpt-4o")
	buf := make([]byte, 0, 4096)
	chat := []byte(benchMsgsAnswer)
	u := Usage{Input: 412, Output: 38}
	for b.Loop() {
		buf, _ = appendMessagesAnswer(buf[:0], chat, model, &u)
	}
}

func BenchmarkMessagesBridgeStream(b *testing.B) {
	b.ReportAllocs()
	in := benchMsgsDeltas()
	for b.Loop() {
		runMsgStream(b, in, false)
	}
}
