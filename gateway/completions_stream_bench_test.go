package gateway

import (
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// startStaticCompletionsSSEUpstream answers every request with the same 35-event legacy
// completions stream, as vLLM writes it: 32 tokens, the finish_reason, the usage.
func startStaticCompletionsSSEUpstream(tb testing.TB) string {
	tb.Helper()
	var body []byte
	for range 33 {
		body = append(body, `data: {"id":"cmpl-c","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":" word","logprobs":null,"finish_reason":null,"stop_reason":null}]}`+"\n\n"...)
	}
	body = append(body, `data: {"id":"cmpl-c","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":"","logprobs":null,"finish_reason":"stop","stop_reason":null}]}`+"\n\n"...)
	body = append(body, `data: {"id":"cmpl-c","object":"text_completion","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":20,"completion_tokens":32,"total_tokens":52}}`+"\n\n"...)
	body = append(body, "data: [DONE]\n\n"...)
	return serveUpstream(tb, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetContentType("text/event-stream")
		ctx.Response.SetBodyRaw(body)
	})
}

// BenchmarkProxyCompletionsStream relays a 35-event legacy completions stream;
// allocations are per stream.
func BenchmarkProxyCompletionsStream(b *testing.B) {
	cfg := strings.Replace(benchConfig(startStaticCompletionsSSEUpstream(b)), "type: chat", "type: completions", 1)
	s := newTestServer(b, cfg)
	ctx := newProxyCtx([]byte(`{"model":"chat","stream":true,"prompt":"hi"}`))
	ctx.Request.SetRequestURI("/v1/completions")
	sink := make([]byte, 4096)
	streamOnce(b, s, ctx, sink)
	b.ReportAllocs()
	for b.Loop() {
		streamOnce(b, s, ctx, sink)
	}
}
