package gateway

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/internal/redistest"
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
// OpenAI's body and headers; the official SDK waits out retry-after and succeeds. With
// the redis store the SDK's first attempt is refused from the refusal Redis gave the
// request before it (cached until its retry time), and its retry reaches Redis.
// Redis gets a timeout no loaded test machine reaches: past the default 50ms a check
// is answered from the replica's share and a true-up sent after a timeout is dropped
// (README), which is not what this checks.
// Not t.Parallel: its second request must come within the first's second.
func TestRateLimitAndSDKRetry(t *testing.T) {
	t.Run("memory", func(t *testing.T) { testRateLimitAndSDKRetry(t, "") })
	t.Run("redis", func(t *testing.T) {
		rds := redistest.Start(t)
		testRateLimitAndSDKRetry(t, `limiter: {store: redis, redis: {url: "`+rds.URL()+`"}, timeout: 5s}
`)
	})
}

func testRateLimitAndSDKRetry(t *testing.T, limiterYAML string) {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	g := startGateway(t, limitsConfig(addr)+limiterYAML)
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
	if limiterYAML == "" {
		return
	}
	fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	answered := func(by string) float64 {
		v, _ := promtest.Sum(fams, "tollgate_limiter_checks_total", func(l map[string]string) bool { return l["answered"] == by })
		return v
	}
	if answered("refused_locally") < 1 || answered("redis") < 4 {
		t.Errorf("tollgate_limiter_checks_total: redis %v, refused_locally %v; want the SDK's first attempt refused locally",
			answered("redis"), answered("refused_locally"))
	}
}

// A reload that changes the limiter section (here only limiter.timeout) builds a new
// Limiter, which takes over the buckets: a client refused a moment ago is refused
// after it too.
func TestBucketsSurviveLimiterReload(t *testing.T) {
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	cfg := func(limiterYAML string) string {
		return mockConfig(up, "", `  - name: limited
    type: chat
    routes: [{backend: up}]
    limits: [{per: endpoint, requests: 1, window: hour}]
`) + limiterYAML + `logging: {level: error, access_log: false}
`
	}
	g := startGateway(t, cfg(""))
	chat := func() int {
		resp, err := http.Post(g.url+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"limited","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c1, c2 := chat(), chat(); c1 != 200 || c2 != 429 {
		t.Fatalf("before the reload: %d %d, want 200 429", c1, c2)
	}
	if err := os.WriteFile(g.path, []byte(cfg("limiter: {store: memory, timeout: 80ms}\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	if c := chat(); c != 429 {
		t.Fatalf("after a reload that changed only limiter.timeout: status %d, want 429 (1 request an hour, already spent)", c)
	}
}
