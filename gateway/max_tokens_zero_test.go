package gateway

import (
	"net/http"
	"strconv"
	"testing"

	"github.com/valyala/fasthttp"
)

// A legacy completion with echo and max_tokens 0 (lm-evaluation-harness scores a
// prompt's log-likelihood this way) generates nothing: README's estimate takes the cap
// the request names, and 0 is one, so it is charged its prompt, not default_max_tokens
// per prompt. Before, the scan dropped a 0 as if no cap were named, and a batch of four
// such prompts (4 × 256 estimated, ~4 tokens used) was refused by a 1000-token limit.
func TestMaxTokensZeroChargedAsCap(t *testing.T) {
	addr := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		ctx.Response.SetBodyString(`{"id":"c","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":"a","logprobs":null,"finish_reason":"length"}],"usage":{"prompt_tokens":1,"completion_tokens":0,"total_tokens":1}}`)
	})
	g := startGateway(t, mockConfig(addr, "", `
  - name: legacyl
    type: completions
    routes: [{backend: up}]
    limits: [{per: endpoint, tokens: 1000, window: minute}]
`))
	resp, b := postRaw(t, http.DefaultClient, g.url+"/v1/completions",
		`{"model":"legacyl","prompt":"a","max_tokens":0,"echo":true,"logprobs":1}`, nil)
	rem, err := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
	if resp.StatusCode != 200 || err != nil {
		t.Fatalf("status %d, remaining %q: %s", resp.StatusCode, resp.Header.Get("X-Ratelimit-Remaining-Tokens"), b)
	}
	if est := 1000 - rem; est > 10 {
		t.Errorf("echo with max_tokens 0 and a 1-token prompt charged %d tokens up front, want the prompt only (a few)", est)
	}
	resp, b = postRaw(t, http.DefaultClient, g.url+"/v1/completions",
		`{"model":"legacyl","prompt":["a","b","c","d"],"max_tokens":0,"echo":true,"logprobs":1}`, nil)
	if resp.StatusCode != 200 {
		t.Errorf("a batch of 4 echo prompts with max_tokens 0: %d %s, want 200", resp.StatusCode, b)
	}
	// A negative cap is no count: the default stands in, as for none.
	resp, b = postRaw(t, http.DefaultClient, g.url+"/v1/completions",
		`{"model":"legacyl","prompt":"a","max_tokens":-1}`, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("max_tokens -1: %d %s", resp.StatusCode, b)
	}
	after, _ := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
	if used := rem - after; used < 256 {
		t.Errorf("max_tokens -1 charged %d up front, want default_max_tokens (256) or more", used)
	}
}
