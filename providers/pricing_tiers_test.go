package providers

import (
	"errors"
	"math"
	"strings"
	"testing"
)

// withTier is u as an answer naming tier serves it.
func withTier(u Usage, tier string) Usage {
	u.Tier = ServiceTier{}
	u.Tier.read([]byte(`"` + tier + `"`))
	return u
}

// gpt5Pricing is gpt-5 on OpenAI's pricing pages: $1.25 input, $0.125 cached input
// and $10 output per million at the standard tier; flex at half of each, priority at
// twice. Scale is prepaid: its tokens cost nothing more.
func gpt5Pricing() Pricing {
	return Pricing{
		InputPerMillion: 1.25, OutputPerMillion: 10, CachedInputPerMillion: price(0.125),
		Tiers: map[string]TierPricing{
			"flex":     {InputPerMillion: price(0.625), OutputPerMillion: price(5), CachedInputPerMillion: price(0.0625)},
			"priority": {InputPerMillion: price(2.5), OutputPerMillion: price(20), CachedInputPerMillion: price(0.25)},
			"scale":    {InputPerMillion: price(0), OutputPerMillion: price(0)},
		},
	}
}

// TestPricingTiersCost: an answer is priced at the prices of the tier it names when
// the backend lists that tier, and at the top level's when it names none, default, or
// a tier not listed; a tier's cached and cache-write prices default to its own input
// price, as the top level's do.
func TestPricingTiersCost(t *testing.T) {
	p := gpt5Pricing()
	u := Usage{Input: 2006, Output: 300, CachedInput: 1024}
	standard := (982*1.25 + 1024*0.125 + 300*10) / 1e6
	cases := []struct {
		name string
		p    Pricing
		u    Usage
		want float64
	}{
		{"no tier named", p, u, standard},
		{"default", p, withTier(u, "default"), standard},
		{"a tier not listed", p, withTier(u, "batch"), standard},
		{"a tier named in another case", p, withTier(u, "Flex"), standard},
		{"flex at half price", p, withTier(u, "flex"), standard / 2},
		{"priority at twice the price", p, withTier(u, "priority"), 2 * standard},
		{"a free tier", p, withTier(u, "scale"), 0},
		{"a tier on a backend without tiers", Pricing{InputPerMillion: 1.25, OutputPerMillion: 10, CachedInputPerMillion: price(0.125)}, withTier(u, "flex"), standard},
		{"a tier's cached price defaults to its input price",
			Pricing{InputPerMillion: 1.25, OutputPerMillion: 10, CachedInputPerMillion: price(0.125),
				Tiers: map[string]TierPricing{"flex": {InputPerMillion: price(0.625), OutputPerMillion: price(5)}}},
			withTier(u, "flex"), (2006*0.625 + 300*5) / 1e6},
		{"a tier's cache writes at its own prices",
			Pricing{InputPerMillion: 3, OutputPerMillion: 15, CacheWritePerMillion: price(3.75),
				Tiers: map[string]TierPricing{"priority": {InputPerMillion: price(6), OutputPerMillion: price(30), CachedInputPerMillion: price(0.6), CacheWritePerMillion: price(7.5), CacheWrite1hPerMillion: price(12)}}},
			withTier(Usage{Input: 1313, Output: 9, CachedInput: 1000, CacheWrite: 300, CacheWrite1h: 100}, "priority"),
			(13*6 + 1000*0.6 + 200*7.5 + 100*12 + 9*30) / 1e6},
		{"a tier's one-hour writes default to its write price",
			Pricing{InputPerMillion: 3, OutputPerMillion: 15, CacheWrite1hPerMillion: price(6),
				Tiers: map[string]TierPricing{"priority": {InputPerMillion: price(6), OutputPerMillion: price(30), CacheWritePerMillion: price(7.5)}}},
			withTier(Usage{Input: 313, Output: 9, CacheWrite: 300, CacheWrite1h: 100}, "priority"),
			(13*6 + 300*7.5 + 9*30) / 1e6},
		{"no usage in a tier", p, withTier(Usage{}, "flex"), 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.p.Cost(c.u); math.Abs(got-c.want) > 1e-12*c.want {
				t.Errorf("cost %v, want %v", got, c.want)
			}
		})
	}
	t.Run("top level to the bit, whatever the tiers", func(t *testing.T) {
		plain := Pricing{InputPerMillion: 1.25, OutputPerMillion: 10, CachedInputPerMillion: price(0.125)}
		for _, tier := range []string{"", "default", "batch"} {
			got, want := p.Cost(withTier(u, tier)), plain.Cost(u)
			if math.Float64bits(got) != math.Float64bits(want) {
				t.Errorf("tier %q: cost %v, want the top level's %v", tier, got, want)
			}
		}
	})
}

// TestPricingTiersFree: a backend whose only prices are a tier's has a price, so that
// its cost series exists; one whose tiers are all free is free.
func TestPricingTiersFree(t *testing.T) {
	cases := []struct {
		name string
		p    Pricing
		want bool
	}{
		{"nothing priced", Pricing{}, true},
		{"free tiers", Pricing{Tiers: map[string]TierPricing{"scale": {InputPerMillion: price(0), OutputPerMillion: price(0), CachedInputPerMillion: price(0)}}}, true},
		{"a tier's input", Pricing{Tiers: map[string]TierPricing{"flex": {InputPerMillion: price(0.625), OutputPerMillion: price(0)}}}, false},
		{"a tier's output", Pricing{Tiers: map[string]TierPricing{"scale": {InputPerMillion: price(0), OutputPerMillion: price(0)}, "flex": {InputPerMillion: price(0), OutputPerMillion: price(5)}}}, false},
		{"a tier's cache write", Pricing{Tiers: map[string]TierPricing{"priority": {InputPerMillion: price(0), OutputPerMillion: price(0), CacheWrite1hPerMillion: price(1)}}}, false},
		{"the top level priced, the tiers free", Pricing{OutputPerMillion: 10, Tiers: map[string]TierPricing{"scale": {InputPerMillion: price(0), OutputPerMillion: price(0)}}}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.p.Free(); got != c.want {
				t.Errorf("Free() = %v, want %v", got, c.want)
			}
		})
	}
}

// TestPricingTiersValidate: a tier's prices are checked as the top level's are, and a
// tier must be one an answer can name, with its input and output prices written.
func TestPricingTiersValidate(t *testing.T) {
	cases := []struct {
		name    string
		tiers   map[string]TierPricing
		wantErr []string
	}{
		{"none", nil, nil},
		{"flex and priority", gpt5Pricing().Tiers, nil},
		{"free", map[string]TierPricing{"scale": {InputPerMillion: price(0), OutputPerMillion: price(0)}}, nil},
		{"every key", map[string]TierPricing{"priority": {InputPerMillion: price(6), OutputPerMillion: price(30), CachedInputPerMillion: price(0.6), CacheWritePerMillion: price(7.5), CacheWrite1hPerMillion: price(12)}}, nil},
		{"without prices", map[string]TierPricing{"flex": {}},
			[]string{"pricing.tiers.flex: has no prices (input_per_million and output_per_million are required)"}},
		{"without its output price", map[string]TierPricing{"flex": {InputPerMillion: price(0.625), CachedInputPerMillion: price(0.0625)}},
			[]string{"pricing.tiers.flex.output_per_million: is required in a tier (0 when its output is free)"}},
		{"without its input price", map[string]TierPricing{"priority": {OutputPerMillion: price(20)}},
			[]string{"pricing.tiers.priority.input_per_million: is required in a tier (0 when its input is free)"}},
		{"negative", map[string]TierPricing{"flex": {InputPerMillion: price(-1), OutputPerMillion: price(5), CachedInputPerMillion: price(-0.1)}},
			[]string{"pricing.tiers.flex.input_per_million: must be a finite number, 0 or more", "pricing.tiers.flex.cached_input_per_million: must be a finite number, 0 or more"}},
		{"not finite", map[string]TierPricing{"flex": {InputPerMillion: price(1), OutputPerMillion: price(math.Inf(1)), CacheWritePerMillion: price(math.NaN()), CacheWrite1hPerMillion: price(math.Inf(-1))}},
			[]string{"pricing.tiers.flex.output_per_million: must be a finite number, 0 or more", "pricing.tiers.flex.cache_write_per_million: must be a finite number, 0 or more", "pricing.tiers.flex.cache_write_1h_per_million: must be a finite number, 0 or more"}},
		{"default", map[string]TierPricing{"default": {InputPerMillion: price(1.25), OutputPerMillion: price(10)}},
			[]string{"pricing.tiers.default: is priced by the top-level prices (the standard tier): write them there"}},
		{"no name", map[string]TierPricing{"": {InputPerMillion: price(1), OutputPerMillion: price(1)}},
			[]string{"pricing.tiers: a tier needs a name, as answers give it in service_tier"}},
		{"a name too long", map[string]TierPricing{strings.Repeat("x", MaxServiceTierBytes+1): {InputPerMillion: price(1), OutputPerMillion: price(1)}},
			[]string{"pricing.tiers." + strings.Repeat("x", MaxServiceTierBytes+1) + ": is no service tier: a tier's name is at most 32 bytes"}},
		{"each tier's problems, in name order", map[string]TierPricing{"priority": {InputPerMillion: price(-2.5), OutputPerMillion: price(20)}, "flex": {}},
			[]string{"pricing.tiers.flex: has no prices (input_per_million and output_per_million are required)", "pricing.tiers.priority.input_per_million: must be a finite number, 0 or more"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := Config{Provider: "openai", BaseURL: "http://127.0.0.1:8000/v1", Model: "m",
				Pricing: Pricing{InputPerMillion: 1.25, OutputPerMillion: 10, Tiers: c.tiers}}
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

// BenchmarkPricingCost prices an answer at the top level, in a listed tier, and in a
// tier not listed.
func BenchmarkPricingCost(b *testing.B) {
	p := gpt5Pricing()
	u := Usage{Input: 2006, Output: 300, CachedInput: 1024}
	for _, tier := range []string{"", "flex", "batch"} {
		name := tier
		if name == "" {
			name = "none"
		}
		b.Run(name, func(b *testing.B) {
			tu := withTier(u, tier)
			b.ReportAllocs()
			var sum float64
			for b.Loop() {
				sum += p.Cost(tu)
			}
			if sum < 0 {
				b.Fatal(sum)
			}
		})
	}
}
