package providers

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestOpenAIReasoningModel(t *testing.T) {
	for _, c := range []struct {
		name string
		want bool
	}{
		{"o1", true}, {"o1-mini", true}, {"o3-mini-2025-01-31", true}, {"o4-mini", true}, {"o3-pro", true},
		{"gpt-5", true}, {"gpt-5-mini", true}, {"gpt-5.1", true}, {"gpt-5.1-codex", true}, {"GPT-5", true},
		{"openai/gpt-5", true}, {"gpt-6", true}, {"gpt-10-turbo", true}, {"ft:o4-mini-2025-04-16:acme::BTz2REZf", true},
		{"ft:gpt-4o-mini-2024-07-18:acme::x", false},
		{"gpt-4o", false}, {"gpt-4.1-mini", false}, {"gpt-3.5-turbo", false}, {"gpt-oss-120b", false},
		{"olmo-2", false}, {"o", false}, {"omni-moderation-latest", false}, {"meta-llama/Llama-3.1-8B-Instruct", false},
		{"", false},
	} {
		if got := openAIReasoningModel(c.name); got != c.want {
			t.Errorf("%q: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestRenameMaxTokens(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{"model":"m","max_tokens":64,"stream":true}`, `{"model":"m","max_completion_tokens":64,"stream":true}`},
		{`{"max_tokens":64}`, `{"max_completion_tokens":64}`},
		{`{"m\u0061x_tokens":64,"a":1}`, `{"max_completion_tokens":64,"a":1}`},
		{`{"\u006d\u0061\u0078\u005f\u0074\u006f\u006b\u0065\u006e\u0073":64}`, `{"max_completion_tokens":64}`},
		{`{"max_tokens":64,"max_completion_tokens":32}`, `{"max_completion_tokens":32}`},
		{`{"max_completion_tokens":32,"max_tokens":64}`, `{"max_completion_tokens":32}`},
		{`{"max_tokens":64,"max_tokens":8}`, `{"max_completion_tokens":64}`},
		{`{"max_tokens":64,"max_completion_tokens":null}`, `{"max_completion_tokens":64}`},
		{`{"max_completion_tokens":null,`, `{"max_completion_tokens":null,`},
		{`{"model":"m","tools":[{"max_tokens":1}]}`, `{"model":"m","tools":[{"max_tokens":1}]}`},
		{`{"model":"m"}`, `{"model":"m"}`},
		{`not json`, `not json`},
	} {
		if got := renameMaxTokens([]byte(c.in)); string(got) != c.want {
			t.Errorf("%s: %s, want %s", c.in, got, c.want)
		}
	}
}

// TestOpenAIReasoningModelGetsMaxCompletionTokens: a chat request's max_tokens reaches
// an OpenAI reasoning model as max_completion_tokens (directly, on Azure, and through
// completions-through-chat); other models and embeddings get the body as sent.
func TestOpenAIReasoningModelGetsMaxCompletionTokens(t *testing.T) {
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	})
	const chat = `{"model":"chat","messages":[{"role":"user","content":"Hi"}],"max_tokens":64}`
	for _, c := range []struct {
		name string
		cfg  Config
		call *Call
		want string
	}{
		{"o3-mini", Config{Provider: "openai", BaseURL: up.URL + "/v1", Model: "o3-mini"}, chatCall(chat, false),
			`{"model":"o3-mini","messages":[{"role":"user","content":"Hi"}],"max_completion_tokens":64}`},
		{"gpt-5 on Azure", Config{Provider: "azure", BaseURL: up.URL, Deployment: "d", Model: "gpt-5"}, chatCall(chat, false),
			`{"model":"gpt-5","messages":[{"role":"user","content":"Hi"}],"max_completion_tokens":64}`},
		{"gpt-4o", Config{Provider: "openai", BaseURL: up.URL + "/v1", Model: "gpt-4o"}, chatCall(chat, false),
			`{"model":"gpt-4o","messages":[{"role":"user","content":"Hi"}],"max_tokens":64}`},
		{"gpt-5 through chat", Config{Provider: "openai", BaseURL: up.URL + "/v1", Model: "gpt-5", CompletionsViaChat: true},
			&Call{Kind: Completions, Body: []byte(`{"model":"chat","prompt":"Hi","max_tokens":8}`), Model: [2]int{9, 15},
				StreamOptions: [2]int{-1, -1}, Header: clientHeader(), Deadline: chatCall("{}", false).Deadline}, ""},
	} {
		b := newTestBackend(t, c.cfg)
		var out fasthttp.Response
		var res Result
		if err := b.Send(c.call, &out, &res); err != nil {
			t.Fatalf("%s: %v: %s", c.name, err, out.Body())
		}
		_, _, sent, _ := up.last()
		switch {
		case c.want != "" && string(sent) != c.want:
			t.Errorf("%s: upstream got %s, want %s", c.name, sent, c.want)
		case c.want == "" && (!strings.Contains(string(sent), `"max_completion_tokens":8`) || strings.Contains(string(sent), `"max_tokens"`)):
			t.Errorf("%s: upstream got %s, want max_completion_tokens 8", c.name, sent)
		}
	}
}

func FuzzRenameMaxTokens(f *testing.F) {
	for _, s := range []string{`{"model":"m","max_tokens":64}`, `{"max_tokens":1,"max_completion_tokens":2}`, `{"m\u0061x_tokens":3}`, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		valid := json.Valid(body)
		out := renameMaxTokens(slices.Clone(body))
		if !valid {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("%s -> %s is not JSON", body, out)
		}
		var in, got map[string]json.RawMessage
		if json.Unmarshal(body, &in) != nil || json.Unmarshal(out, &got) != nil {
			return
		}
		if _, ok := got["max_tokens"]; ok {
			t.Fatalf("%s -> %s keeps max_tokens", body, out)
		}
		if _, ok := in["max_tokens"]; ok && got["max_completion_tokens"] == nil {
			t.Fatalf("%s -> %s: max_completion_tokens is not max_tokens", body, out)
		}
	})
}
