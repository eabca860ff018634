package gateway

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// estDropConfig is a gateway in front of mockllm --api anthropic: backend claude
// ($3 input, $15 output per million, $10 per thousand searches) has drop_params:
// [web_search_options], so no web search tool ever reaches it; endpoint nosearch
// routes to it alone. Each user has a budget of $0.15 a day (refilled at $0.0001 a
// day: what it loses in a test is what it was charged).
func estDropConfig(an string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 5s}
backends:
  claude:
    provider: anthropic
    base_url: "http://` + an + `/v1"
    model: ` + pcClaudeModel + `
    api_key: ` + pcClaudeKey + `
    timeout: 20s
    drop_params: [web_search_options]
    pricing: {input_per_million: 3, output_per_million: 15, web_search_per_thousand: 10}
endpoints:
  - {name: nosearch, type: chat, routes: [{backend: claude}], limits: [{per: user, usd: 0.0001, window: day, burst: 0.15}]}
logging: {level: error, access_log: false}
`
}

// TestUSDEstimateDroppedWebSearch: with drop_params: [web_search_options] on its
// Anthropic backend no search tool goes upstream, so a call sending
// search_context_size high is estimated without searches, and admitted with $0.09 left.
func TestUSDEstimateDroppedWebSearch(t *testing.T) {
	t.Parallel()
	mock, an := startMock(t, mockllm.Options{Model: pcClaudeModel, API: mockllm.APIAnthropic, APIKey: pcClaudeKey, MaxTokens: 12, Seed: 11})
	g := startGateway(t, estDropConfig(an))
	c := g.client()
	ctx := context.Background()
	const budget = 150_000_000 // $0.15
	const maxTokens = 20
	params := func(user string) openai.ChatCompletionNewParams {
		return openai.ChatCompletionNewParams{Model: "nosearch", User: openai.String(user), Messages: userMsg("What is new in gateway routing?"),
			MaxTokens: openai.Int(maxTokens), WebSearchOptions: openai.ChatCompletionNewParamsWebSearchOptions{SearchContextSize: "high"}}
	}

	// A fresh user: the admission estimate is what the remaining header lost.
	var resp *http.Response
	if _, err := c.Chat.Completions.New(ctx, params("est-a"), option.WithResponseInto(&resp)); err != nil {
		t.Fatal(err)
	}
	if sent := mock.Stats().LastBody; bytes.Contains(sent, []byte("web_search")) {
		t.Fatalf("precondition: drop_params left the web search in the upstream body: %s", sent)
	}
	in := int64(len(`[{"role":"user","content":"What is new in gateway routing?"}]`)/4 + 1)
	want := in*3_000 + maxTokens*15_000 // no search can run
	if got := budget - nanoOf(t, resp.Header, "X-Ratelimit-Remaining-Usd"); got != want {
		t.Errorf("admission estimate %d nano-dollars (%d searches' worth more), want %d: the upstream is never sent a search tool",
			got, (got-want)/10_000_000, want)
	}

	// Another user with about $0.09 left after three long calls without web search
	// (about $0.02 each, settled): the call is refused.
	for i := 0; i < 3; i++ {
		if _, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "nosearch", User: openai.String("est-b"),
			Messages: userMsg("Summarise: " + string(bytes.Repeat([]byte("routing news "), 2000))), MaxTokens: openai.Int(maxTokens)}); err != nil {
			t.Fatal(err)
		}
	}
	answered(t, g, "nosearch", 4)
	_, err := c.Chat.Completions.New(ctx, params("est-b"), option.WithResponseInto(&resp))
	var apiErr *openai.Error
	if errors.As(err, &apiErr) && apiErr.StatusCode == 429 {
		t.Errorf("429 %q with %s left, want the call admitted: without a search tool it costs about $0.0004",
			apiErr.Message, apiErr.Response.Header.Get("X-Ratelimit-Remaining-Usd"))
	} else if err != nil {
		t.Fatal(err)
	}
}
