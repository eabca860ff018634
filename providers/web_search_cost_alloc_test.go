//go:build !race

package providers

import "testing"

// TestWebSearchCostAllocs: reading an Anthropic usage's searches and tier, and pricing
// the searches at the top level or in a tier, cost no allocation.
func TestWebSearchCostAllocs(t *testing.T) {
	raw := []byte(`{"input_tokens":10682,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":510,"server_tool_use":{"web_search_requests":2},"service_tier":"standard"}`)
	var a anthropicUsage
	if n := testing.AllocsPerRun(1000, func() { a = anthropicUsage{}; a.read(raw) }); n != 0 {
		t.Errorf("reading the usage: %v allocations, want 0", n)
	}
	p := claudeSearchPricing()
	var sum float64
	for _, tier := range []string{"", "default", "priority"} {
		u := withTier(Usage{Input: 10682, Output: 510, WebSearches: 2}, tier)
		if n := testing.AllocsPerRun(1000, func() { sum += p.Cost(u) }); n != 0 {
			t.Errorf("Cost in tier %q: %v allocations, want 0", tier, n)
		}
	}
}
