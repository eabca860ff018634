//go:build !race

package providers

import (
	"strings"
	"testing"
)

// TestIsKeyLongNameEscapedAllocs: a key with an escape compared with one of the
// longer names isKey is asked for (max_completion_tokens, continuous_usage_stats) is
// decoded without an allocation, however long the key up to where its length alone
// tells it apart: escaped, such a name takes up to six bytes a letter.
func TestIsKeyLongNameEscapedAllocs(t *testing.T) {
	for _, name := range []string{"continuous_usage_stats", "max_completion_tokens", "search_context_size", "include_usage"} {
		// An escape, then plain bytes up to the bound: decoded, nearly as long.
		k := []byte(`\n` + strings.Repeat("x", 6*len(name)-2))
		// And the name itself escaped whole, the longest way it can be written.
		var esc strings.Builder
		for _, c := range name {
			esc.WriteString(`\u00`)
			esc.WriteString(strings.ToLower(string("0123456789abcdef"[c>>4])) + string("0123456789abcdef"[c&15]))
		}
		whole := []byte(esc.String())
		if !isKey(whole, name) {
			t.Fatalf("%s is not %s", whole, name)
		}
		for _, raw := range [][]byte{k, whole} {
			if n := testing.AllocsPerRun(100, func() { _ = isKey(raw, name) }); n != 0 {
				t.Errorf("isKey(%.30s..., %s): %v allocations, want 0", raw, name, n)
			}
		}
	}
}
