package gateway

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"

	"github.com/tollgate/tollgate/providers"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// ueConfig is a gateway in front of mockllm --api anthropic (backend claude, endpoint
// claude) priced with cache writes and web searches, its priority tier dearer in each
// (dearest: input $6, output $30, a cache write $12 (the tier's one-hour price) per
// million tokens, $20 per thousand searches), and of a vLLM-like mockllm (backend oa,
// endpoint oa) whose write price nothing charges (its answers report no writes); each
// endpoint has a $1 budget per user.
func ueConfig(anthropicAddr, openaiAddr string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 5s}
backends:
  claude:
    provider: anthropic
    base_url: "http://` + anthropicAddr + `/v1"
    model: ` + pcClaudeModel + `
    api_key: ` + pcClaudeKey + `
    timeout: 20s
    pricing:
      input_per_million: 3
      output_per_million: 15
      cache_write_per_million: 3.75
      cache_write_1h_per_million: 6
      web_search_per_thousand: 10
      tiers:
        priority: {input_per_million: 6, output_per_million: 30, cache_write_1h_per_million: 12, web_search_per_thousand: 20}
  oa: {provider: openai, base_url: "http://` + openaiAddr + `/v1", model: up-model, timeout: 20s,
       pricing: {input_per_million: 1, output_per_million: 2, cache_write_per_million: 100}}
endpoints:
  - {name: claude, type: chat, routes: [{backend: claude}], limits: [{per: user, usd: 1, window: day}]}
  - {name: oa, type: chat, routes: [{backend: oa}], limits: [{per: user, usd: 1, window: day}]}
logging: {level: error, access_log: false}
`
}

// The usd estimate of a request is, to the nano-dollar, its prompt estimate (4 bytes a
// token, plus one) at the dearest input price, or at the dearest cache-write price
// when it marks anything for the prompt cache, its max_tokens at the dearest output
// price, and the searches its web search is bounded to at the dearest search price
// (tiers included); a search without a size adds none, and an OpenAI-compatible
// backend's write price does not count. Each request is its user's first, so the
// remaining header is the full budget less its estimate.
func TestUSDEstimateCacheWritesAndSearches(t *testing.T) {
	t.Parallel()
	_, an := startMock(t, mockllm.Options{Model: pcClaudeModel, API: mockllm.APIAnthropic, APIKey: pcClaudeKey, MaxTokens: 12, Seed: 11})
	_, oa := startMock(t, mockllm.Options{MaxTokens: 12, Seed: 11})
	g := startGateway(t, ueConfig(an, oa))
	c := g.client()
	ctx := context.Background()
	const budget = 1_000_000_000 // $1
	const maxTokens = 20
	plain := `[{"role":"user","content":"What is new in gateway routing this week?"}]`
	marked := `[{"role":"user","content":"What is new in gateway routing this week?","cache_control":{"type":"ephemeral"}}]`
	markedPart := `[{"role":"user","content":[{"type":"text","text":"What is new?","Cache_Control":{"type":"ephemeral","ttl":"1h"}}]}]`
	cases := []struct {
		name, endpoint, messages, extra string
		// prompt, output: nano-dollars a token; searches: the bound, at $0.02 each.
		prompt, output, searches int64
	}{
		{"plain", "claude", plain, ``, 6_000, 30_000, 0},
		{"a message marked for the cache", "claude", marked, ``, 12_000, 30_000, 0},
		{"a part marked, another case", "claude", markedPart, ``, 12_000, 30_000, 0},
		{"web search high", "claude", plain, `,"web_search_options":{"search_context_size":"high"}`, 6_000, 30_000, 10},
		{"web search low, marked", "claude", marked, `,"web_search_options":{"search_context_size":"low"}`, 12_000, 30_000, 1},
		{"web search without a size", "claude", plain, `,"web_search_options":{}`, 6_000, 30_000, 0},
		{"openai backend, marked", "oa", marked, ``, 1_000, 2_000, 0},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := `{"model":"` + tc.endpoint + `","user":"ue-` + strconv.Itoa(i) + `","max_tokens":` + strconv.Itoa(maxTokens) +
				`,"messages":` + tc.messages + tc.extra + `}`
			var resp *http.Response
			if _, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{},
				option.WithRequestBody("application/json", []byte(body)), option.WithResponseInto(&resp)); err != nil {
				t.Fatal(err)
			}
			in := int64(len(tc.messages)/4 + 1)
			want := in*tc.prompt + maxTokens*tc.output + tc.searches*20_000_000
			if got := budget - nanoOf(t, resp.Header, "X-Ratelimit-Remaining-Usd"); got != want {
				t.Fatalf("estimate %d nano-dollars, want %d (%d prompt tokens at %d, %d at %d, %d searches)",
					got, want, in, tc.prompt, maxTokens, tc.output, tc.searches)
			}
		})
	}

	// A Responses API call through the bridge: its web_search tool's size bounds it.
	t.Run("responses web_search medium", func(t *testing.T) {
		const input = "What is new in gateway routing?"
		var resp *http.Response
		_, err := c.Responses.New(ctx, responses.ResponseNewParams{
			Model:           "claude",
			Input:           responses.ResponseNewParamsInputUnion{OfString: openai.String(input)},
			MaxOutputTokens: openai.Int(maxTokens),
			User:            openai.String("ue-responses"),
			Tools:           []responses.ToolUnionParam{{OfWebSearch: &responses.WebSearchToolParam{Type: responses.WebSearchToolTypeWebSearch, SearchContextSize: responses.WebSearchToolSearchContextSizeMedium}}},
		}, option.WithResponseInto(&resp))
		if err != nil {
			t.Fatal(err)
		}
		in := int64(len(strconv.Quote(input))/4 + 1)
		want := in*6_000 + maxTokens*30_000 + 5*20_000_000
		if got := budget - nanoOf(t, resp.Header, "X-Ratelimit-Remaining-Usd"); got != want {
			t.Fatalf("estimate %d nano-dollars, want %d", got, want)
		}
	})
}

// usdSearchConfig is a gateway in front of mockllm --api anthropic (endpoint claude),
// priced as Claude Sonnet 4.5 with web search and cache writes ($3 input, $15 output,
// $3.75 a cache write per million tokens, $0.01 a search), and a free endpoint on a
// vLLM-like mockllm, with key sk-usd-secret (team-a) on a budget of $0.12 (slowBudget's
// refill).
func usdSearchConfig(anthropicAddr, openaiAddr string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 5s}
backends:
  claude:
    provider: anthropic
    base_url: "http://` + anthropicAddr + `/v1"
    model: ` + pcClaudeModel + `
    api_key: ` + pcClaudeKey + `
    timeout: 20s
    pricing: {input_per_million: 3, output_per_million: 15, cache_write_per_million: 3.75, web_search_per_thousand: 10}
  free: {provider: openai, base_url: "http://` + openaiAddr + `/v1", model: up-model, timeout: 20s}
endpoints:
  - {name: claude, type: chat, routes: [{backend: claude}]}
  - {name: free, type: chat, routes: [{backend: free}]}
auth:
  mode: keys
  keys:
    - {name: team-a, key: sk-usd-secret, limits: [{per: api_key, usd: 0.0001, window: day, burst: 0.12}]}
logging: {level: error, access_log: false}
`
}

// A request whose web search is bounded to more than the budget has left is refused
// before any search runs, while the same request without the tool, or with a lower
// bound, is admitted; those admitted settle at exactly the cost the cost counter
// adds, their searches and cache writes included.
func TestUSDEstimateSearchBoundRefused(t *testing.T) {
	t.Parallel()
	_, an := startMock(t, mockllm.Options{Model: pcClaudeModel, API: mockllm.APIAnthropic, APIKey: pcClaudeKey, MaxTokens: 12, Seed: 11})
	_, oa := startMock(t, mockllm.Options{MaxTokens: 12, Seed: 11})
	g := startGateway(t, usdSearchConfig(an, oa))
	c := usdClient(g)
	ctx := context.Background()
	const budget = 120_000_000 // $0.12
	if got := usdProbe(t, g); got != budget {
		t.Fatalf("a full budget: %d remaining, want %d", got, budget)
	}
	params := func(size string) openai.ChatCompletionNewParams {
		p := openai.ChatCompletionNewParams{Model: "claude", Messages: userMsg("What is new in gateway routing?"), MaxTokens: openai.Int(16)}
		if size != "" {
			p.WebSearchOptions = openai.ChatCompletionNewParamsWebSearchOptions{SearchContextSize: size}
		}
		return p
	}
	start := time.Now()
	spent, counted, paid := float64(0), float64(0), float64(0)
	// step checks what the budget lost against the cost counter after a request on
	// claude: to the nano-dollar, but for slowBudget's refill since the first charge.
	step := func(what string) {
		t.Helper()
		paid++
		answered(t, g, "claude", paid)
		now := costNano(t, g, "claude")
		spent += now - counted
		counted = now
		got := float64(budget - usdProbe(t, g))
		if refill := 1.2 * time.Since(start).Seconds(); got > spent+2 || got < spent-2-refill {
			t.Fatalf("%s: the budget lost %v nano-dollars, the cost counter says %v", what, got, spent)
		}
	}
	// search runs a request of search_context_size size (none for ""), and checks its
	// cost: its tokens, the searches it ran and the cache writes cached says.
	search := func(size string, searches, cached int64, opts ...option.RequestOption) {
		t.Helper()
		before := costNano(t, g, "claude")
		res, err := c.Chat.Completions.New(ctx, params(size), opts...)
		if err != nil {
			t.Fatalf("search_context_size %q: %v", size, err)
		}
		step("search_context_size " + size)
		u := res.Usage
		want := float64(u.PromptTokens-cached)*3_000 + float64(cached)*3_750 + float64(u.CompletionTokens)*15_000 + float64(searches)*10_000_000
		if got := costNano(t, g, "claude") - before; !withinNano(got, want) {
			t.Fatalf("search_context_size %q cost %v nano-dollars, want %v (%d searches, %d tokens written)", size, got, want, searches, cached)
		}
	}

	// Medium: up to 5 searches, $0.05 and the tokens; the answer runs two (mockllm's).
	search("medium", 2, 0)
	search("medium", 2, 0)
	// About $0.08 left: high, up to 10 searches ($0.10), does not fit.
	before := usdProbe(t, g)
	if before >= 100_000_000 || before < 50_000_000 {
		t.Fatalf("%d left, want between $0.05 and $0.10", before)
	}
	_, err := c.Chat.Completions.New(ctx, params("high"))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 429 || apiErr.Code != "rate_limit_exceeded" || !strings.Contains(apiErr.Message, "api_key:usd:day") {
		t.Fatalf("search_context_size high with %d nano-dollars left: %v, want 429 rate_limit_exceeded", before, err)
	}
	if got := usdProbe(t, g); got < before {
		t.Fatalf("the refusal charged %d nano-dollars", before-got)
	}
	// The same request without the tool fits, and so does one search.
	search("", 0, 0)
	search("low", 1, 0)
	// A prompt marked for the cache: estimated at the write price, settled at the
	// writes the answer reports.
	search("", 0, 4, option.WithJSONSet("messages.0.cache_control", map[string]string{"type": "ephemeral"}),
		option.WithHeader("x-mock-cache-write-tokens", "4"))
}

// A backend's spend prices are its dearest, tiers included: a write price is the
// dearest of a price list's write and one-hour write prices, each defaulting as
// Pricing.Cost defaults it (to the input price, to the write price); writes and
// searches count only on an anthropic backend, the only one whose answers report them.
func TestSpendPricesOf(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	cases := []struct {
		name     string
		provider string
		p        providers.Pricing
		want     spendPrices
	}{
		{"no write prices: the input price", "anthropic", providers.Pricing{InputPerMillion: 3, OutputPerMillion: 15}, spendPrices{input: 3, output: 15, write: 3, search: 0}},
		{"a write price", "anthropic", providers.Pricing{InputPerMillion: 3, OutputPerMillion: 15, CacheWritePerMillion: f(3.75)}, spendPrices{input: 3, output: 15, write: 3.75, search: 0}},
		{"a one-hour price alone", "anthropic", providers.Pricing{InputPerMillion: 3, OutputPerMillion: 15, CacheWrite1hPerMillion: f(6)}, spendPrices{input: 3, output: 15, write: 6, search: 0}},
		{"a write price below input", "anthropic", providers.Pricing{InputPerMillion: 3, OutputPerMillion: 15, CacheWritePerMillion: f(1)}, spendPrices{input: 3, output: 15, write: 1, search: 0}},
		{"searches", "anthropic", providers.Pricing{InputPerMillion: 3, WebSearchPerThousand: 10}, spendPrices{input: 3, output: 0, write: 3, search: 10}},
		{"a tier's write defaults to its input", "anthropic", providers.Pricing{InputPerMillion: 3, OutputPerMillion: 15, CacheWritePerMillion: f(3.75),
			Tiers: map[string]providers.TierPricing{"priority": {InputPerMillion: f(6), OutputPerMillion: f(30)}}}, spendPrices{input: 6, output: 30, write: 6, search: 0}},
		{"a tier's one-hour and search prices", "anthropic", providers.Pricing{InputPerMillion: 3, OutputPerMillion: 15, WebSearchPerThousand: 10,
			Tiers: map[string]providers.TierPricing{"priority": {InputPerMillion: f(6), OutputPerMillion: f(30), CacheWrite1hPerMillion: f(12), WebSearchPerThousand: f(20)},
				"batch": {InputPerMillion: f(1.5), OutputPerMillion: f(7.5)}}}, spendPrices{input: 6, output: 30, write: 12, search: 20}},
		{"openai: no writes or searches", "openai", providers.Pricing{InputPerMillion: 1, OutputPerMillion: 2, CacheWritePerMillion: f(100),
			Tiers: map[string]providers.TierPricing{"priority": {InputPerMillion: f(2), OutputPerMillion: f(4), CacheWritePerMillion: f(200)}}}, spendPrices{input: 2, output: 4, write: 0, search: 0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := spendPricesOf(&tc.p, tc.provider, nil); got != tc.want {
				t.Fatalf("spendPricesOf = %+v, want %+v", got, tc.want)
			}
		})
	}
}
