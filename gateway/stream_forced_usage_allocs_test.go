//go:build !race

package gateway

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// startChoiceUsageSSEUpstream is startStaticSSEUpstream's stream with the usage on the
// last chunk with a choice, as Gemini's OpenAI endpoint sends it, and no usage-only
// chunk.
func startChoiceUsageSSEUpstream(tb testing.TB) string {
	tb.Helper()
	var body []byte
	for range 32 {
		body = append(body, `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":" word"},"finish_reason":null}]}`+"\n\n"...)
	}
	body = append(body, `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]`+choiceUsageMember+`}`+"\n\n"...)
	body = append(body, "data: [DONE]\n\n"...)
	return serveUpstream(tb, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetContentType("text/event-stream")
		ctx.Response.SetBodyRaw(body)
	})
}

const choiceUsageMember = `,"usage":{"prompt_tokens":20,"completion_tokens":32,"total_tokens":52}`

// TestForcedUsageOnChoiceChunkAllocs: taking the usage the gateway asked for out of a
// choice chunk costs a stream no allocation more than TestStreamAllocs's budget.
func TestForcedUsageOnChoiceChunkAllocs(t *testing.T) {
	s := newTestServer(t, benchConfig(startChoiceUsageSSEUpstream(t)))
	ctx := newProxyCtx([]byte(`{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	ctx.Request.Header.SetConnectionClose()
	sink := make([]byte, 4096)
	// The same stream to a client that asked for the usage is longer by it.
	asked := newProxyCtx([]byte(`{"model":"chat","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`))
	asked.Request.Header.SetConnectionClose()
	withUsage := streamOnce(t, s, asked, sink)
	if n, cut := streamOnce(t, s, ctx, sink), len(choiceUsageMember); n < 1000 || withUsage-n != cut {
		t.Fatalf("stream relayed %d bytes, %d with the usage asked for: want %d less, the usage member taken out", n, withUsage, cut)
	}
	const budget = 3
	if n := allocsPerRun(100, func() { streamOnce(t, s, ctx, sink) }); n > budget {
		t.Fatalf("%.1f allocations per stream, budget %d", n, budget)
	}
}

// BenchmarkProxyStreamChoiceUsage is BenchmarkProxyStream with the forced usage on a
// choice chunk, which the gateway takes out.
func BenchmarkProxyStreamChoiceUsage(b *testing.B) {
	s := newTestServer(b, benchConfig(startChoiceUsageSSEUpstream(b)))
	ctx := newProxyCtx([]byte(`{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	sink := make([]byte, 4096)
	streamOnce(b, s, ctx, sink)
	b.ReportAllocs()
	for b.Loop() {
		streamOnce(b, s, ctx, sink)
	}
}
