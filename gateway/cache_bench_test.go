package gateway

import (
	"testing"

	"github.com/valyala/fasthttp"
)

var benchEmbedResp = []byte(`{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0123,-0.0456,0.0789,0.0012,-0.0345,0.0678,-0.0901,0.0234]}],"model":"up-model","usage":{"prompt_tokens":5,"total_tokens":5}}`)

// startStaticCacheUpstream answers chat and embeddings with fixed bodies and no
// allocation of its own.
func startStaticCacheUpstream(tb testing.TB) string {
	return serveUpstream(tb, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		if string(ctx.Path()) == "/v1/embeddings" {
			ctx.Response.SetBodyRaw(benchEmbedResp)
			return
		}
		ctx.Response.SetBodyRaw(benchChatResp)
	})
}

// cacheBenchConfig is benchConfig with a cache on chat and an embeddings endpoint
// with one.
func cacheBenchConfig(upstream string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://` + upstream + `/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], cache: {ttl: 1h}}
  - {name: embed, type: embeddings, routes: [{backend: up}], cache: {ttl: 1h}}
logging: {level: error, access_log: false}
`
}

var benchEmbedBody = []byte(`{"model":"embed","input":["The quick brown fox jumps over the lazy dog."],"encoding_format":"float"}`)

func newEmbedCtx(body []byte) *fasthttp.RequestCtx {
	ctx := newProxyCtx(body)
	ctx.Request.SetRequestURI("/v1/embeddings")
	return ctx
}

// warmCache serves ctx once, which fills the cache, and checks the next is a hit.
func warmCache(tb testing.TB, s *Server, ctx *fasthttp.RequestCtx) {
	tb.Helper()
	proxyOnce(s, ctx)
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 || string(ctx.Response.Header.Peek("X-Tollgate-Cache")) != "hit" {
		tb.Fatalf("status %d, cache %q: %s", ctx.Response.StatusCode(), ctx.Response.Header.Peek("X-Tollgate-Cache"), ctx.Response.Body())
	}
}

// BenchmarkProxyChatCacheMiss is BenchmarkProxyChat on an endpoint with a cache that
// never holds the answer: a lookup, the upstream, the answer checked and stored.
func BenchmarkProxyChatCacheMiss(b *testing.B) {
	s := newTestServer(b, cacheBenchConfig(startStaticCacheUpstream(b)))
	cache := s.rt.Load().endpoints["chat"].cache
	ctx := newProxyCtx(benchChatBody)
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 {
		b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	b.ReportAllocs()
	for b.Loop() {
		cache.purge()
		proxyOnce(s, ctx)
	}
}

// BenchmarkProxyChatCacheHit is the chat request answered from the cache.
func BenchmarkProxyChatCacheHit(b *testing.B) {
	s := newTestServer(b, cacheBenchConfig(startStaticCacheUpstream(b)))
	ctx := newProxyCtx(benchChatBody)
	warmCache(b, s, ctx)
	b.ReportAllocs()
	for b.Loop() {
		proxyOnce(s, ctx)
	}
}

// BenchmarkProxyEmbeddingsCacheHit is an embeddings request answered from the cache.
func BenchmarkProxyEmbeddingsCacheHit(b *testing.B) {
	s := newTestServer(b, cacheBenchConfig(startStaticCacheUpstream(b)))
	ctx := newEmbedCtx(benchEmbedBody)
	warmCache(b, s, ctx)
	b.ReportAllocs()
	for b.Loop() {
		proxyOnce(s, ctx)
	}
}
