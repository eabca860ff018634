package gateway

import (
	"bytes"
	"testing"

	"github.com/valyala/fasthttp"
)

var (
	benchRerankBody = []byte(`{"model":"rank","query":"Which gateway enforces limits across replicas?","documents":["Tollgate shares limits through Redis.","Bananas are yellow.","A gateway sits in front of model servers.","Limits hold across every replica.","Nothing here.","Tokens are counted twice.","Canaries step up slowly.","Redis keeps the buckets."],"top_n":3}`)
	// benchScoreBody is a score call of the same query with the same 8 documents
	// (1:N), as a RAG framework sends it to vLLM's /score.
	benchScoreBody  = []byte(`{"model":"rank","queries":"Which gateway enforces limits across replicas?","documents":["Tollgate shares limits through Redis.","Bananas are yellow.","A gateway sits in front of model servers.","Limits hold across every replica.","Nothing here.","Tokens are counted twice.","Canaries step up slowly.","Redis keeps the buckets."],"truncate_prompt_tokens":512}`)
	benchScoreResp  = []byte(`{"id":"score-0a1b2c3d","object":"list","created":1700000000,"model":"up-model","data":[{"index":0,"object":"score","score":0.74},{"index":1,"object":"score","score":0.02},{"index":2,"object":"score","score":0.42},{"index":3,"object":"score","score":0.91},{"index":4,"object":"score","score":0.01},{"index":5,"object":"score","score":0.05},{"index":6,"object":"score","score":0.03},{"index":7,"object":"score","score":0.33}],"usage":{"prompt_tokens":132,"total_tokens":132,"completion_tokens":0,"prompt_tokens_details":null}}`)
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
// answers every rerank with benchRerankResp, every score call with benchScoreResp.
func newRerankServer(tb testing.TB) *Server {
	return newTestServer(tb, rerankBenchConfig(serveUpstream(tb, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		if string(ctx.Path()) == "/v1/score" {
			ctx.Response.SetBodyRaw(benchScoreResp)
			return
		}
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

// BenchmarkProxyScore is a score call of one query with 8 documents (1:N) through the
// request path, on a rerank endpoint, with a token limit charged its estimate and
// settled with prompt_tokens.
func BenchmarkProxyScore(b *testing.B) {
	s := newRerankServer(b)
	ctx := newProxyCtx(benchScoreBody)
	ctx.Request.SetRequestURI("/score")
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 || !bytes.Contains(ctx.Response.Body(), []byte(`"object":"score"`)) {
		b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	b.ReportAllocs()
	for b.Loop() {
		proxyOnce(s, ctx)
	}
}
