package gateway

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// rerankCharged posts body to the gateway's /v1/rerank and returns the tokens its
// limit was charged: the endpoint's only limit starts full at limit tokens a day (a
// refill of under 12 tokens a second for a limit of 10^6), so the remaining count the
// answer reports is the limit less this request's estimate.
func rerankCharged(t *testing.T, g *gw, body string, limit int64) int64 {
	t.Helper()
	req, _ := http.NewRequest("POST", g.url+"/v1/rerank", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, raw)
	}
	left, err := strconv.ParseInt(resp.Header.Get("X-Ratelimit-Remaining-Tokens"), 10, 64)
	if err != nil {
		t.Fatalf("no remaining tokens header: %v", resp.Header)
	}
	return limit - left
}

// rerankLimitedGateway is a gateway with one rerank endpoint, rank, under a token limit
// of 10^6 a day, in front of an upstream that answers every rerank with vLLM's shape.
func rerankLimitedGateway(t *testing.T) *gw {
	t.Helper()
	addr := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetContentType("application/json")
		ctx.SetBodyString(`{"id":"rerank-1","model":"up-model","usage":{"total_tokens":500},"results":[{"index":0,"document":{"text":"a","multi_modal":null},"relevance_score":0.5}]}`)
	})
	return startGateway(t, mockConfig(addr, "", `  - {name: rank, type: rerank, routes: [{backend: up}], limits: [{per: endpoint, tokens: 1000000, window: day}]}
`))
}

// A multimodal reranker (jina-reranker-m0 on vLLM, whose RerankRequest takes query:
// str | ScoreMultiModalParam) given an image as the query with 8 text documents: the
// image is charged 1,600 tokens once per document, as README has it, never its base64
// bytes at 4 a token (which made a 40 KB image ~72k tokens).
func TestRerankImageQueryEstimate(t *testing.T) {
	t.Parallel()
	g := rerankLimitedGateway(t)
	query := `{"content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,` + strings.Repeat("A", 40000) + `"}}]}`
	body := `{"model":"rank","query":` + query + `,"documents":["a","b","c","d","e","f","g","h"]}`
	charged := rerankCharged(t, g, body, 1000000)
	// The image once per document at 1,600 tokens, the documents' few bytes, 4 tokens a
	// pair: about 12,850. Twice that is a generous bound.
	if bound := int64(2 * 8 * 1600); charged > bound {
		t.Errorf("an estimate of %d tokens for an image query with 8 documents, want about %d (1,600 an image, once per document), at most %d",
			charged, 8*1600+8*4+10, bound)
	}
}

// vLLM's multimodal documents ({"content": [8 images]}) with a ~1,000-token text query:
// vLLM scores the query with each of the 8 images, so the estimate counts 8 documents,
// the query once each and 1,600 tokens an image.
func TestRerankMultimodalDocumentsEstimate(t *testing.T) {
	t.Parallel()
	g := rerankLimitedGateway(t)
	var parts []string
	for i := 0; i < 8; i++ {
		parts = append(parts, `{"type":"image_url","image_url":{"url":"https://example.com/`+strconv.Itoa(i)+`.png"}}`)
	}
	query := strings.Repeat("q", 4000)
	body := `{"model":"rank","query":"` + query + `","documents":{"content":[` + strings.Join(parts, ",") + `]}}`
	charged := rerankCharged(t, g, body, 1000000)
	// The query (1,000 tokens) with each of 8 documents, and each image at 1,600.
	if want := int64(8*1000 + 8*1600); charged < want {
		t.Errorf("an estimate of %d tokens for a 1,000-token query with 8 multimodal documents, want at least %d (the query once per document, 1,600 an image)",
			charged, want)
	}
}
