//go:build !race

package gateway

import (
	"net"
	"strings"
	"testing"
)

// TestProxyAllocs pins the non-streaming request path's allocation budget.
func TestProxyAllocs(t *testing.T) {
	s := newTestServer(t, benchConfig(startStaticUpstream(t)))
	ctx := newProxyCtx(benchChatBody)
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	const budget = 5
	if n := allocsPerRun(200, func() { proxyOnce(s, ctx) }); n > budget {
		t.Fatalf("%.1f allocations per request, budget %d", n, budget)
	}
}

func TestScanBodyAllocs(t *testing.T) {
	for _, body := range [][]byte{benchChatBody, benchPromptsBody} {
		var f fields
		if n := allocsPerRun(100, func() { scanBody(body, &f) }); n != 0 {
			t.Fatalf("%.1f allocations per scan of %s, want 0", n, body)
		}
	}
}

// TestStreamAllocs pins the streaming path: a whole 35-event stream.
func TestStreamAllocs(t *testing.T) {
	s := newTestServer(t, benchConfig(startStaticSSEUpstream(t)))
	ctx := newProxyCtx([]byte(`{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	// With keep-alive the connection would go on to fasthttp's ServeConn on a goroutine
	// of its own after the stream, whose allocations land in this count or not by
	// timing; a client that closes after the stream keeps the count to the stream.
	ctx.Request.Header.SetConnectionClose()
	sink := make([]byte, 4096)
	if n := streamOnce(t, s, ctx, sink); n < 1000 {
		t.Fatalf("stream relayed only %d bytes", n)
	}
	// 1 per stream (the upstream body's, providers.upstreamBody); a GC during the
	// run empties the request pool, and refilling it costs the request and its bound
	// hijack handler once.
	const budget = 3
	if n := allocsPerRun(100, func() { streamOnce(t, s, ctx, sink) }); n > budget {
		t.Fatalf("%.1f allocations per stream, budget %d", n, budget)
	}
}

// TestLimitedProxyAllocs pins the request path with limits in the memory store.
func TestLimitedProxyAllocs(t *testing.T) {
	s := newTestServer(t, limitedBenchConfig(startStaticUpstream(t)))
	ctx := newProxyCtx(benchChatBody)
	proxyOnce(s, ctx)
	const budget = 5
	if n := allocsPerRun(200, func() { proxyOnce(s, ctx) }); n > budget {
		t.Fatalf("%.1f allocations per limited request, budget %d", n, budget)
	}
}

// TestAccessLogAllocs pins the access log's cost: metrics, tracing (off) and the log
// line together add no allocation to a request (issue budget: under 3).
func TestAccessLogAllocs(t *testing.T) {
	s := newTestServer(t, strings.Replace(benchConfig(startStaticUpstream(t)), "access_log: false", "access_log: true", 1))
	ctx := newProxyCtx(benchChatBody)
	proxyOnce(s, ctx)
	const budget = 0
	if n := allocsPerRun(200, func() { proxyOnce(s, ctx) }); n > budget {
		t.Fatalf("%.1f allocations per logged request, budget %d", n, budget)
	}
}

// TestClientIPAllocs: the client address behind trusted proxies costs no allocation.
func TestClientIPAllocs(t *testing.T) {
	trusted, _ := parseTrustedProxies([]string{"10.0.0.0/8"})
	peer := net.ParseIP("10.1.2.3")
	xff := [][]byte{[]byte("198.51.100.1, 2001:db8::7"), []byte("10.0.0.4")}
	var buf [16]byte
	if n := allocsPerRun(100, func() { clientIP(peer, xff, trusted, &buf) }); n != 0 {
		t.Fatalf("%.1f allocations per request", n)
	}
}
