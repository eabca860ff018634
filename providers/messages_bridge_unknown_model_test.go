package providers

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"
)

// vLLM answers /tokenize for a model it does not serve with 404 and its error body
// (type NotFoundError; vLLM before 0.10 wrote it flat, "object": "error"): its
// tokenizer is there, only the model is not. That count is the upstream's error,
// passed on, and not remembered as a server without a tokenizer: the next count asks
// again. A 404 without that body (no such route) is still errBridgeNoTokenizer.
func TestMessagesBridgeCountUnknownModel(t *testing.T) {
	var tokenize atomic.Int64
	var answer atomic.Value
	up := startUpstream(t, func(ctx *fasthttp.RequestCtx) {
		tokenize.Add(1)
		ctx.SetContentType("application/json")
		a := answer.Load().([2]string)
		if a[0] == "404" {
			ctx.SetStatusCode(404)
		}
		ctx.SetBodyString(a[1])
	})
	cfg := Config{BaseURL: up.URL + "/v1", Model: "qwen-typo", MessagesAPI: MessagesChat}
	const body = `{"model":"coder","messages":[{"role":"user","content":"How many tokens?"}]}`
	counted := [2]string{"200", `{"count":5,"max_model_len":8192,"tokens":[1,2,3,4,5]}`}
	for _, tc := range []struct{ name, body string }{
		{"vLLM's error", `{"error":{"message":"The model ` + "`qwen-typo`" + ` does not exist.","type":"NotFoundError","param":"model","code":404}}`},
		{"older vLLM's flat error", `{"object":"error","message":"The model ` + "`qwen-typo`" + ` does not exist.","type":"NotFoundError","param":null,"code":404}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newPoolBackend(t, cfg, poolsWithClock(newFakeClock()))
			before := tokenize.Load()
			answer.Store([2]string{"404", tc.body})
			var out fasthttp.Response
			var res Result
			err := b.Send(messagesCall(CountTokens, body), &out, &res)
			ue, ok := errors.AsType[*UpstreamError](err)
			if !ok || ue.Status != 404 {
				t.Fatalf("error %v (%T), want the upstream's 404: %s", err, err, out.Body())
			}
			if out.StatusCode() != 404 || !strings.Contains(string(out.Body()), "does not exist") {
				t.Errorf("answer %d %s, want the upstream's", out.StatusCode(), out.Body())
			}
			if !b.Healthy() {
				t.Error("the target was taken out of service")
			}
			// The tokenizer is there: the next count is asked of it.
			answer.Store(counted)
			out.Reset()
			if err := b.Send(messagesCall(CountTokens, body), &out, &res); err != nil || string(out.Body()) != `{"input_tokens":5}` {
				t.Fatalf("the count after it: %v %s", err, out.Body())
			}
			if got := tokenize.Load() - before; got != 2 {
				t.Errorf("the upstream was asked %d times, want 2", got)
			}
		})
	}
	t.Run("no such route", func(t *testing.T) {
		b := newPoolBackend(t, cfg, poolsWithClock(newFakeClock()))
		answer.Store([2]string{"404", `{"detail":"Not Found"}`})
		var out fasthttp.Response
		var res Result
		if err := b.Send(messagesCall(CountTokens, body), &out, &res); !errors.Is(err, errBridgeNoTokenizer) {
			t.Fatalf("error %v, want errBridgeNoTokenizer", err)
		}
		answer.Store(counted)
		before := tokenize.Load()
		if err := b.Send(messagesCall(CountTokens, body), &out, &res); !errors.Is(err, errBridgeNoTokenizer) || tokenize.Load() != before {
			t.Errorf("error %v, upstream asked %d times; want it remembered", err, tokenize.Load()-before)
		}
	})
}
