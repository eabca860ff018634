package gateway

import (
	"bytes"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

var (
	// benchCountBody is a Messages API token count as the Anthropic SDKs send it.
	benchCountBody = []byte(`{"model":"chat","system":[{"type":"text","text":"You are a helpful assistant for platform engineers."}],"messages":[{"role":"user","content":[{"type":"text","text":"Which gateway enforces limits across replicas, and how?"}]}]}`)
	// benchTokenizeResp is vLLM's answer to its chat form.
	benchTokenizeResp = []byte(`{"count":31,"max_model_len":32768,"tokens":[151644,8948,198,2610,525,264,10950,17847,369,5339,24198,13,151645,198,151644,872,198,23085,28795,662,48225,13388,3941,80801,11,323,1246,30,151645,198,151644],"token_strs":null}`)
)

// bridgedCountServer is messagesBenchConfig on a backend with messages_api: chat, in
// front of an upstream whose /tokenize answers benchTokenizeResp.
func bridgedCountServer(tb testing.TB) *Server {
	up := serveUpstream(tb, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		ctx.Response.SetBodyRaw(benchTokenizeResp)
	})
	return newTestServer(tb, strings.Replace(messagesBenchConfig(up), "model: up-model}", "model: up-model, messages_api: chat}", 1))
}

func newCountCtx(tb testing.TB, s *Server) *fasthttp.RequestCtx {
	ctx := newProxyCtx(benchCountBody)
	ctx.Request.SetRequestURI("/v1/messages/count_tokens")
	ctx.Request.Header.Set("anthropic-version", "2023-06-01")
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 || !bytes.Equal(ctx.Response.Body(), []byte(`{"input_tokens":31}`)) {
		tb.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	return ctx
}

// BenchmarkProxyMessagesCountBridged is a Messages API token count through a backend
// without that API: the body translated to vLLM's tokenize request, its count to
// {"input_tokens": N}.
func BenchmarkProxyMessagesCountBridged(b *testing.B) {
	s := bridgedCountServer(b)
	ctx := newCountCtx(b, s)
	b.ReportAllocs()
	for b.Loop() {
		proxyOnce(s, ctx)
	}
}
