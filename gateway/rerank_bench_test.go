package gateway

import (
	"testing"

	"github.com/valyala/fasthttp"
)

var (
	benchRerankBody = []byte(`{"model":"rank","query":"Which gateway enforces limits across replicas?","documents":["Tollgate shares limits through Redis.","Bananas are yellow.","A gateway sits in front of model servers.","Limits hold across every replica.","Nothing here.","Tokens are counted twice.","Canaries step up slowly.","Redis keeps the buckets."],"top_n":3}`)
	benchRerankResp = []byte(`{"id":"rerank-0a1b2c3d","model":"up-model","usage":{"total_tokens":132},"results":[{"index":3,"document":{"text":"Limits hold across every replica.","multi_modal":null},"relevance_score":0.91},{"index":0,"document":{"text":"Tollgate shares limits through Redis.","multi_modal":null},"relevance_score":0.74},{"index":2,"document":{"text":"A gateway sits in front of model servers.","multi_modal":null},"relevance_score":0.42}]}`)
)

// rerankBenchConfig is benchConfig with a rerank endpoint under a token limit, whose
// estimate counts the query once a document.
func rerankBenchConfig(upstream string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://` + upstream + `/v1", model: up-model}
endpoints:
  - {name: rank, type: rerank, routes: [{backend: up}], limits: [{per: endpoint, tokens: 1000000000000, window: minute}]}
logging: {level: error, access_log: false}
`
}

// newRerankServer is a gateway on rerankBenchConfig in front of an upstream that
// answers every rerank with benchRerankResp.
func newRerankServer(tb testing.TB) *Server {
	return newTestServer(tb, rerankBenchConfig(serveUpstream(tb, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		ctx.Response.SetBodyRaw(benchRerankResp)
	})))
}

// BenchmarkProxyRerank is a rerank of 8 documents through the request path, with a
// token limit charged its estimate and settled with total_tokens.
func BenchmarkProxyRerank(b *testing.B) {
	s := newRerankServer(b)
	ctx := newProxyCtx(benchRerankBody)
	ctx.Request.SetRequestURI("/v1/rerank")
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 {
		b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	b.ReportAllocs()
	for b.Loop() {
		proxyOnce(s, ctx)
	}
}
