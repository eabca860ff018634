//go:build !race

package gateway

import (
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// pcCachedResp is benchChatResp as vLLM with prefix caching, or OpenAI, answers it: a
// part of the prompt came from the prompt cache.
var pcCachedResp = []byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"up-model","choices":[{"index":0,"message":{"role":"assistant","content":"Once upon a time there was a gateway."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":20,"completion_tokens":9,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":16,"audio_tokens":0}}}`)

// TestPromptCacheAllocs: an answer with cached tokens, priced, counted and logged,
// costs the request path no allocation more than TestAccessLogAllocs's budget.
func TestPromptCacheAllocs(t *testing.T) {
	up := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		ctx.Response.SetBodyRaw(pcCachedResp)
	})
	yaml := strings.Replace(benchConfig(up), "access_log: false", "access_log: true", 1)
	yaml = strings.Replace(yaml, "model: up-model}", "model: up-model, pricing: {input_per_million: 2, output_per_million: 8, cached_input_per_million: 0.5}}", 1)
	s := newTestServer(t, yaml)
	ctx := newProxyCtx(benchChatBody)
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	if u := s.rt.Load().backends["up"].Pricing; u.CachedInputPerMillion == nil {
		t.Fatal("the config's cached input price did not reach the backend")
	}
	const budget = 0
	if n := allocsPerRun(200, func() { proxyOnce(s, ctx) }); n > budget {
		t.Fatalf("%.1f allocations per request, budget %d", n, budget)
	}
}
