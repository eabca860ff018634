//go:build !race

package providers

import "testing"

// TestParseUsageAllocs: reading a usage object, the prompt cache's details included,
// costs no allocation: every buffered answer and every stream's usage chunk does it.
func TestParseUsageAllocs(t *testing.T) {
	for name, raw := range parseUsageBench {
		var u Usage
		if n := testing.AllocsPerRun(1000, func() { parseUsage(raw, &u) }); n != 0 {
			t.Errorf("%s: %v allocations, want 0", name, n)
		}
	}
}
