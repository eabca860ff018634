package gateway

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// remaining posts body to the gateway's chat endpoint and returns the
// x-ratelimit-remaining-tokens of its 200 answer: the day's budget less the estimate.
func remaining(t *testing.T, g *gw, body string) int {
	t.Helper()
	code, rem, b := remainingTokens(t, g, body)
	if code != 200 {
		t.Fatalf("status %d %s", code, b)
	}
	return rem
}

// A backend that drops max_tokens (drop_params) sends no cap upstream: the request is
// charged the endpoint's default_max_tokens, as one naming no max_tokens is, and not
// the client's max_tokens, which bounds nothing there.
func TestDroppedMaxTokensChargedAsNoCap(t *testing.T) {
	addr := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetContentType("application/json")
		ctx.Response.SetBodyString(`{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,` +
			`"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}`)
	})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  dropping: {provider: openai, base_url: "http://`+addr+`/v1", model: m, timeout: 5s, drop_params: [Max_Tokens]}
  keeping: {provider: openai, base_url: "http://`+addr+`/v1", model: m, timeout: 5s}
endpoints:
  - name: dropping
    type: chat
    default_max_tokens: 3000
    routes: [{backend: dropping}]
    limits: [{per: user, tokens: 4000, window: day}]
  - name: keeping
    type: chat
    default_max_tokens: 3000
    routes: [{backend: keeping}]
    limits: [{per: user, tokens: 4000, window: day}]
logging: {level: error, access_log: false}
`)
	const msgs = `"messages":[{"role":"user","content":"Hi"}]`
	// Contrast: the cap reaches the upstream, and only it is charged.
	if rem := remaining(t, g, `{"model":"keeping","user":"u1","max_tokens":10,`+msgs+`}`); rem < 3900 {
		t.Errorf("keeping: %d of 4000 left after max_tokens 10; want the estimate ~20", rem)
	}
	if rem := remaining(t, g, `{"model":"dropping","user":"u1","max_tokens":10,`+msgs+`}`); rem > 1000 {
		t.Errorf("dropping max_tokens: %d of 4000 left after a request whose max_tokens 10 is never sent; "+
			"want default_max_tokens (3000) charged", rem)
	}
	// max_completion_tokens kept beside a dropped max_tokens still caps the output.
	if rem := remaining(t, g, `{"model":"dropping","user":"u2","max_tokens":10,"max_completion_tokens":20,`+msgs+`}`); rem < 3900 {
		t.Errorf("dropping max_tokens, max_completion_tokens 20 sent: %d of 4000 left; want the estimate ~30", rem)
	}
	// A cap above the default is still what the estimate takes.
	if rem := remaining(t, g, `{"model":"dropping","user":"u3","max_tokens":3500,`+msgs+`}`); rem > 500 {
		t.Errorf("dropping max_tokens 3500: %d of 4000 left; want 3500 charged", rem)
	}
}

// An Anthropic backend that drops max_tokens sends its own max_tokens plus the thinking
// budget reasoning_effort asks for: the estimate counts the budget too.
func TestDroppedMaxTokensCountsThinkingBudget(t *testing.T) {
	up := &recordingAnthropic{}
	addr := serveUpstream(t, up.serve)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  sonnet: {provider: anthropic, base_url: "http://`+addr+`/v1", model: claude-sonnet-4-5, api_key: sk-ant-test, timeout: 5s, max_tokens: 1000, drop_params: [max_tokens]}
endpoints:
  - name: sonnet
    type: chat
    default_max_tokens: 1000
    routes: [{backend: sonnet}]
    limits: [{per: user, tokens: 8000, window: day}]
logging: {level: error, access_log: false}
`)
	rem := remaining(t, g, `{"model":"sonnet","user":"u1","max_tokens":10,"reasoning_effort":"high","messages":[{"role":"user","content":"Hi"}]}`)
	sent := up.body(t, 0)
	if string(sent["max_tokens"]) != "5096" {
		t.Fatalf("upstream got max_tokens %s; want the backend's 1000 plus the high budget 4096", sent["max_tokens"])
	}
	if rem > 8000-5096 {
		t.Errorf("%d of 8000 left after a request sent with max_tokens 5096 (client's 10 dropped); want at least 5096 charged", rem)
	}
}
