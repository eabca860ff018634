//go:build !race

package providers

import "testing"

// A score call's prefix hash allocates nothing, as a rerank's does.
func TestScorePrefixHashAllocs(t *testing.T) {
	call := &Call{Kind: Score, Body: scorePrefixBody}
	if n := testing.AllocsPerRun(100, func() { _, _ = prefixHash(call, 1024) }); n > 0 {
		t.Errorf("%v allocations a score call's prefix hash, want 0", n)
	}
}
