package gateway

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/tollgate/tollgate/providers/mockllm"
)

func limitsConfig(upstream string) string {
	return mockConfig(upstream, "", `
  - name: limited
    type: chat
    routes: [{backend: up}]
    limits:
      - {per: api_key, requests: 60, window: minute, burst: 1}
      - {per: api_key, tokens: 100000, window: minute}
`) + `
auth:
  mode: keys
  keys:
    - {name: team-a, key: sk-team-a}
    - {name: team-b, key: sk-team-b}
`
}

// TestRateLimitAndSDKRetry: the second request in the same second is refused with
// OpenAI's body and headers; the official SDK waits out retry-after and succeeds.
func TestRateLimitAndSDKRetry(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	g := startGateway(t, limitsConfig(addr))
	noRetry := g.client(option.WithAPIKey("sk-team-a"))
	ctx := context.Background()
	params := openai.ChatCompletionNewParams{Model: "limited", Messages: userMsg("hi")}

	var resp *http.Response
	if _, err := noRetry.Chat.Completions.New(ctx, params, option.WithResponseInto(&resp)); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"X-Ratelimit-Limit-Requests", "X-Ratelimit-Remaining-Requests", "X-Ratelimit-Reset-Requests", "X-Ratelimit-Limit-Tokens", "X-Ratelimit-Remaining-Tokens"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("admitted response lacks %s", h)
		}
	}
	if got := resp.Header.Get("X-Ratelimit-Limit-Requests"); got != "60" {
		t.Errorf("x-ratelimit-limit-requests = %q", got)
	}

	_, err := noRetry.Chat.Completions.New(ctx, params, option.WithResponseInto(&resp))
	e := apiErr(t, err)
	if e.StatusCode != 429 || e.Code != "rate_limit_exceeded" || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("got %d %q retry-after %q", e.StatusCode, e.Code, resp.Header.Get("Retry-After"))
	}
	if strings.Contains(e.Message, "sk-team-a") || strings.Contains(e.Message, "team-a") {
		t.Fatalf("refusal names the key: %s", e.Message)
	}

	// Another key has its own bucket.
	teamB := g.client(option.WithAPIKey("sk-team-b"))
	if _, err := teamB.Chat.Completions.New(ctx, params); err != nil {
		t.Fatalf("team-b refused by team-a's bucket: %v", err)
	}

	withRetry := g.client(option.WithAPIKey("sk-team-a"), option.WithMaxRetries(3))
	if _, err := withRetry.Chat.Completions.New(ctx, params); err != nil {
		t.Fatalf("SDK retry did not get through: %v", err)
	}
	logs := g.logs.String()
	if strings.Count(logs, `"status":429`) < 2 {
		t.Fatalf("the SDK's retry was not preceded by a 429:\n%s", logs)
	}
}
