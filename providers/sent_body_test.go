package providers

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// sentBodies is a SentReader that keeps copies of what it reads.
type sentBodies [][]byte

func (s *sentBodies) ReadSent(body []byte) { *s = append(*s, append([]byte(nil), body...)) }

// Call.Sent reads the body each request sends upstream as it went: after
// drop_params and the provider's translation, not the client's.
func TestCallSentReadsBodyAsSent(t *testing.T) {
	answer := func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"id":"x","model":"m","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}`)
	}
	for _, tt := range []struct {
		name string
		cfg  func(base string) Config
	}{
		{"openai with drop_params", func(base string) Config {
			return Config{Provider: "openai", BaseURL: base + "/v1", Model: "up", DropParams: []string{"temperature"}}
		}},
		{"anthropic translation", func(base string) Config {
			return Config{Provider: "anthropic", BaseURL: base + "/v1", Model: "claude-test", APIKey: "k", MaxTokens: 4096}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := startUpstream(t, answer)
			b := newTestBackend(t, tt.cfg(up.URL))
			var sent sentBodies
			call := chatCall(`{"model":"chat","messages":[{"role":"user","content":"Hi"}],"temperature":1.5}`, false)
			call.Sent = &sent
			var out fasthttp.Response
			var res Result
			_ = b.Send(call, &out, &res)
			_, _, body, calls := up.last()
			if calls != 1 || len(sent) != 1 || string(sent[0]) != string(body) {
				t.Errorf("Sent read %q, upstream got %q (%d requests)", sent, body, calls)
			}
		})
	}
}

// A call refused before any upstream sends nothing, and Sent reads nothing.
func TestCallSentNothingWhenRefused(t *testing.T) {
	up := startUpstream(t, func(*fasthttp.RequestCtx) {})
	b := newTestBackend(t, anthropicConfig(up.URL))
	var sent sentBodies
	call := chatCall(`{"model":"chat","messages":[]}`, false)
	call.Sent = &sent
	var out fasthttp.Response
	var res Result
	if err := b.Send(call, &out, &res); err == nil || len(sent) != 0 {
		t.Errorf("Send = %v, Sent read %q; want a refusal and nothing read", err, sent)
	}
}
