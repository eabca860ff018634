//go:build !race

package gateway

import "testing"

// TestProxyMessagesBridgeAllocs: a Messages API call through a backend's chat API,
// its request and answer translated, allocates nothing, as a native one does.
func TestProxyMessagesBridgeAllocs(t *testing.T) {
	s := bridgedMessagesServer(t)
	ctx := newMessagesCtx(t, s)
	if n := allocsPerRun(200, func() { proxyOnce(s, ctx) }); n > 0 {
		t.Errorf("%v allocations per bridged call, budget 0", n)
	}
}
