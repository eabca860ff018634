package gateway

import (
	"testing"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// keyedLimitsConfig has an endpoint with a limit of its own, one without, and a key
// with a limit of its own (team-a), one without (team-b) and one that may call chat
// alone (team-c).
func keyedLimitsConfig(upstream string) string {
	return mockConfig(upstream, "", `
  - name: limited
    type: chat
    routes: [{backend: up}]
    limits: [{per: endpoint, requests: 3, window: hour}]
`) + `
auth:
  mode: keys
  keys:
    - {name: team-a, key: sk-team-a, limits: [{per: api_key, requests: 2, window: hour}]}
    - {name: team-b, key: sk-team-b}
    - {name: team-c, key: sk-team-c, endpoints: [chat], limits: [{per: api_key, requests: 1, window: hour}]}
`
}

// A keyed request is checked against its endpoint's limits and its key's together,
// each counting in its own buckets, whichever request first paired them (the pair's
// policy is joined on first use, not built per key and endpoint): a key's limit counts
// its requests on every endpoint, an endpoint's the requests of every key.
func TestKeyAndEndpointLimitsApplyTogether(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 2})
	g := startGateway(t, keyedLimitsConfig(addr))
	body := func(model string) string {
		return `{"model":"` + model + `","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`
	}
	for i, c := range []struct {
		key, model string
		status     int
		limit      string // x-ratelimit-limit-requests, "" when not checked
	}{
		{"sk-team-a", "limited", 200, "2"}, // the key's 2 is tighter than the endpoint's 3
		{"sk-team-a", "limited", 200, ""},
		{"sk-team-a", "limited", 429, ""},  // the key's limit; the endpoint has 1 left
		{"sk-team-b", "limited", 200, "3"}, // the endpoint's alone
		{"sk-team-b", "limited", 429, ""},  // the endpoint's, spent by both keys
		{"sk-team-a", "chat", 429, ""},     // the key's limit alone, on another endpoint
		{"sk-team-b", "chat", 200, ""},     // no limit at all
		{"sk-team-c", "limited", 404, ""},  // not allowed: refused before any limit
		{"sk-team-c", "chat", 200, "1"},
		{"sk-team-c", "chat", 429, ""},
	} {
		resp, b := postChatMode(t, g, c.key, "", body(c.model))
		if resp.StatusCode != c.status {
			t.Fatalf("request %d (%s on %s): %d %s, want %d", i, c.key, c.model, resp.StatusCode, b, c.status)
		}
		if got := resp.Header.Get("X-Ratelimit-Limit-Requests"); c.limit != "" && got != c.limit {
			t.Errorf("request %d (%s on %s): x-ratelimit-limit-requests %q, want %q", i, c.key, c.model, got, c.limit)
		}
	}
}
