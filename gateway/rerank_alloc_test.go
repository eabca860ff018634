//go:build !race

package gateway

import (
	"bytes"
	"testing"
)

// A rerank through the request path allocates nothing, as a chat request does.
func TestProxyRerankAllocs(t *testing.T) {
	s := newRerankServer(t)
	ctx := newProxyCtx(benchRerankBody)
	ctx.Request.SetRequestURI("/v2/rerank")
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	if n := allocsPerRun(200, func() { proxyOnce(s, ctx) }); n > 0 {
		t.Errorf("%v allocations a rerank, want 0", n)
	}
}

// A score call through the request path allocates nothing, as a rerank does.
func TestProxyScoreAllocs(t *testing.T) {
	s := newRerankServer(t)
	ctx := newProxyCtx(benchScoreBody)
	ctx.Request.SetRequestURI("/v1/score")
	proxyOnce(s, ctx)
	if ctx.Response.StatusCode() != 200 || !bytes.Contains(ctx.Response.Body(), []byte(`"object":"score"`)) {
		t.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	if n := allocsPerRun(200, func() { proxyOnce(s, ctx) }); n > 0 {
		t.Errorf("%v allocations a score call, want 0", n)
	}
}

// A Messages API call through the request path allocates nothing, as a chat request
// does.
func TestProxyMessagesAllocs(t *testing.T) {
	s := newMessagesServer(t)
	ctx := newMessagesCtx(t, s)
	if n := allocsPerRun(200, func() { proxyOnce(s, ctx) }); n > 0 {
		t.Errorf("%v allocations a Messages API call, want 0", n)
	}
}

func TestProxyAudioAllocs(t *testing.T) {
	s := newAudioServer(t)
	ctx := newAudioCtx(t, s)
	if n := allocsPerRun(200, func() { proxyOnce(s, ctx) }); n > 0 {
		t.Errorf("%v allocations a transcription, want 0", n)
	}
}
