package providers

import (
	"strings"
	"testing"
)

// OpenAI's chat API still takes the legacy functions and function_call parameters
// (the SDKs keep them, older LangChain agents send them). Dropped, the request would
// reach Claude with no tools and the client, which offered a function, would get a
// plain text answer and no error; they are refused with a 400 naming the field, as a
// role "function" message is (README: "A request the Messages API cannot express
// (... a function role ...) gets 400 invalid_request_error with param naming the
// field"), pointing at tools and tool_choice.
func TestAnthropicLegacyFunctionsRefused(t *testing.T) {
	body := `{"model":"chat","messages":[{"role":"user","content":"Weather in Paris?"}],
		"functions":[{"name":"get_weather","description":"Current weather.","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}],
		"function_call":"auto"}`
	_, rerr := appendAnthropicRequest(nil, []byte(body), quoteModel("claude-sonnet-4-5"), 4096, claudeModelOf("claude-sonnet-4-5"), false)
	if rerr == nil {
		t.Fatal("functions neither sent as tools nor refused")
	}
	if rerr.param != "functions" || !strings.Contains(rerr.msg, "tools and tool_choice") {
		t.Errorf("refused naming %q (%s), want functions and a pointer to tools and tool_choice", rerr.param, rerr.msg)
	}
}

// Each legacy field is refused on its own, an assistant message's function_call too
// (the history of a legacy function loop); null stands for none.
func TestAnthropicLegacyFunctionFields(t *testing.T) {
	const user = `{"role":"user","content":"Weather in Paris?"}`
	for _, c := range []struct{ name, body, param string }{
		{"function_call", `{"model":"c","messages":[` + user + `],"function_call":"none"}`, "function_call"},
		{"assistant function_call", `{"model":"c","messages":[` + user + `,` +
			`{"role":"assistant","content":null,"function_call":{"name":"get_weather","arguments":"{}"}},` + user + `]}`, "messages[1].function_call"},
		{"null", `{"model":"c","messages":[` + user + `,{"role":"assistant","content":"Sunny.","function_call":null},` + user + `],` +
			`"functions":null,"function_call":null}`, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, rerr := appendAnthropicRequest(nil, []byte(c.body), quoteModel("claude-x"), 1024, claudeModel{}, false)
			switch {
			case c.param == "" && rerr != nil:
				t.Errorf("refused %s: %s", rerr.param, rerr.msg)
			case c.param != "" && (rerr == nil || rerr.param != c.param):
				t.Errorf("refused %+v, want param %s", rerr, c.param)
			}
		})
	}
}
