package providers

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

const (
	wsUser       = `{"role":"user","content":"What happened in Zürich today?"}`
	wsWeatherFn  = `{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}`
	wsSearchTool = `{"type":"web_search_20250305","name":"web_search"}`
)

// wsBody is a chat request with extra top-level members.
func wsBody(extra string) string {
	return `{"model":"chat","messages":[` + wsUser + `]` + extra + `}`
}

// sameJSON reports whether a and b are the same JSON value.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}

// TestAnthropicWebSearchRequest: web_search_options goes as Anthropic's web search
// server tool, LiteLLM's mapping: search_context_size low, medium and high as max_uses
// 1, 5 and 10 (none without it), user_location's approximate members, those given,
// flat in the tool's user_location. It goes after the client's function tools, whose
// tool_choice rules stand, and with the tools declared for a history's tool calls.
func TestAnthropicWebSearchRequest(t *testing.T) {
	const none = "-"
	history := `{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Zürich\"}"}}]},` +
		`{"role":"tool","tool_call_id":"call_1","content":"4C"},{"role":"user","content":"Sum it up, with today's news."}`
	cases := []struct {
		name, body    string
		tools, choice string
	}{
		{"absent", wsBody(""), none, none},
		{"null", wsBody(`,"web_search_options":null`), none, none},
		{"empty: the tool with the API's defaults", wsBody(`,"web_search_options":{}`), `[` + wsSearchTool + `]`, none},
		{"low", wsBody(`,"web_search_options":{"search_context_size":"low"}`), `[{"type":"web_search_20250305","name":"web_search","max_uses":1}]`, none},
		{"medium", wsBody(`,"web_search_options":{"search_context_size":"medium"}`), `[{"type":"web_search_20250305","name":"web_search","max_uses":5}]`, none},
		{"high", wsBody(`,"web_search_options":{"search_context_size":"high"}`), `[{"type":"web_search_20250305","name":"web_search","max_uses":10}]`, none},
		{"size null", wsBody(`,"web_search_options":{"search_context_size":null}`), `[` + wsSearchTool + `]`, none},
		{"a whole location", wsBody(`,"web_search_options":{"search_context_size":"medium","user_location":{"type":"approximate","approximate":` +
			`{"city":"Zürich","country":"CH","region":"Zürich","timezone":"Europe/Zurich"}}}`),
			`[{"type":"web_search_20250305","name":"web_search","max_uses":5,"user_location":{"type":"approximate","city":"Zürich","region":"Zürich","country":"CH","timezone":"Europe/Zurich"}}]`, none},
		{"only the members given", wsBody(`,"web_search_options":{"user_location":{"type":"approximate","approximate":{"country":"GB","city":null}}}`),
			`[{"type":"web_search_20250305","name":"web_search","user_location":{"type":"approximate","country":"GB"}}]`, none},
		{"an empty location", wsBody(`,"web_search_options":{"user_location":{"approximate":{}}}`),
			`[{"type":"web_search_20250305","name":"web_search","user_location":{"type":"approximate"}}]`, none},
		{"location null", wsBody(`,"web_search_options":{"user_location":null}`), `[` + wsSearchTool + `]`, none},
		{"members of no counterpart left out", wsBody(`,"web_search_options":{"search_context_size":"low","filters":{"allowed_domains":["a.com"]},` +
			`"user_location":{"type":"approximate","approximate":{"country":"FR","postal_code":"75001"}}}`),
			`[{"type":"web_search_20250305","name":"web_search","max_uses":1,"user_location":{"type":"approximate","country":"FR"}}]`, none},
		{"keys read as encoding/json reads them", wsBody(`,"web_search_options":{"Search_Context_Size":"low","search_context_size":"high","USER_LOCATION":{"approximate":{"City":"Oslo"}}}`),
			`[{"type":"web_search_20250305","name":"web_search","max_uses":10,"user_location":{"type":"approximate","city":"Oslo"}}]`, none},
		{"after the function tools", wsBody(`,"tools":[` + wsWeatherFn + `],"web_search_options":{}`),
			`[{"name":"get_weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}},` + wsSearchTool + `]`, none},
		{"a forced function still forced", wsBody(`,"tools":[` + wsWeatherFn + `],"tool_choice":{"type":"function","function":{"name":"get_weather"}},"web_search_options":{}`),
			`[{"name":"get_weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}},` + wsSearchTool + `]`, `{"type":"tool","name":"get_weather"}`},
		{"tool_choice none stands", wsBody(`,"tools":[` + wsWeatherFn + `],"tool_choice":"none","web_search_options":{}`),
			`[{"name":"get_weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}},` + wsSearchTool + `]`, `{"type":"none"}`},
		// OpenAI's model asked for none answers without searching: the tool goes,
		// and so does Claude's tool_choice none, which stops server tools too.
		{"tool_choice none without functions", wsBody(`,"tool_choice":"none","web_search_options":{"search_context_size":"high"}`),
			`[{"type":"web_search_20250305","name":"web_search","max_uses":10}]`, `{"type":"none"}`},
		{"tool_choice auto without functions", wsBody(`,"tool_choice":"auto","web_search_options":{}`), `[` + wsSearchTool + `]`, none},
		{"serial calls", wsBody(`,"tools":[` + wsWeatherFn + `],"parallel_tool_calls":false,"web_search_options":{}`),
			`[{"name":"get_weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}},` + wsSearchTool + `]`, `{"type":"auto","disable_parallel_tool_use":true}`},
		{"with a history's tools", `{"model":"chat","messages":[` + wsUser + `,` + history + `],"web_search_options":{"search_context_size":"low"}}`,
			`[{"name":"get_weather","input_schema":{"type":"object"}},{"type":"web_search_20250305","name":"web_search","max_uses":1}]`, `{"type":"none"}`},
		{"a history's web_search call declared once", `{"model":"chat","messages":[` + wsUser + `,` + strings.ReplaceAll(history, "get_weather", "web_search") + `],"web_search_options":{}}`,
			`[` + wsSearchTool + `]`, `{"type":"none"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := anthropicFields(t, c.body)
			for _, f := range []struct {
				name, want string
			}{{"tools", c.tools}, {"tool_choice", c.choice}} {
				got, ok := m[f.name]
				switch {
				case f.want == none && ok:
					t.Errorf("%s %s, want none", f.name, got)
				case f.want != none && (!ok || !sameJSON(t, got, []byte(f.want))):
					t.Errorf("%s %s, want %s", f.name, got, f.want)
				}
			}
			if _, ok := m["web_search_options"]; ok {
				t.Error("web_search_options sent as it is")
			}
		})
	}
}

// TestAnthropicWebSearchThinking: thinking and its rules stand beside the web search
// tool: reasoning_effort still sends its budget, and a forced function with thinking
// on is still refused.
func TestAnthropicWebSearchThinking(t *testing.T) {
	out, rerr := appendAnthropicRequest(nil, []byte(wsBody(`,"reasoning_effort":"high","tools":[`+wsWeatherFn+`],"web_search_options":{"search_context_size":"high"}`)),
		quoteModel("claude-sonnet-4-5"), 1024, claudeModelOf("claude-sonnet-4-5"), false)
	if rerr != nil {
		t.Fatalf("refused: %s: %s", rerr.param, rerr.msg)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	if !sameJSON(t, m["thinking"], []byte(`{"type":"enabled","budget_tokens":4096}`)) || string(m["max_tokens"]) != "5120" ||
		!bytes.Contains(m["tools"], []byte(`{"type":"web_search_20250305","name":"web_search","max_uses":10}`)) {
		t.Errorf("translated %s", out)
	}
	_, rerr = appendAnthropicRequest(nil, []byte(wsBody(`,"reasoning_effort":"high","tools":[`+wsWeatherFn+`],"tool_choice":"required","web_search_options":{}`)),
		quoteModel("claude-sonnet-4-5"), 1024, claudeModelOf("claude-sonnet-4-5"), false)
	if rerr == nil || rerr.param != "tool_choice" {
		t.Errorf("forced tool with thinking: %+v", rerr)
	}
}

// TestAnthropicWebSearchRefused: web_search_options the translation cannot read gets a
// 400 naming the field, as other refusals; so does a function of the web search
// tool's name beside it, which the API would refuse as a name declared twice; so does
// a tool_choice that forces a call with no tool to call (OpenAI refuses it: web search
// is not a tool), which the translation would otherwise drop.
func TestAnthropicWebSearchRefused(t *testing.T) {
	for _, c := range []struct{ name, extra, param string }{
		{"a string", `,"web_search_options":"on"`, "web_search_options"},
		{"an array", `,"web_search_options":[]`, "web_search_options"},
		{"true", `,"web_search_options":true`, "web_search_options"},
		{"an unknown size", `,"web_search_options":{"search_context_size":"max"}`, "web_search_options.search_context_size"},
		{"a size that is a number", `,"web_search_options":{"search_context_size":3}`, "web_search_options.search_context_size"},
		{"a location that is a string", `,"web_search_options":{"user_location":"Paris"}`, "web_search_options.user_location"},
		{"a location of another type", `,"web_search_options":{"user_location":{"type":"exact","approximate":{"city":"Paris"}}}`, "web_search_options.user_location.type"},
		{"a location without approximate", `,"web_search_options":{"user_location":{"type":"approximate"}}`, "web_search_options.user_location.approximate"},
		{"approximate null", `,"web_search_options":{"user_location":{"type":"approximate","approximate":null}}`, "web_search_options.user_location.approximate"},
		{"approximate a string", `,"web_search_options":{"user_location":{"type":"approximate","approximate":"Paris"}}`, "web_search_options.user_location.approximate"},
		{"Anthropic's flat location", `,"web_search_options":{"user_location":{"type":"approximate","city":"Paris"}}`, "web_search_options.user_location.approximate"},
		{"a city that is a number", `,"web_search_options":{"user_location":{"approximate":{"city":75}}}`, "web_search_options.user_location.approximate.city"},
		{"a timezone that is an object", `,"web_search_options":{"user_location":{"approximate":{"timezone":{"name":"UTC"}}}}`, "web_search_options.user_location.approximate.timezone"},
		{"required with only web search", `,"tool_choice":"required","web_search_options":{}`, "tool_choice"},
		{"a named function with only web search", `,"tool_choice":{"type":"function","function":{"name":"web_search"}},"web_search_options":{}`, "tool_choice"},
		{"required with no tools at all", `,"tool_choice":"required"`, "tool_choice"},
		{"a function named web_search", `,"tools":[` + wsWeatherFn + `,{"type":"function","function":{"name":"web_search"}}],"web_search_options":{}`, "tools[1].function.name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, rerr := appendAnthropicRequest(nil, []byte(wsBody(c.extra)), quoteModel("claude-x"), 1024, claudeModel{}, false)
			if rerr == nil || rerr.param != c.param || !strings.HasPrefix(rerr.msg, c.param+" ") {
				t.Errorf("refusal %+v, want param %s", rerr, c.param)
			}
		})
	}
}

// A malformed web_search_options is refused before a target is leased: nothing goes
// upstream, and the client gets OpenAI's 400 naming the field.
func TestAnthropicWebSearchRefusedBeforeUpstream(t *testing.T) {
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {})
	b := newTestBackend(t, anthropicConfig(up.URL))
	var out fasthttp.Response
	var res Result
	err := b.Send(chatCall(wsBody(`,"web_search_options":{"user_location":{"approximate":{"country":44}}}`), false), &out, &res)
	if re, ok := errors.AsType[*RequestError](err); !ok || re.Status != 400 {
		t.Fatalf("err = %v", err)
	}
	if _, _, _, calls := up.last(); calls != 0 || res.Target != "" {
		t.Errorf("upstream called %d times, target %q", calls, res.Target)
	}
	var e struct {
		Error struct{ Type, Param, Message string }
	}
	if json.Unmarshal(out.Body(), &e) != nil || out.StatusCode() != 400 || e.Error.Type != "invalid_request_error" ||
		e.Error.Param != "web_search_options.user_location.approximate.country" {
		t.Errorf("answer %d %s", out.StatusCode(), out.Body())
	}
}

// A backend whose drop_params names web_search_options never sends the tool, nor reads
// the field: one it could not read is not refused either.
func TestAnthropicWebSearchDropped(t *testing.T) {
	a := newAnthropic(&Config{Provider: "anthropic", Model: "claude-x", DropParams: []string{"Web_Search_Options"}})
	for _, body := range []string{
		wsBody(`,"web_search_options":{"search_context_size":"high"}`),
		wsBody(`,"web_search_options":"on"`),
	} {
		var out fasthttp.Response
		got, err := a.prepare(nil, chatCall(body, false), &out)
		if err != nil {
			t.Fatalf("%s: %v %s", body, err, out.Body())
		}
		if bytes.Contains(got, []byte("web_search")) || bytes.Contains(got, []byte(`"tools"`)) {
			t.Errorf("%s sent %s", body, got)
		}
	}
}

// An assistant message the client sends back as OpenAI gave it, annotations and all
// (the OpenAI SDKs replay the message they got), goes as its text: the Messages API
// defines no annotations, and the citations' spans mean nothing to the model. The
// translation reads only the members it knows, so nothing else of the message goes
// either.
func TestAnthropicAssistantAnnotationsReplayed(t *testing.T) {
	body := `{"model":"chat","messages":[` + wsUser + `,{"role":"assistant","content":"Snow closed the airport.","refusal":null,` +
		`"annotations":[{"type":"url_citation","url_citation":{"start_index":0,"end_index":24,"url":"https://example.com/a","title":"A"}}]},` +
		`{"role":"user","content":"And tomorrow?"}],"web_search_options":{}}`
	out := anthropicRequest(t, body)
	var req struct {
		Messages []struct {
			Role    string
			Content []map[string]json.RawMessage
		}
	}
	if err := json.Unmarshal(out, &req); err != nil {
		t.Fatal(err)
	}
	asst := req.Messages[1]
	if asst.Role != "assistant" || len(asst.Content) != 1 || string(asst.Content[0]["text"]) != `"Snow closed the airport."` || len(asst.Content[0]) != 2 {
		t.Errorf("assistant turn %+v", asst)
	}
	if bytes.Contains(out, []byte("annotations")) || bytes.Contains(out, []byte("url_citation")) {
		t.Errorf("annotations sent: %s", out)
	}
}
