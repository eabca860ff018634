//go:build !race

package gateway

import "testing"

// TestProxyMessagesCountBridgedAllocs: a token count through a backend's tokenizer,
// its request translated and its answer rewritten, allocates nothing, as a bridged
// message does.
func TestProxyMessagesCountBridgedAllocs(t *testing.T) {
	s := bridgedCountServer(t)
	ctx := newCountCtx(t, s)
	if n := allocsPerRun(200, func() { proxyOnce(s, ctx) }); n > 0 {
		t.Errorf("%v allocations per bridged count, budget 0", n)
	}
}
