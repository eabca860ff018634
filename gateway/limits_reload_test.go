package gateway

import (
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/redistest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// README: "Buckets survive reloads ... carry over to the new settings". A reload that
// lowers an endpoint's rate (60/hour burst 6 down to 6/hour burst 6) while a client
// has just spent the whole bucket leaves it spent: the bucket keeps the 6 requests it
// owes. Read as a debt in time at the new rate (6 minutes at 10 minutes a request),
// the reload meant to throttle the client handed it 5 fresh requests. Hours keep the
// old rate from refilling anything while the test runs.
// Redis gets a timeout no loaded test machine reaches: past the default 50ms a check
// is answered from the replica's share and a true-up sent after a timeout is dropped
// (README), which is not what this checks.
func TestReloadLoweringRateKeepsSpentBucketSpent(t *testing.T) {
	t.Run("memory", func(t *testing.T) { testReloadLoweringRate(t, "") })
	t.Run("redis", func(t *testing.T) {
		testReloadLoweringRate(t, `limiter: {store: redis, redis: {url: "`+redistest.Start(t).URL()+`"}, timeout: 5s}
`)
	})
}

func testReloadLoweringRate(t *testing.T, limiterYAML string) {
	_, up := startMock(t, mockllm.Options{MaxTokens: 1})
	cfg := func(limit string) string {
		return mockConfig(up, "", `  - name: limited
    type: chat
    routes: [{backend: up}]
    limits: [`+limit+`]
`) + limiterYAML + "logging: {level: error, access_log: false}\n"
	}
	g := startGateway(t, cfg("{per: endpoint, requests: 60, window: hour, burst: 6}"))
	chat := func() (int, string) {
		resp, err := http.Post(g.url+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"limited","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("X-Ratelimit-Remaining-Requests")
	}
	ok := 0
	for range 7 {
		if c, _ := chat(); c == http.StatusOK {
			ok++
		}
	}
	if ok != 6 {
		t.Fatalf("before the reload: %d admitted, want 6 (the burst)", ok)
	}
	if err := os.WriteFile(g.path, []byte(cfg("{per: endpoint, requests: 6, window: hour, burst: 6}")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		if c, rem := chat(); c != http.StatusTooManyRequests || rem != "0" {
			t.Errorf("request %d after the reload that lowered the rate: %d, x-ratelimit-remaining-requests %q; want 429 and 0",
				i+1, c, rem)
		}
	}
}
