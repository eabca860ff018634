package gateway

import (
	"net/http"
	"testing"
)

// README: x-ratelimit-limit-requests is the bucket's capacity, the larger of the
// per-window amount and the burst. OpenAI documents it as "the maximum number of
// requests that are permitted before exhausting the rate limit": with burst 100 above
// 10 requests a minute, the per-window amount as the limit told a client it had 99
// requests left of 10.
func TestLimitHeaderIsBucketCapacity(t *testing.T) {
	up := tokensUsedUpstream(t, 5)
	g := startGateway(t, mockConfig(up, "", `  - name: lim
    type: chat
    routes: [{backend: up}]
    limits: [{per: endpoint, requests: 10, window: minute, burst: 100}]
`)+"logging: {level: error, access_log: false}\n")
	resp, b := postChatMode(t, g, "", "", `{"model":"lim","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	if lim, rem := resp.Header.Get("X-Ratelimit-Limit-Requests"), resp.Header.Get("X-Ratelimit-Remaining-Requests"); lim != "100" || rem != "99" {
		t.Errorf("x-ratelimit-limit-requests %q, x-ratelimit-remaining-requests %q; want 100 and 99", lim, rem)
	}
}
