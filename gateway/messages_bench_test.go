package gateway

import (
	"bytes"
	"testing"

	"github.com/valyala/fasthttp"
)

var (
	// benchMessagesBody is a Messages API call as the Anthropic SDKs send it: a system
	// prompt, a user turn in text blocks, metadata naming the end user.
	benchMessagesBody = []byte(`{"model":"chat","max_tokens":256,"system":[{"type":"text","text":"You are a helpful assistant for platform engineers."}],"messages":[{"role":"user","content":[{"type":"text","text":"Which gateway enforces limits across replicas, and how?"}]}],"metadata":{"user_id":"user-42"}}`)
	benchMessagesResp = []byte(`{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"up-model","content":[{"type":"text","text":"Tollgate keeps its token buckets in Redis, so every replica draws on one."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":42,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":18}}`)
)

// messagesBenchConfig is a chat endpoint under a token limit in front of upstream.
func messagesBenchConfig(upstream string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://` + upstream + `/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], limits: [{per: endpoint, tokens: 1000000000000, window: minute}]}
logging: {level: error, access_log: false}
`
}

// newMessagesServer is a gateway on messagesBenchConfig in front of an upstream that
// answers every Messages API call with benchMessagesResp.
func newMessagesServer(tb testing.TB) *Server {
	return newTestServer(tb, messagesBenchConfig(serveUpstream(tb, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		ctx.Response.SetBodyRaw(benchMessagesResp)
	})))
}

func newMessagesCtx(tb testing.TB, s *Server) *fasthttp.RequestCtx {
	ctx := newProxyCtx(benchMessagesBody)
	ctx.Request.SetRequestURI("/v1/messages")
	ctx.Request.Header.Set("anthropic-version", "2023-06-01")
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 || !bytes.Contains(ctx.Response.Body(), []byte(`"type":"message"`)) {
		tb.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	return ctx
}

// BenchmarkProxyMessages is a Messages API call through the request path, with a
// token limit charged its estimate and settled with the answer's usage.
func BenchmarkProxyMessages(b *testing.B) {
	s := newMessagesServer(b)
	ctx := newMessagesCtx(b, s)
	b.ReportAllocs()
	for b.Loop() {
		proxyOnce(s, ctx)
	}
}
