package gateway

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// A body over max_body_bytes that the client keeps sending gets its 413, not a
// connection reset: the gateway reads and drops the rest of the body (bounded in
// bytes and time) before it closes, so the client reads the answer rather than
// losing it to the reset that closing over unread data sends. SDKs retry a reset
// (re-uploading the body), and never learn that the body is too large.
func TestOversizedBodyGets413NotReset(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{})
	g := startGateway(t, mockConfig(addr, "", ""))
	body := bytes.Repeat([]byte("a"), 8<<20)
	for round := range 3 {
		// A fresh connection each time, as a client whose connection was closed.
		cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 20 * time.Second}
		res, err := cl.Post(g.url+"/v1/chat/completions", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("round %d: no answer to an oversized body: %v", round, err)
		}
		res.Body.Close()
		if res.StatusCode != 413 {
			t.Fatalf("round %d: status %d, want 413", round, res.StatusCode)
		}
	}
}
