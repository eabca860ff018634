//go:build !race

package gateway

import (
	"context"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/logq"
)

// TestAccessLogQueuedAllocs: with the binary's log output, a queue in front of stderr,
// a logged request still costs no allocation.
func TestAccessLogQueuedAllocs(t *testing.T) {
	q := logq.New(discardWriter{})
	defer q.Close(context.Background())
	cfg := strings.Replace(benchConfig(startStaticUpstream(t)), "logging: {level: error, access_log: false}", "logging: {level: info, access_log: true}", 1)
	s := newServerWith(t, cfg, Options{LogOutput: q})
	ctx := newProxyCtx(benchChatBody)
	for range 1000 {
		proxyOnce(s, ctx) // the queue's buffers grow to what this load needs
	}
	if n := allocsPerRun(1000, func() { proxyOnce(s, ctx) }); n != 0 {
		t.Fatalf("%.1f allocations per logged request, want 0", n)
	}
}
