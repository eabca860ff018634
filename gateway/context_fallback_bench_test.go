package gateway

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// benchContextRefusal is vLLM's answer to a prompt over its window.
var benchContextRefusal = []byte(`{"error":{"message":"This model's maximum context length is 8192 tokens. However, your request has 9000 input tokens. Please reduce the length of the input messages.","type":"BadRequestError","param":null,"code":400}}`)

// startStaticRefusingUpstream answers every request with benchContextRefusal.
func startStaticRefusingUpstream(tb testing.TB) string {
	return serveUpstream(tb, func(ctx *fasthttp.RequestCtx) {
		ctx.SetStatusCode(fasthttp.StatusBadRequest)
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		ctx.Response.SetBodyRaw(benchContextRefusal)
	})
}

// ctxBenchConfig is a chat endpoint in front of route with two priced context
// fallbacks, the first at fallback, and a spend budget that never runs out, so that
// the estimate reads every backend's prices.
func ctxBenchConfig(route, fallback string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://` + route + `/v1", model: up-model, pricing: {input_per_million: 0.1, output_per_million: 0.2}}
  large: {provider: openai, base_url: "http://` + fallback + `/v1", model: up-model, pricing: {input_per_million: 3, output_per_million: 15}}
  larger: {provider: openai, base_url: "http://` + fallback + `/v1", model: up-model, pricing: {input_per_million: 5, output_per_million: 25}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], context_fallbacks: [large, larger], limits: [{per: endpoint, usd: 1000000, window: day}]}
logging: {level: error, access_log: false}
`
}

// BenchmarkProxyChatContextFallbacks is BenchmarkProxyChat on an endpoint with context
// fallbacks and a spend budget, whose requests fit: what the feature costs a request
// that hits no context error.
func BenchmarkProxyChatContextFallbacks(b *testing.B) {
	up := startStaticUpstream(b)
	s := newTestServer(b, ctxBenchConfig(up, up))
	ctx := newProxyCtx(benchChatBody)
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 {
		b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	b.ReportAllocs()
	for b.Loop() {
		proxyOnce(s, ctx)
	}
}

// BenchmarkContextFallback is a request the route refuses for its context window and
// the first context fallback answers: two upstream calls, the refusal rewritten and
// kept.
func BenchmarkContextFallback(b *testing.B) {
	s := newTestServer(b, ctxBenchConfig(startStaticRefusingUpstream(b), startStaticUpstream(b)))
	ctx := newProxyCtx(benchChatBody)
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 {
		b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	b.ReportAllocs()
	for b.Loop() {
		proxyOnce(s, ctx)
	}
}
