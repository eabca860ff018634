package gateway

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// TestDrainServesRequestSentRightAfterStream: a stream begun before the drain ends
// during it, its answer's header long sent without Connection: close, so its client
// takes the connection for kept alive and sends its next request on it as soon as it
// has read [DONE] (an SDK in a loop, a proxy's pooled connection). That request is
// served, with Connection: close, rather than met by a connection closed the moment
// the stream ended: a POST that gets a reset or an EOF after it was sent is not
// resent by the clients, so it would fail. The drain still ends promptly after it.
func TestDrainServesRequestSentRightAfterStream(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 10, TPOT: 30 * time.Millisecond})
	g := startGateway(t, strings.Replace(mockConfig(addr, "", ""), `shutdown_grace: 5s}`, `shutdown_grace: 30s}`, 1))
	if resp, err := http.Get(g.url + "/health"); err != nil {
		t.Fatal(err)
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	conn, br := dialGateway(t, g)
	writeTo(t, conn, rawRequest(t, g, `{"model":"chat","stream":true,"max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`))
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stream: %v", err)
	}
	g.cancel()
	waitFor(t, func() bool { return g.draining.Load() })
	b, err := io.ReadAll(resp.Body)
	if err != nil || !strings.HasSuffix(string(b), "data: [DONE]\n\n") {
		t.Fatalf("the stream begun before the drain did not end whole: %v %q", err, b)
	}
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	writeTo(t, conn, rawRequest(t, g, chatBody, "X-Request-Id: after-stream"))
	next, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("request sent on the stream's connection right after its end, during the drain: %v; want it served", err)
	}
	body, err := io.ReadAll(next.Body)
	answered := time.Now()
	if err != nil || next.StatusCode != 200 || !strings.Contains(string(body), `"chat.completion"`) {
		t.Fatalf("request sent right after the stream, during the drain: %d %v %q; want 200", next.StatusCode, err, body)
	}
	if !next.Close {
		t.Errorf("answer during the drain without Connection: close")
	}
	select {
	case err := <-g.done:
		g.done <- err
	case <-time.After(2 * time.Second):
		t.Errorf("the drain went on 2s after its last request was answered (shutdown_grace 30s)")
	}
	if d := time.Since(answered); d > 2*time.Second {
		t.Errorf("the drain ended %v after its last request was answered", d)
	}
}
