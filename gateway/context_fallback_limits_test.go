package gateway

import (
	"context"
	"net/http"
	"strconv"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// A request on an endpoint with context fallbacks is estimated at the dearest backend
// it may reach, a context fallback included, and settled at what the backend that
// served it cost (the route's refusal costs nothing): the spend budget's bucket loses
// the cost tollgate_cost_usd_total counts for the context fallback, the token limit's
// the tokens its answer counted.
// Not t.Parallel: the budget refills ~1 nano-dollar a second; withinNano allows 2.
func TestContextFallbackLimits(t *testing.T) {
	u := startCtxUpstreams(t)
	limits := `    limits: [{per: endpoint, ` + slowBudget + `}, {per: endpoint, tokens: 1000, window: day, burst: 1000000}]
`
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 1MiB}
backends:
  small: {provider: openai, base_url: "http://`+u.smallAddr+`/v1", model: llama-8k, pricing: {input_per_million: 0.01, output_per_million: 0.01}}
  large: {provider: openai, base_url: "http://`+u.largeAddr+`/v1", model: llama-128k, pricing: {input_per_million: 3, output_per_million: 15}}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: small}]
    context_fallbacks: [large]
`+limits+`  - name: bare
    type: chat
    routes: [{backend: small}]
`+limits+`logging: {level: error, access_log: false}
`)
	c := g.client()
	ctx := context.Background()
	const budget, tokens = 10_000_000, 1_000_000
	call := func(endpoint, prompt string) (usd, tok int64, res *openai.ChatCompletion, resp *http.Response) {
		t.Helper()
		res, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: endpoint, Messages: userMsg(prompt), MaxTokens: openai.Int(4)}, option.WithResponseInto(&resp))
		if err != nil {
			t.Fatal(err)
		}
		tok, err = strconv.ParseInt(resp.Header.Get("X-Ratelimit-Remaining-Tokens"), 10, 64)
		if err != nil {
			t.Fatalf("x-ratelimit-remaining-tokens: %v", err)
		}
		return nanoOf(t, resp.Header, "X-Ratelimit-Remaining-Usd"), tok, res, resp
	}

	// The same short prompt, on an endpoint without context fallbacks and on one with:
	// the one is estimated at small's prices, the other at large's.
	bareUSD, _, _, _ := call("bare", "hi")
	usd, _, _, resp := call("chat", "hi")
	if b := resp.Header.Get("X-Tollgate-Backend"); b != "small" {
		t.Fatalf("a short prompt served by %q, want small", b)
	}
	if est := budget - bareUSD; est > 1_000 {
		t.Errorf("without context fallbacks: estimate %d nano-dollars, want small's prices (under 1000)", est)
	}
	// 4 output tokens at large's 15 a million are 60000.
	if est := budget - usd; est < 4*15_000 {
		t.Errorf("with a context fallback: estimate %d nano-dollars, below what large may charge for max_tokens (60000)", est)
	}

	answered(t, g, "chat", 1)
	smallCost := costNano(t, g, "small")
	usd1, tok1, res, resp := call("chat", ctxLongPrompt)
	if b := resp.Header.Get("X-Tollgate-Backend"); b != "large" {
		t.Fatalf("a long prompt served by %q, want large", b)
	}
	answered(t, g, "chat", 2)
	cost := costNano(t, g, "large")
	if want := float64(res.Usage.PromptTokens)*3_000 + float64(res.Usage.CompletionTokens)*15_000; !withinNano(cost, want) {
		t.Fatalf("large's cost %v, want %v at its prices", cost, want)
	}
	if got := costNano(t, g, "small"); got != smallCost {
		t.Errorf("small's refusal cost %v", got-smallCost)
	}
	// The same request again holds the same estimate: what the buckets lost in
	// between is what the first one settled at.
	usd2, tok2, _, _ := call("chat", ctxLongPrompt)
	if got := float64(usd1 - usd2); !withinNano(got, cost) {
		t.Errorf("the budget lost %v for the request large served, the cost counter says %v", got, cost)
	}
	// To a token: the refill meanwhile may tip the remaining header's floor.
	if got := tok1 - tok2; got < res.Usage.TotalTokens-1 || got > res.Usage.TotalTokens {
		t.Errorf("the token limit lost %d for the request large served, its answer counted %d", got, res.Usage.TotalTokens)
	}
	if tok1 >= tokens || tok2 >= tok1 {
		t.Errorf("remaining tokens %d then %d of %d", tok1, tok2, tokens)
	}
}
