package gateway

import (
	"strings"
	"testing"
)

// README counts max_tokens up to 2^40; default_max_tokens stands in for it, so a
// larger one is refused: the estimate multiplies it by the completions asked for, and
// 9223372036854775807 overflowed to a negative estimate charged as 0 tokens, which
// admitted requests larger than the whole bucket into one that was not full.
func TestDefaultMaxTokensBounded(t *testing.T) {
	const cfg = `
backends:
  up: {provider: openai, base_url: "http://127.0.0.1:8001/v1", model: m}
endpoints:
  - name: chat
    type: chat
    routes: [{backend: up}]
    default_max_tokens: 9223372036854775807
`
	_, err := ParseConfig("t.yaml", []byte(cfg), env(nil))
	if want := "t.yaml:8: endpoints[0].default_max_tokens: must be at most 1099511627776 (2^40)"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("err = %v, want %q", err, want)
	}
}

// At the bound, with 128 completions asked for, the estimate stays positive: larger
// than the bucket, it is charged the whole burst, so it fits only into a full bucket.
func TestDefaultMaxTokensAtBoundChargesWholeBucket(t *testing.T) {
	up := tokensUsedUpstream(t, 5)
	g := startGateway(t, mockConfig(up, "", `  - name: lim
    type: chat
    routes: [{backend: up}]
    default_max_tokens: 1099511627776
    limits: [{per: endpoint, tokens: 1000, window: hour}]
`)+"logging: {level: error, access_log: false}\n")
	body := `{"model":"lim","n":128,"messages":[{"role":"user","content":"hi"}]}`
	if resp, b := postChatMode(t, g, "", "", body); resp.StatusCode != 200 {
		t.Fatalf("first request, into the full bucket: %d %s", resp.StatusCode, b)
	}
	// 5 tokens used: the bucket is no longer full.
	if resp, _ := postChatMode(t, g, "", "", body); resp.StatusCode != 429 {
		t.Errorf("an estimate above the whole bucket was admitted into one that is not full: %d, x-ratelimit-remaining-tokens %q",
			resp.StatusCode, resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
	}
}
