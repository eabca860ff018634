package gateway

import (
	"context"
	"errors"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// overdrawnBudgetConfig is a gateway before the mockllm at addr: endpoint "paid" on a
// backend priced $1 a million input tokens and $1000 a million output tokens (1e6
// nano-dollars an output token), whose default_max_tokens is 1, and endpoint "free"
// on an unpriced backend; key sk-budget-a (team-a) has a $0.01 daily budget.
func overdrawnBudgetConfig(addr, limiterYAML string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 5s}
backends:
  paid: {provider: openai, base_url: "http://` + addr + `/v1", model: up-model, timeout: 20s,
         pricing: {input_per_million: 1, output_per_million: 1000}}
  free: {provider: openai, base_url: "http://` + addr + `/v1", model: up-model, timeout: 20s}
endpoints:
  - {name: paid, type: chat, routes: [{backend: paid}], default_max_tokens: 1}
  - {name: free, type: chat, routes: [{backend: free}]}
auth:
  mode: keys
  keys:
    - {name: team-a, key: sk-budget-a, limits: [{per: api_key, usd: 0.01, window: day}]}
` + limiterYAML + `logging: {level: error, access_log: false}
`
}

// A key's $0.01 daily budget overdrawn by an answer dearer than its estimate (16
// output tokens where default_max_tokens estimated 1): its next call, to an endpoint
// whose backend has no price (a self-hosted vLLM), costs nothing and is served, in
// both stores; a budget only spent to zero does the same (TestUSDBudgetRefusalSDK).
func TestUSDOverdrawnBudgetServesFreeCalls(t *testing.T) {
	t.Parallel()
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			t.Parallel()
			lim := ""
			if store == "redis" {
				rds := redistest.Start(t)
				lim = `limiter: {store: redis, redis: {url: "` + rds.URL() + `"}}
`
			}
			_, addr := startMock(t, mockllm.Options{MaxTokens: 16, Seed: 4})
			g := startGateway(t, overdrawnBudgetConfig(addr, lim))
			c := g.client(option.WithAPIKey("sk-budget-a"))
			ctx := context.Background()
			res, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "paid", Messages: userMsg("Spend it all.")},
				option.WithHeader("x-mock-tokens", "16"))
			if err != nil {
				t.Fatal(err)
			}
			if res.Usage.CompletionTokens < 11 {
				t.Fatalf("the priced answer had %d output tokens; the test needs more than 10 to overdraw $0.01", res.Usage.CompletionTokens)
			}
			answered(t, g, "paid", 1)
			_, err = c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
				Model: "free", Messages: userMsg("hi"), MaxTokens: openai.Int(1),
			})
			var apiErr *openai.Error
			if errors.As(err, &apiErr) {
				t.Fatalf("%d %q on the free endpoint after the budget was overdrawn; want 200: a call costing $0 is not refused by a spend budget",
					apiErr.StatusCode, apiErr.Message)
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}
