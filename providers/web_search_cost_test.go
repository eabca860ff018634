package providers

import (
	"errors"
	"math"
	"strings"
	"testing"
)

// claudeSearchPricing is Claude Sonnet 4.5 with web search: $3 input and $15 output per
// million tokens, $10 per thousand searches; priority at twice the token prices.
func claudeSearchPricing() Pricing {
	return Pricing{InputPerMillion: 3, OutputPerMillion: 15, WebSearchPerThousand: 10,
		Tiers: map[string]TierPricing{"priority": {InputPerMillion: price(6), OutputPerMillion: price(30)}}}
}

// TestAnthropicWebSearchRequestsRead: usage.server_tool_use.web_search_requests is the
// answer's count of searches, buffered and in a stream's message_delta (message_start
// may give 0 first); a null keeps the count given before, and one that is not a count
// leaves the searches unknown without touching the tokens, which are billed apart.
func TestAnthropicWebSearchRequestsRead(t *testing.T) {
	cases := []struct {
		name     string
		usages   []string // message_start's, then message_delta's
		want     Usage
		wantCost float64
	}{
		{"none", []string{`{"input_tokens":1000,"output_tokens":100}`}, Usage{Input: 1000, Output: 100}, 0.0045},
		{"three searches", []string{`{"input_tokens":1000,"output_tokens":100,"server_tool_use":{"web_search_requests":3}}`},
			Usage{Input: 1000, Output: 100, WebSearches: 3}, 0.0045 + 0.03},
		{"0 at the start, 2 at the end", []string{
			`{"input_tokens":1000,"output_tokens":1,"server_tool_use":{"web_search_requests":0}}`,
			`{"input_tokens":1000,"output_tokens":100,"server_tool_use":{"web_search_requests":2}}`},
			Usage{Input: 1000, Output: 100, WebSearches: 2}, 0.0045 + 0.02},
		{"a null count keeps the last one", []string{
			`{"input_tokens":1000,"output_tokens":1,"server_tool_use":{"web_search_requests":2}}`,
			`{"output_tokens":100,"server_tool_use":{"web_search_requests":null}}`},
			Usage{Input: 1000, Output: 100, WebSearches: 2}, 0.0045 + 0.02},
		{"other server tools are not searches", []string{`{"input_tokens":1000,"output_tokens":100,"server_tool_use":{"web_fetch_requests":4}}`},
			Usage{Input: 1000, Output: 100}, 0.0045},
		{"server_tool_use null", []string{`{"input_tokens":1000,"output_tokens":100,"server_tool_use":null}`}, Usage{Input: 1000, Output: 100}, 0.0045},
		{"a negative count", []string{`{"input_tokens":1000,"output_tokens":100,"server_tool_use":{"web_search_requests":-1}}`},
			Usage{Input: 1000, Output: 100}, 0.0045},
		{"a count that is a string", []string{`{"input_tokens":1000,"output_tokens":100,"server_tool_use":{"web_search_requests":"3"}}`},
			Usage{Input: 1000, Output: 100}, 0.0045},
		{"tokens that are no count keep the searches", []string{`{"input_tokens":-5,"output_tokens":100,"server_tool_use":{"web_search_requests":1}}`},
			Usage{WebSearches: 1}, 0.01},
	}
	p := claudeSearchPricing()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var a anthropicUsage
			for _, raw := range c.usages {
				a.read([]byte(raw))
			}
			got := a.usage()
			if got != c.want {
				t.Errorf("usage %+v, want %+v", got, c.want)
			}
			if cost := p.Cost(got); math.Abs(cost-c.wantCost) > 1e-12 {
				t.Errorf("cost %v, want %v", cost, c.wantCost)
			}
			if got.Counted() != (c.want.Input != 0) {
				t.Errorf("Counted() = %v: searches are no token count", got.Counted())
			}
		})
	}
}

// TestWebSearchPricingCost: searches cost web_search_per_thousand each thousand, on
// top of the tokens, at the top level and in a tier (the top level's price unless the
// tier has its own); an answer without searches costs, to the bit, what it did before.
func TestWebSearchPricingCost(t *testing.T) {
	p := claudeSearchPricing()
	u := Usage{Input: 10682, Output: 510, WebSearches: 1}
	tokens := (10682*3 + 510*15) / 1e6
	cases := []struct {
		name string
		p    Pricing
		u    Usage
		want float64
	}{
		{"one search", p, u, tokens + 0.01},
		{"no price: tokens only", Pricing{InputPerMillion: 3, OutputPerMillion: 15}, u, tokens},
		{"searches alone", p, Usage{WebSearches: 1000}, 10},
		{"the standard tier, default", p, withTier(u, "default"), tokens + 0.01},
		{"a tier at the top level's search price", p, withTier(u, "priority"), 2*tokens + 0.01},
		{"a tier with a search price of its own",
			Pricing{InputPerMillion: 3, OutputPerMillion: 15, WebSearchPerThousand: 10,
				Tiers: map[string]TierPricing{"batch": {InputPerMillion: price(1.5), OutputPerMillion: price(7.5), WebSearchPerThousand: price(5)}}},
			withTier(u, "batch"), tokens/2 + 0.005},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.p.Cost(c.u); math.Abs(got-c.want) > 1e-12*c.want {
				t.Errorf("cost %v, want %v", got, c.want)
			}
		})
	}
	t.Run("no search, to the bit", func(t *testing.T) {
		plain := Pricing{InputPerMillion: 3, OutputPerMillion: 15, CachedInputPerMillion: price(0.3)}
		priced := plain
		priced.WebSearchPerThousand = 10
		nu := Usage{Input: 2006, Output: 300, CachedInput: 1024}
		if got, want := priced.Cost(nu), plain.Cost(nu); math.Float64bits(got) != math.Float64bits(want) {
			t.Errorf("cost %v, want %v", got, want)
		}
	})
	t.Run("a search price alone is a price", func(t *testing.T) {
		if (Pricing{WebSearchPerThousand: 10}).Free() {
			t.Error("Free() with a search price")
		}
		if (Pricing{Tiers: map[string]TierPricing{"priority": {InputPerMillion: price(0), OutputPerMillion: price(0), WebSearchPerThousand: price(10)}}}).Free() {
			t.Error("Free() with a tier's search price")
		}
	})
}

// TestWebSearchPricingValidate: the search price is checked as the token prices are,
// and refused where no answer counts its searches; Anthropic's standard tier is the
// top level, which its answers name default.
func TestWebSearchPricingValidate(t *testing.T) {
	cases := []struct {
		name     string
		provider string
		p        Pricing
		wantErr  []string
	}{
		{"anthropic", "anthropic", claudeSearchPricing(), nil},
		{"a tier's own price", "anthropic", Pricing{WebSearchPerThousand: 10,
			Tiers: map[string]TierPricing{"priority": {InputPerMillion: price(6), OutputPerMillion: price(30), WebSearchPerThousand: price(10)}}}, nil},
		{"0 anywhere", "openai", Pricing{WebSearchPerThousand: 0,
			Tiers: map[string]TierPricing{"flex": {InputPerMillion: price(1), OutputPerMillion: price(1), WebSearchPerThousand: price(0)}}}, nil},
		{"negative", "anthropic", Pricing{WebSearchPerThousand: -10},
			[]string{"pricing.web_search_per_thousand: must be a finite number, 0 or more"}},
		{"not finite", "anthropic", Pricing{WebSearchPerThousand: math.Inf(1),
			Tiers: map[string]TierPricing{"priority": {InputPerMillion: price(6), OutputPerMillion: price(30), WebSearchPerThousand: price(math.NaN())}}},
			[]string{"pricing.web_search_per_thousand: must be a finite number, 0 or more", "pricing.tiers.priority.web_search_per_thousand: must be a finite number, 0 or more"}},
		{"an openai backend", "openai", Pricing{WebSearchPerThousand: 25},
			[]string{"pricing.web_search_per_thousand: applies only to provider anthropic, whose answers count their web searches (OpenAI's do not)"}},
		{"an azure backend's tier", "azure", Pricing{Tiers: map[string]TierPricing{"priority": {InputPerMillion: price(6), OutputPerMillion: price(30), WebSearchPerThousand: price(25)}}},
			[]string{"pricing.tiers.priority.web_search_per_thousand: applies only to provider anthropic, whose answers count their web searches (OpenAI's do not)"}},
		{"Anthropic's standard tier", "anthropic", Pricing{Tiers: map[string]TierPricing{"standard": {InputPerMillion: price(3), OutputPerMillion: price(15)}}},
			[]string{"pricing.tiers.standard: is priced by the top-level prices (Anthropic's standard tier, default in the translated answers): write them there"}},
		{"a tier named standard elsewhere", "openai", Pricing{Tiers: map[string]TierPricing{"standard": {InputPerMillion: price(3), OutputPerMillion: price(15)}}}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := Config{Provider: c.provider, BaseURL: "http://127.0.0.1:8000/v1", Model: "m", Pricing: c.p}
			if c.provider == "azure" {
				cfg.Deployment, cfg.APIVersion = "d", "2024-10-21"
			}
			var got []string
			for _, err := range flattenErr(cfg.Validate()) {
				if fe, ok := errors.AsType[*FieldError](err); ok && strings.HasPrefix(fe.Key(), "pricing.") {
					got = append(got, fe.Error())
				} else {
					t.Errorf("other problem: %v", err)
				}
			}
			if strings.Join(got, "\n") != strings.Join(c.wantErr, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.wantErr, "\n"))
			}
		})
	}
}

// BenchmarkPricingCostWebSearch prices an answer with searches, at the top level and
// in a listed tier.
func BenchmarkPricingCostWebSearch(b *testing.B) {
	p := claudeSearchPricing()
	for _, tier := range []string{"", "priority"} {
		name := tier
		if name == "" {
			name = "none"
		}
		b.Run(name, func(b *testing.B) {
			u := withTier(Usage{Input: 10682, Output: 510, WebSearches: 2}, tier)
			b.ReportAllocs()
			var sum float64
			for b.Loop() {
				sum += p.Cost(u)
			}
			if sum < 0 {
				b.Fatal(sum)
			}
		})
	}
}

// TestPricingBound: a price over MaxPrice (a thousand dollars a token) is refused at its key, so
// that no cost, nor the cost counter's sum, can overflow to +Inf; MaxPrice itself is
// taken.
func TestPricingBound(t *testing.T) {
	price := func(v float64) *float64 { return &v }
	for _, tc := range []struct {
		name string
		c    Config
		want []string
	}{
		{"at the bound", Config{Provider: "anthropic", Pricing: Pricing{InputPerMillion: MaxPrice, OutputPerMillion: MaxPrice, WebSearchPerThousand: MaxPrice}}, nil},
		{"input over it", Config{Provider: "openai", Pricing: Pricing{InputPerMillion: 1e308}},
			[]string{"pricing.input_per_million: must be at most 1000000000 (US dollars a million tokens, or a thousand searches)"}},
		{"a tier's cache write over it", Config{Provider: "anthropic", Pricing: Pricing{Tiers: map[string]TierPricing{
			"priority": {InputPerMillion: price(3), OutputPerMillion: price(15), CacheWritePerMillion: price(2e9)}}}},
			[]string{"pricing.tiers.priority.cache_write_per_million: must be at most 1000000000 (US dollars a million tokens, or a thousand searches)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, err := range tc.c.validatePricing() {
				got = append(got, err.Error())
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Fatalf("problems %q, want %q", got, tc.want)
			}
		})
	}
}
