package providers

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3/responses"
	"github.com/valyala/fasthttp"
)

// responses_api chooses how an openai backend serves the Responses API; the backends
// without one serve it through chat only, and the mock only natively. A value that
// cannot be is a config error naming the key.
func TestBridgeConfig(t *testing.T) {
	cases := []struct {
		name   string
		cfg    Config
		native bool
		err    string
	}{
		{"openai default", Config{Provider: "openai", BaseURL: "http://h/v1", Model: "m"}, true, ""},
		{"openai native", Config{Provider: "openai", BaseURL: "http://h/v1", Model: "m", ResponsesAPI: "native"}, true, ""},
		{"openai chat", Config{Provider: "openai", BaseURL: "http://h/v1", Model: "m", ResponsesAPI: "chat"}, false, ""},
		{"mock", Config{Provider: "mock", Model: "m"}, true, ""},
		{"anthropic", Config{Provider: "anthropic", BaseURL: "http://h/v1", Model: "m"}, false, ""},
		{"anthropic chat", Config{Provider: "anthropic", BaseURL: "http://h/v1", Model: "m", ResponsesAPI: "chat"}, false, ""},
		{"azure", Config{Provider: "azure", BaseURL: "http://h", Model: "m", Deployment: "d"}, false, ""},
		{"anthropic native", Config{Provider: "anthropic", BaseURL: "http://h/v1", Model: "m", ResponsesAPI: "native"}, false, "responses_api: must be chat for provider anthropic"},
		{"azure native", Config{Provider: "azure", BaseURL: "http://h", Model: "m", Deployment: "d", ResponsesAPI: "native"}, false, "responses_api: must be chat for provider azure"},
		{"mock chat", Config{Provider: "mock", Model: "m", ResponsesAPI: "chat"}, false, "responses_api: must be native for provider mock"},
		{"unknown", Config{Provider: "openai", BaseURL: "http://h/v1", Model: "m", ResponsesAPI: "bridge"}, false, "responses_api: must be native or chat"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			if c.err != "" {
				var fe *FieldError
				if err == nil || !strings.Contains(err.Error(), c.err) || !errors.As(err, &fe) || fe.Key() != "responses_api" {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b := newTestBackend(t, c.cfg)
			if b.NativeResponses() != c.native {
				t.Errorf("NativeResponses %v, want %v", b.NativeResponses(), c.native)
			}
		})
	}
}

const chatAnswerJSON = `{"id":"chatcmpl-9","object":"chat.completion","created":1700000000,"model":"gpt-4o-2024-08-06",` +
	`"choices":[{"index":0,"message":{"role":"assistant","content":"Hi there."},"finish_reason":"stop"}],` +
	`"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}`

// An Azure deployment, which has no Responses API, serves it through its chat
// completions URL; drop_params removes the members it names before the
// translation, and the answer's usage is read as chat's.
func TestBridgeAzure(t *testing.T) {
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetBodyString(chatAnswerJSON)
	})
	b := newTestBackend(t, Config{Provider: "azure", BaseURL: up.URL, Deployment: "gpt4o", Model: "gpt-4o", APIKey: "az-key",
		DropParams: []string{"temperature", "max_output_tokens"}})
	body := `{"model":"chat","input":"Hi","temperature":0.1,"max_output_tokens":9,"top_p":0.5}`
	call := responsesCall([]byte(body), clientHeader())
	var out fasthttp.Response
	var res Result
	if err := b.Send(call, &out, &res); err != nil {
		t.Fatalf("%v: %s", err, out.Body())
	}
	uri, h, sent, _ := up.last()
	if !strings.HasPrefix(uri, "/openai/deployments/gpt4o/chat/completions?api-version=") || h["api-key"] != "az-key" {
		t.Errorf("sent to %s with %v", uri, h)
	}
	sameJSONText(t, string(sent), `{"model":"gpt-4o","messages":[{"role":"user","content":"Hi"}],"top_p":0.5}`)
	var resp responses.Response
	if err := json.Unmarshal(out.Body(), &resp); err != nil || resp.OutputText() != "Hi there." || resp.Usage.TotalTokens != 12 {
		t.Fatalf("%v: %s", err, out.Body())
	}
	if string(out.Header.ContentType()) != "application/json" || res.Usage.Input != 9 || res.Usage.Output != 3 || res.IDEnds != (IDEnds{}) {
		t.Errorf("content type %s, usage %+v, IDEnds %v", out.Header.ContentType(), res.Usage, res.IDEnds)
	}
	if call.Kind != Responses || string(call.Body) != body {
		t.Errorf("call changed: %v %s", call.Kind, call.Body)
	}
}

// A backend whose server refuses stream_options (stream_usage: false) gets none from
// the bridge either; its stream still ends with response.completed, usage null.
func TestBridgeNoStreamUsage(t *testing.T) {
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/event-stream")
		ctx.SetBodyString("data: " + delta(`{"content":"Hi"}`, "stop") + "\n\ndata: [DONE]\n\n")
	})
	off := false
	b := newTestBackend(t, Config{Provider: "openai", BaseURL: up.URL + "/v1", Model: "tgi", ResponsesAPI: "chat", StreamUsage: &off})
	call := responsesCall([]byte(`{"model":"chat","input":"Hi","stream":true}`), clientHeader())
	var out fasthttp.Response
	var res Result
	if err := b.Send(call, &out, &res); err != nil {
		t.Fatal(err)
	}
	got := readBridged(res.Stream)
	_ = res.Stream.Close()
	evs := checkEvents(t, got.events)
	uri, _, sent, _ := up.last()
	if uri != "/v1/chat/completions" || strings.Contains(string(sent), "stream_options") || !strings.Contains(string(sent), `"stream":true`) {
		t.Errorf("sent to %s: %s", uri, sent)
	}
	if final := evs[len(evs)-1].Response; final.OutputText() != "Hi" || final.JSON.Usage.Raw() != "null" {
		t.Errorf("%s", final.RawJSON())
	}
}
