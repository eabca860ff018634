package gateway

import (
	"context"
	"io"
	"math"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// keyMetricsConfig: team-a reaches a priced endpoint and a free one, team-b only the
// free one, ops (with a limit of one request a minute, and an expires_at far ahead)
// the priced one.
func keyMetricsConfig(addr string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
auth:
  keys:
    - {name: team-a, key: sk-a-secret-0001, endpoints: [paid, free]}
    - {name: team-b, key: sk-b-secret-0002, endpoints: [free]}
    - {name: ops, key: sk-ops-secret-0003, endpoints: [paid], expires_at: "2099-12-31T23:59:59Z", limits: [{per: api_key, requests: 1, window: minute}]}
backends:
  paid: {provider: openai, base_url: "http://` + addr + `/v1", model: up-model, pricing: {input_per_million: 3, output_per_million: 15}}
  free: {provider: openai, base_url: "http://` + addr + `/v1", model: up-model}
endpoints:
  - {name: paid, type: chat, routes: [{backend: paid}]}
  - {name: free, type: chat, routes: [{backend: free}]}
`
}

// A platform team's chargeback: each client key's requests, tokens and cost are
// counted under the key's name (never the key), equal to what the endpoint series
// count for them; every key's series are there at 0 from the start, its cost only when
// it reaches a priced backend; a refused request is a request of the key.
func TestKeyMetrics(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 12, Seed: 3})
	g := startGateway(t, keyMetricsConfig(addr))
	fams := scrapeAdmin(t, g)
	for _, key := range []string{"team-a", "team-b", "ops"} {
		if n, v := seriesWith(fams, "tollgate_key_requests_total", "key", key); n != 1 || v != 0 {
			t.Fatalf("at start, tollgate_key_requests_total{key=%q}: %d series, %v", key, n, v)
		}
		if n, _ := seriesWith(fams, "tollgate_key_tokens_total", "key", key); n != 2 {
			t.Fatalf("at start, tollgate_key_tokens_total{key=%q}: %d series, want input and output", key, n)
		}
	}
	if n, _ := seriesWith(fams, "tollgate_key_cost_usd_total", "key", "team-b"); n != 0 {
		t.Fatal("team-b reaches no priced backend, yet has a cost series")
	}
	if n, _ := seriesWith(fams, "tollgate_key_cost_usd_total", "key", "team-a"); n != 1 {
		t.Fatal("team-a reaches a priced backend and has no cost series")
	}

	ctx := context.Background()
	var inA, outA, inB, outB int64
	call := func(key, model string) error {
		t.Helper()
		c := g.client(option.WithAPIKey(key))
		res, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: model, Messages: userMsg("Count me.")})
		if err == nil {
			switch key {
			case "sk-a-secret-0001":
				inA, outA = inA+res.Usage.PromptTokens, outA+res.Usage.CompletionTokens
			case "sk-b-secret-0002":
				inB, outB = inB+res.Usage.PromptTokens, outB+res.Usage.CompletionTokens
			}
		}
		return err
	}
	for _, c := range [][2]string{{"sk-a-secret-0001", "paid"}, {"sk-a-secret-0001", "paid"}, {"sk-a-secret-0001", "free"}, {"sk-b-secret-0002", "free"}, {"sk-ops-secret-0003", "paid"}} {
		if err := call(c[0], c[1]); err != nil {
			t.Fatalf("%s on %s: %v", c[0], c[1], err)
		}
	}
	// Refused: ops past its limit (429), team-b on an endpoint it may not use (404).
	if err := call("sk-ops-secret-0003", "paid"); err == nil {
		t.Fatal("ops' second call was not refused")
	}
	if err := call("sk-b-secret-0002", "paid"); err == nil {
		t.Fatal("team-b reached the paid endpoint")
	}

	resp, err := http.Get("http://" + g.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(raw), "secret-000") {
		t.Fatal("a client key in /metrics")
	}
	fams = scrapeAdmin(t, g)
	want := func(name, key string, v float64, labels ...string) {
		t.Helper()
		if _, got := seriesWith(fams, name, append([]string{"key", key}, labels...)...); math.Abs(got-v) > 1e-12 {
			t.Errorf("%s{key=%q %v} = %v, want %v", name, key, labels, got, v)
		}
	}
	want("tollgate_key_requests_total", "team-a", 3)
	want("tollgate_key_requests_total", "team-b", 2)
	want("tollgate_key_requests_total", "ops", 2)
	want("tollgate_key_tokens_total", "team-a", float64(inA), "type", "input")
	want("tollgate_key_tokens_total", "team-a", float64(outA), "type", "output")
	want("tollgate_key_tokens_total", "team-b", float64(inB), "type", "input")
	want("tollgate_key_tokens_total", "team-b", float64(outB), "type", "output")
	// The cost is the endpoint series' own: team-a's and ops' calls on paid.
	_, paid := seriesWith(fams, "tollgate_cost_usd_total", "endpoint", "paid")
	_, costA := seriesWith(fams, "tollgate_key_cost_usd_total", "key", "team-a")
	_, costOps := seriesWith(fams, "tollgate_key_cost_usd_total", "key", "ops")
	if paid == 0 || math.Abs(costA+costOps-paid) > 1e-12 {
		t.Errorf("keys' cost %v + %v, the endpoint's %v", costA, costOps, paid)
	}
	if _, all := seriesWith(fams, "tollgate_tokens_total"); all != float64(inA+outA+inB+outB)+func() float64 {
		_, v := seriesWith(fams, "tollgate_key_tokens_total", "key", "ops")
		return v
	}() {
		t.Errorf("tollgate_tokens_total %v is not the keys' tokens added up", all)
	}

	// A reload removing team-b, which counted, keeps its series for their last scrape
	// (removed later, as any removed label set's); a key added is there at 0.
	cfg := strings.Replace(keyMetricsConfig(addr), "    - {name: team-b, key: sk-b-secret-0002, endpoints: [free]}\n",
		"    - {name: team-c, key: sk-c-secret-0004}\n", 1)
	if err := os.WriteFile(g.path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	fams = scrapeAdmin(t, g)
	if n, v := seriesWith(fams, "tollgate_key_requests_total", "key", "team-c"); n != 1 || v != 0 {
		t.Fatalf("after the reload, team-c: %d series, %v", n, v)
	}
	if _, v := seriesWith(fams, "tollgate_key_requests_total", "key", "team-a"); v != 3 {
		t.Fatalf("after the reload, team-a's count %v, want it kept at 3", v)
	}
}
