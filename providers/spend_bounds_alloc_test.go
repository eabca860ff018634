//go:build !race

package providers

import "testing"

// TestSpendBoundsAllocs: reading a request's cache mark and web search bound for a
// spend budget's estimate costs no allocation, chat or Responses, found or not.
func TestSpendBoundsAllocs(t *testing.T) {
	responses := []byte(`{"model":"claude","input":"What is new?","tools":[{"type":"function","name":"f"},{"type":"web_search","search_context_size":"high"}]}`)
	var n int64
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"marked", func() {
			if MarksPromptCache(benchSpendBody) {
				n++
			}
		}},
		{"not marked", func() {
			if MarksPromptCache(benchPlainBody) {
				n++
			}
		}},
		{"chat search", func() { n += WebSearchBound(Chat, benchSpendBody) }},
		{"chat without", func() { n += WebSearchBound(Chat, benchPlainBody) }},
		{"responses search", func() { n += WebSearchBound(Responses, responses) }},
	} {
		if a := testing.AllocsPerRun(200, tc.f); a != 0 {
			t.Errorf("%s: %v allocations, want 0", tc.name, a)
		}
	}
	if n == 0 {
		t.Fatal("nothing found")
	}
}
