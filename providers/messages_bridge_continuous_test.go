package providers

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// stream_usage_continuous applies to a backend that serves the Messages API through
// chat completions alone, and cannot be on where stream_usage is off; a value that
// cannot be is a config error naming the key.
func TestStreamUsageContinuousConfig(t *testing.T) {
	on, off := true, false
	cases := []struct {
		name string
		cfg  Config
		err  string
	}{
		{"openai chat off", Config{Provider: "openai", BaseURL: "http://h/v1", Model: "m", MessagesAPI: "chat", StreamUsageContinuous: &off}, ""},
		{"openai chat on", Config{Provider: "openai", BaseURL: "http://h/v1", Model: "m", MessagesAPI: "chat", StreamUsageContinuous: &on}, ""},
		{"azure on", Config{Provider: "azure", BaseURL: "http://h", Model: "m", Deployment: "d", StreamUsageContinuous: &on}, ""},
		{"off with stream_usage off", Config{Provider: "openai", BaseURL: "http://h/v1", Model: "m", MessagesAPI: "chat",
			StreamUsage: &off, StreamUsageContinuous: &off}, ""},
		{"openai native", Config{Provider: "openai", BaseURL: "http://h/v1", Model: "m", StreamUsageContinuous: &off},
			"stream_usage_continuous: applies only to a backend that serves the Messages API through chat completions"},
		{"anthropic", Config{Provider: "anthropic", BaseURL: "http://h/v1", Model: "m", StreamUsageContinuous: &on},
			"stream_usage_continuous: applies only to a backend that serves the Messages API through chat completions"},
		{"mock", Config{Provider: "mock", Model: "m", StreamUsageContinuous: &on},
			"stream_usage_continuous: applies only to a backend that serves the Messages API through chat completions"},
		{"on with stream_usage off", Config{Provider: "openai", BaseURL: "http://h/v1", Model: "m", MessagesAPI: "chat",
			StreamUsage: &off, StreamUsageContinuous: &on}, "stream_usage_continuous: needs stream_usage"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			if c.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var fe *FieldError
			if err == nil || !strings.Contains(err.Error(), c.err) || !errors.As(err, &fe) || fe.Key() != "stream_usage_continuous" {
				t.Fatalf("error %v, want %q", err, c.err)
			}
		})
	}
}

// A bridged Messages stream asks for usage on every chunk next to the usage chunk
// (stream_options.continuous_usage_stats) by default on an openai backend, not on
// azure's (which refuses members it does not know) unless the key says so; the key
// set false asks for the usage chunk alone, stream_usage false for neither. The
// gateway's call is restored after.
func TestMessagesBridgeStreamOptionsSent(t *testing.T) {
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/event-stream")
		ctx.SetBodyString("data: " + delta(`{"content":"Hi"}`, "stop") + "\n\ndata: " + usageChunk + "\n\ndata: [DONE]\n\n")
	})
	on, off := true, false
	const cont, final = `"stream_options":{"include_usage":true,"continuous_usage_stats":true}`, `"stream_options":{"include_usage":true}`
	cases := []struct {
		name string
		cfg  Config
		want string // the stream_options sent, or "" for none
	}{
		{"openai chat", Config{Provider: "openai", BaseURL: up.URL + "/v1", Model: "m", MessagesAPI: "chat"}, cont},
		{"openai chat, key off", Config{Provider: "openai", BaseURL: up.URL + "/v1", Model: "m", MessagesAPI: "chat", StreamUsageContinuous: &off}, final},
		{"openai chat, stream_usage off", Config{Provider: "openai", BaseURL: up.URL + "/v1", Model: "m", MessagesAPI: "chat", StreamUsage: &off}, ""},
		{"azure", Config{Provider: "azure", BaseURL: up.URL, Model: "m", Deployment: "d"}, final},
		{"azure, key on", Config{Provider: "azure", BaseURL: up.URL, Model: "m", Deployment: "d", StreamUsageContinuous: &on}, cont},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newTestBackend(t, c.cfg)
			call := messagesCall(Messages, `{"model":"chat","max_tokens":9,"stream":true,"messages":[{"role":"user","content":"Hi"}]}`)
			call.Deadline = time.Now().Add(5 * time.Second)
			opts := call.StreamOptions
			var out fasthttp.Response
			var res Result
			if err := b.Send(call, &out, &res); err != nil {
				t.Fatal(err)
			}
			got := readBridged(res.Stream)
			_ = res.Stream.Close()
			if got.err != nil {
				t.Fatal(got.err)
			}
			_, _, sent, _ := up.last()
			switch {
			case c.want == "" && strings.Contains(string(sent), "stream_options"):
				t.Errorf("sent %s, want no stream_options", sent)
			case c.want != "" && !strings.Contains(string(sent), `"stream":true,`+c.want+`}`):
				t.Errorf("sent %s, want %s", sent, c.want)
			}
			if call.IncludeUsage || call.StreamOptions != opts {
				t.Errorf("call not restored: include usage %v, stream_options %v", call.IncludeUsage, call.StreamOptions)
			}
		})
	}
}

// By default a bridged Messages stream asks for continuous_usage_stats on openai
// backends but for OpenAI's own API, which refuses members it does not know.
func TestStreamUsageContinuousDefault(t *testing.T) {
	on, off := true, false
	for _, c := range []struct {
		cfg  Config
		want bool
	}{
		{Config{Provider: "openai", BaseURL: "http://vllm:8000/v1"}, true},
		{Config{Provider: "openai", BaseURL: "https://api.openai.com/v1"}, false},
		{Config{Provider: "openai", BaseURL: "https://API.OpenAI.com:443/v1"}, false},
		{Config{Provider: "openai", BaseURL: "https://api.openai.com.example/v1"}, true},
		{Config{Provider: "openai", BaseURL: "https://api.openai.com/v1", StreamUsageContinuous: &on}, true},
		{Config{Provider: "openai", BaseURL: "http://vllm:8000/v1", StreamUsageContinuous: &off}, false},
		{Config{Provider: "azure", BaseURL: "https://x.openai.azure.com"}, false},
	} {
		if got := c.cfg.streamUsageContinuous(); got != c.want {
			t.Errorf("%s %s (key %v): %v, want %v", c.cfg.Provider, c.cfg.BaseURL, c.cfg.StreamUsageContinuous != nil, got, c.want)
		}
	}
}
