package providers

import (
	"errors"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func msgsTokenize(body string) (string, bridgeSpans, *requestError) {
	out, sp, rerr := appendMessagesTokenize(nil, []byte(body), []byte(`"chat"`))
	return string(out), sp, rerr
}

// A token count goes up as vLLM's tokenize request in its chat form: the model,
// messages and tools of the chat body the bridge writes for the same Messages body,
// byte for byte, then add_generation_prompt; what only a generation reads (max_tokens,
// sampling, stop, tool_choice, response_format, user) is left out.
func TestMessagesBridgeTokenizeRequest(t *testing.T) {
	tools := `"tools":[{"name":"get_weather","description":"Weather.","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}]`
	chatTools := `"tools":[{"type":"function","function":{"name":"get_weather","description":"Weather.","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]`
	cases := []struct {
		name, in, want string
	}{
		{"system and a turn",
			`{"model":"chat","system":"Be brief.","messages":[{"role":"user","content":"Hi"}]}`,
			`{"model":"chat","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}],"add_generation_prompt":true}`},
		{"tools, tool_choice and generation members left out",
			`{"model":"chat","max_tokens":64,"temperature":0.2,"stop_sequences":["END"],"metadata":{"user_id":"u1"},` + tools +
				`,"tool_choice":{"type":"any"},"messages":[{"role":"user","content":"Weather in Paris?"}]}`,
			`{"model":"chat","messages":[{"role":"user","content":"Weather in Paris?"}],` + chatTools + `,"add_generation_prompt":true}`},
		{"a tool loop",
			`{"model":"chat",` + tools + `,"messages":[{"role":"user","content":"Weather?"},` +
				`{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}}]},` +
				`{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"Sunny"}]}]}`,
			`{"model":"chat","messages":[{"role":"user","content":"Weather?"},` +
				`{"role":"assistant","content":null,"tool_calls":[{"id":"toolu_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},` +
				`{"role":"tool","tool_call_id":"toolu_1","content":"Sunny"}],` + chatTools + `,"add_generation_prompt":true}`},
		{"Claude Code's count: no tools",
			`{"model":"claude-opus-5-5","messages":[{"role":"user","content":"foo"}],"tools":[]}`,
			`{"model":"chat","messages":[{"role":"user","content":"foo"}],"add_generation_prompt":true}`},
		{"output_config left out",
			`{"model":"chat","output_config":{"format":{"type":"json_schema","schema":{"type":"object"}}},"messages":[{"role":"user","content":"Hi"}]}`,
			`{"model":"chat","messages":[{"role":"user","content":"Hi"}],"add_generation_prompt":true}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, sp, rerr := msgsTokenize(tc.in)
			if rerr != nil {
				t.Fatalf("refused: %s: %s", rerr.param, rerr.msg)
			}
			if got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			if got[sp.model[0]:sp.model[1]] != `"chat"` || sp.streamOptions != [2]int{-1, -1} {
				t.Errorf("spans %+v", sp)
			}
			chat, _, rerr := msgsChat(tc.in, false, false)
			if rerr != nil {
				t.Fatalf("chat refused: %s", rerr.msg)
			}
			// The count reads what the chat call sends: its body up to its tools.
			prompt := strings.TrimSuffix(got, `,"add_generation_prompt":true}`)
			if !strings.HasPrefix(chat, prompt) {
				t.Errorf("the chat body does not begin with the counted prompt:\nchat  %s\ncount %s", chat, prompt)
			}
		})
	}
}

// A count refuses what the call would: the body is translated whole.
func TestMessagesBridgeTokenizeRefusals(t *testing.T) {
	for _, tc := range []struct{ name, in, param string }{
		{"document block", `{"model":"chat","messages":[{"role":"user","content":[{"type":"document","source":{}}]}]}`, "messages[0].content[0]"},
		{"server tool", `{"model":"chat","tools":[{"type":"web_search_20250305","name":"web_search"}],"messages":[{"role":"user","content":"Hi"}]}`, "tools[0]"},
		{"tool_choice", `{"model":"chat","tool_choice":"auto","messages":[{"role":"user","content":"Hi"}]}`, "tool_choice"},
		{"mcp_servers", `{"model":"chat","mcp_servers":[{"type":"url","url":"https://mcp.example","name":"x"}],"messages":[{"role":"user","content":"Hi"}]}`, "mcp_servers"},
		{"no messages", `{"model":"chat","messages":[]}`, "messages"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, rerr := msgsTokenize(tc.in)
			_, _, chat := msgsChat(tc.in, false, false)
			if rerr == nil || chat == nil || rerr.param != tc.param || *rerr != *chat {
				t.Errorf("count refused %+v, chat %+v; want both %q", rerr, chat, tc.param)
			}
		})
	}
}

// Through Send, a count on an openai backend with messages_api chat goes to the
// server's root /tokenize, and its count comes back as {"input_tokens": N}. A server
// without vLLM's tokenizer (404, 405, 422, or a 2xx without a count) is
// errBridgeNoTokenizer, which fails no target; another upstream error goes as it came,
// for the gateway to shape. Azure's deployments are refused before any is asked.
func TestMessagesBridgeCountTokensSend(t *testing.T) {
	var status int
	var answer string
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetStatusCode(status)
		ctx.SetBodyString(answer)
	})
	b := newTestBackend(t, Config{Provider: "openai", BaseURL: up.URL + "/v1", Model: "qwen", MessagesAPI: MessagesChat, APIKey: "up-key",
		DropParams: []string{"top_k"}})
	body := `{"model":"coder","system":"Be brief.","top_k":3,"messages":[{"role":"user","content":"How many tokens?"}]}`
	send := func(t *testing.T, st int, ans string) (*fasthttp.Response, *Result, error) {
		t.Helper()
		status, answer = st, ans
		call := messagesCall(CountTokens, body)
		var out fasthttp.Response
		var res Result
		err := b.Send(call, &out, &res)
		if call.Kind != CountTokens || string(call.Body) != body {
			t.Errorf("call not restored: %v %s", call.Kind, call.Body)
		}
		return &out, &res, err
	}

	t.Run("counted", func(t *testing.T) {
		out, res, err := send(t, 200, `{"count":17,"max_model_len":8192,"tokens":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17],"token_strs":null}`)
		if err != nil {
			t.Fatalf("%v: %s", err, out.Body())
		}
		uri, h, sent, _ := up.last()
		if uri != "/tokenize" || h["authorization"] != "Bearer up-key" {
			t.Errorf("sent to %s with %v", uri, h)
		}
		want := `{"model":"qwen","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"How many tokens?"}],"add_generation_prompt":true}`
		if string(sent) != want {
			t.Errorf("sent %s\nwant %s", sent, want)
		}
		if string(out.Body()) != `{"input_tokens":17}` || out.StatusCode() != 200 || string(out.Header.ContentType()) != "application/json" {
			t.Errorf("answer %d %s %s", out.StatusCode(), out.Header.ContentType(), out.Body())
		}
		if res.Usage.Counted() {
			t.Errorf("usage %+v: a count uses no tokens", res.Usage)
		}
	})
	for _, tc := range []struct {
		name   string
		status int
		answer string
	}{
		{"no route", 404, `{"detail":"Not Found"}`},
		{"OpenAI's unknown URL", 404, `{"error":{"message":"Invalid URL (POST /tokenize)","type":"invalid_request_error","param":null,"code":null}}`},
		{"no POST", 405, `{"detail":"Method Not Allowed"}`},
		{"TGI's own tokenize", 422, `Failed to deserialize the JSON body into the target type: missing field ` + "`inputs`"},
		{"another tokenizer's answer", 200, `{"tokens":[]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The backend remembers the answer (TestMessagesBridgeNoTokenizerRemembered):
			// each case, and those after them, ask the upstream afresh.
			t.Cleanup(func() { b.noTokenizerUntil.Store(0) })
			out, res, err := send(t, tc.status, tc.answer)
			var ue *UnsupportedError
			if !errors.As(err, &ue) || ue != errBridgeNoTokenizer || !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error %v: %s", err, out.Body())
			}
			if !strings.Contains(ue.Error(), "has no tokenizer API") || !strings.Contains(ue.Error(), "count_tokens is not supported") {
				t.Errorf("message %q", ue.Error())
			}
			if res.Failed || res.Status != tc.status || res.Sent.IsZero() {
				t.Errorf("result %+v: the upstream was asked, and is not at fault", res)
			}
			if !b.Healthy() {
				t.Error("the target was taken out of service")
			}
		})
	}
	t.Run("upstream error", func(t *testing.T) {
		out, _, err := send(t, 400, `{"error":{"message":"messages: Input should be a valid list","type":"BadRequestError","param":null,"code":400}}`)
		var ue *UpstreamError
		if !errors.As(err, &ue) || ue.Status != 400 || !strings.Contains(string(out.Body()), "Input should be a valid list") {
			t.Errorf("error %v: %s", err, out.Body())
		}
	})
	t.Run("upstream failure", func(t *testing.T) {
		_, _, err := send(t, 503, `{"error":{"message":"overloaded","type":"ServiceUnavailableError","code":503}}`)
		if ue, ok := errors.AsType[*UpstreamError](err); !ok || !ue.Retryable() {
			t.Errorf("error %v, want a retryable upstream error", err)
		}
	})
	t.Run("refused", func(t *testing.T) {
		_, _, _, before := up.last()
		call := messagesCall(CountTokens, `{"model":"coder","messages":[{"role":"user","content":[{"type":"document","source":{}}]}]}`)
		var out fasthttp.Response
		var res Result
		err := b.Send(call, &out, &res)
		if _, ok := errors.AsType[*RequestError](err); !ok || out.StatusCode() != 400 ||
			!strings.HasPrefix(string(out.Body()), `{"type":"error","error":{"type":"invalid_request_error","message":"messages[0].content[0]: document blocks`) {
			t.Errorf("error %v: %d %s", err, out.StatusCode(), out.Body())
		}
		if _, _, _, after := up.last(); after != before {
			t.Error("the upstream was asked")
		}
	})
	t.Run("azure", func(t *testing.T) {
		az := newTestBackend(t, Config{Provider: "azure", BaseURL: up.URL, Deployment: "gpt4o", Model: "gpt-4o", APIKey: "az-key"})
		_, _, _, before := up.last()
		var out fasthttp.Response
		var res Result
		err := az.Send(messagesCall(CountTokens, body), &out, &res)
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "Azure OpenAI") || !res.Sent.IsZero() {
			t.Errorf("error %v", err)
		}
		if _, _, _, after := up.last(); after != before {
			t.Error("the upstream was asked")
		}
	})
}
