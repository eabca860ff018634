//go:build !race

package providers

import "testing"

// The look at a pooled connection and the scan of an answer's header, both on every
// request's path, allocate nothing.
func TestConnReuseAllocations(t *testing.T) {
	u, _ := loopbackPair(t)
	u.idleReadable()
	if n := testing.AllocsPerRun(1000, func() { u.idleReadable() }); n != 0 {
		t.Errorf("%v allocations per look, want 0", n)
	}
	p := []byte(headScanCases[0].head)
	var s headScan
	if n := testing.AllocsPerRun(1000, func() { s.begin(); s.feed(p) }); n != 0 {
		t.Errorf("%v allocations per header scan, want 0", n)
	}
}
