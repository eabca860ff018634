package gateway

import (
	"bytes"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/internal/redistest"
)

// redisCacheBenchConfig is cacheBenchConfig with both caches kept in the Redis at
// redisURL.
func redisCacheBenchConfig(upstream, redisURL string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://` + upstream + `/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], cache: {ttl: 1h, store: redis}}
  - {name: embed, type: embeddings, routes: [{backend: up}], cache: {ttl: 1h, store: redis}}
limiter: {redis: {url: "` + redisURL + `"}, timeout: 1s}
logging: {level: error, access_log: false}
`
}

// warmRedisCache serves ctx until its answer is in Redis and the next is a hit.
func warmRedisCache(tb testing.TB, s *Server, ctx *fasthttp.RequestCtx) {
	tb.Helper()
	proxyOnce(s, ctx)
	for deadline := time.Now().Add(10 * time.Second); ; {
		proxyOnce(s, ctx)
		if string(ctx.Response.Header.Peek("X-Tollgate-Cache")) == "hit" {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("status %d, cache %q: %s", ctx.Response.StatusCode(), ctx.Response.Header.Peek("X-Tollgate-Cache"), ctx.Response.Body())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// BenchmarkProxyChatRedisCacheHit is BenchmarkProxyChatCacheHit with the cache in a
// real redis-server on loopback: the lookup script's round trip, and the answer read
// from its reply.
func BenchmarkProxyChatRedisCacheHit(b *testing.B) {
	rds := redistest.Start(b)
	s := newTestServer(b, redisCacheBenchConfig(startStaticCacheUpstream(b), rds.URL()))
	ctx := newProxyCtx(benchChatBody)
	warmRedisCache(b, s, ctx)
	b.ReportAllocs()
	for b.Loop() {
		proxyOnce(s, ctx)
	}
	if string(ctx.Response.Header.Peek("X-Tollgate-Cache")) != "hit" {
		b.Fatalf("cache %q", ctx.Response.Header.Peek("X-Tollgate-Cache"))
	}
}

// BenchmarkProxyChatRedisCacheMiss is a miss on a Redis cache: the lookup, the
// upstream, and the answer queued for the workers, which write it beside the loop
// (each iteration's body is another, written in place).
func BenchmarkProxyChatRedisCacheMiss(b *testing.B) {
	rds := redistest.Start(b)
	s := newTestServer(b, redisCacheBenchConfig(startStaticCacheUpstream(b), rds.URL()))
	ctx := newProxyCtx([]byte(`{"model":"chat","messages":[{"role":"user","content":"miss 0000000000"}],"max_tokens":64}`))
	body := ctx.Request.Body()
	digits := body[bytes.Index(body, []byte("0000000000")):][:10]
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 || string(ctx.Response.Header.Peek("X-Tollgate-Cache")) != "miss" {
		b.Fatalf("status %d, cache %q: %s", ctx.Response.StatusCode(), ctx.Response.Header.Peek("X-Tollgate-Cache"), ctx.Response.Body())
	}
	n := uint64(1)
	b.ReportAllocs()
	for b.Loop() {
		for i, v := 9, n; i >= 0; i, v = i-1, v/10 {
			digits[i] = byte('0' + v%10)
		}
		n++
		proxyOnce(s, ctx)
	}
	if string(ctx.Response.Header.Peek("X-Tollgate-Cache")) != "miss" {
		b.Fatalf("cache %q", ctx.Response.Header.Peek("X-Tollgate-Cache"))
	}
}
