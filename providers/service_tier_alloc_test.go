//go:build !race

package providers

import "testing"

// TestServiceTierAllocs: reading an answer's tier and pricing the answer at it cost
// no allocation, on every buffered answer and every stream's chunks.
func TestServiceTierAllocs(t *testing.T) {
	p := gpt5Pricing()
	var u Usage
	if n := testing.AllocsPerRun(1000, func() { scanAnswer(serviceTierAnswer, &u) }); n != 0 {
		t.Errorf("scanAnswer: %v allocations, want 0", n)
	}
	escaped := []byte(`{"service_tier":"\u0066lex"}`)
	if n := testing.AllocsPerRun(1000, func() { scanAnswer(escaped, &u) }); n != 0 {
		t.Errorf("scanAnswer, an escaped tier: %v allocations, want 0", n)
	}
	chunk := []byte(`{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"}}],"service_tier":"flex"}`)
	var ev Event
	if n := testing.AllocsPerRun(1000, func() { ev = Event{}; inspectChunk(chunk, &ev) }); n != 0 {
		t.Errorf("inspectChunk: %v allocations, want 0", n)
	}
	var sum float64
	for _, tier := range []string{"", "flex", "batch"} {
		tu := withTier(Usage{Input: 2006, Output: 300, CachedInput: 1024}, tier)
		if n := testing.AllocsPerRun(1000, func() { sum += p.Cost(tu) }); n != 0 {
			t.Errorf("Cost in tier %q: %v allocations, want 0", tier, n)
		}
	}
}
