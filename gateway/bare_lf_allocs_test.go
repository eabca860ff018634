//go:build !race

package gateway

import (
	"strings"
	"testing"
)

// TestBareLFAllocs: the check every request pays before it is routed allocates
// nothing, whether its connection followed its header or fasthttp's header block is
// read instead.
func TestBareLFAllocs(t *testing.T) {
	followed := followedCtx(t, getModels)
	unfollowed := newProxyCtx(nil)
	parsedHeader(t, strings.Replace(getModels, "Host: x\r\n", "Host: x\r\nX-A: b\r\n", 1)).CopyTo(&unfollowed.Request.Header)
	for name, check := range map[string]func(){
		"followed":     func() { bareLF(followed) },
		"header block": func() { bareLF(unfollowed) },
	} {
		if n := allocsPerRun(100, check); n != 0 {
			t.Errorf("%s: %.1f allocations per check, want 0", name, n)
		}
	}
}
