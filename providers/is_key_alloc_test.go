//go:build !race

package providers

import (
	"strings"
	"testing"
)

// TestIsKeyLongEscapedAllocs: a client's key or string value written with escapes,
// long enough that it decodes to more than isKey's buffer holds, is told apart from a
// short name without decoding it, so with no allocation (the bridges' role and type
// checks read client values so).
func TestIsKeyLongEscapedAllocs(t *testing.T) {
	for _, k := range []string{strings.Repeat(`\u0064`, 100), "developer" + strings.Repeat(`\u0020`, 20)} {
		raw := []byte(k)
		if isKey(raw, "developer") {
			t.Fatalf("%s is developer", k)
		}
		if n := testing.AllocsPerRun(100, func() { _ = isKey(raw, "developer") }); n != 0 {
			t.Errorf("%.40s...: %v allocations, want 0", k, n)
		}
	}
}
