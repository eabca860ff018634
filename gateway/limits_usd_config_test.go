package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// usdBackends are a priced backend and a free one (a self-hosted vLLM).
const usdBackends = `backends:
  paid: {provider: mock, model: m, pricing: {input_per_million: 0.5, output_per_million: 1.5}}
  free: {provider: mock, model: m}
`

// A usd limit takes dollars with decimals, its burst too, in an endpoint's limits
// and a key's; the config keeps them as written.
func TestUSDLimitConfigDecimals(t *testing.T) {
	cfg, problems := parseProblems(t, usdBackends+`endpoints:
  - name: chat
    type: chat
    routes: [{backend: paid}]
    limits:
      - {per: api_key, usd: 25, window: day}
      - {per: user, usd: 0.50, window: hour, burst: 2}
      - {per: endpoint, usd: 1e3, window: day, burst: 1500.25}
auth:
  keys:
    - name: team-a
      key: sk-a
      limits:
        - per: api_key
          usd: ${BUDGET}
          window: day
`, map[string]string{"BUDGET": "12.5"})
	if problems != nil {
		t.Fatalf("problems: %q", problems)
	}
	l := cfg.Endpoints[0].Limits
	if l[0].USD != 25 || l[1].USD != 0.5 || l[1].Burst != 2 || l[2].USD != 1000 || l[2].Burst != 1500.25 {
		t.Errorf("limits %+v", l)
	}
	if k := cfg.Auth.Keys[0].Limits[0]; k.USD != 12.5 {
		t.Errorf("key limit %+v, want usd 12.5 from the variable", k)
	}
	if got := limitName(l[0]); got != "api_key:usd:day" {
		t.Errorf("limitName = %q, want api_key:usd:day", got)
	}
}

// Each problem of a usd limit names its file, line and key: its value, a whole
// number where one belongs, one amount only, and a budget that would count nothing
// (no backend it can reach has a price).
func TestUSDLimitConfigProblems(t *testing.T) {
	for _, tc := range []struct {
		name, y string
		want    []string
	}{
		{"negative", usdBackends + "endpoints:\n  - {name: chat, type: chat, routes: [{backend: paid}], limits: [{per: user, usd: -2, window: day}]}\n",
			[]string{"t.yaml:5: endpoints[0].limits[0].usd: must be a finite number of dollars, more than 0"}},
		{"not finite", usdBackends + "endpoints:\n  - {name: chat, type: chat, routes: [{backend: paid}], limits: [{per: user, usd: .inf, window: day}]}\n",
			[]string{"t.yaml:5: endpoints[0].limits[0].usd: must be a finite number of dollars, more than 0"}},
		{"not a number", usdBackends + "endpoints:\n  - {name: chat, type: chat, routes: [{backend: paid}], limits: [{per: user, usd: ten, window: day}]}\n",
			nil}, // the decoder's own message, checked below
		{"a burst of no dollars", usdBackends + "endpoints:\n  - {name: chat, type: chat, routes: [{backend: paid}], limits: [{per: user, usd: 2, window: day, burst: -1}]}\n",
			[]string{"t.yaml:5: endpoints[0].limits[0].burst: must be a finite number of dollars, more than 0"}},
		{"a decimal burst of tokens", usdBackends + "endpoints:\n  - {name: chat, type: chat, routes: [{backend: paid}], limits: [{per: user, tokens: 100, window: day, burst: 2.5}]}\n",
			[]string{"t.yaml:5: endpoints[0].limits[0].burst: must be a whole number, not 2.5"}},
		{"usd and tokens in one limit", usdBackends + "endpoints:\n  - {name: chat, type: chat, routes: [{backend: paid}], limits: [{per: user, usd: 2, tokens: 5, window: day}]}\n",
			[]string{"t.yaml:5: endpoints[0].limits[0]: needs exactly one of requests, tokens, usd or concurrency"}},
		{"an endpoint of free backends", usdBackends + "endpoints:\n  - {name: chat, type: chat, routes: [{backend: free}], limits: [{per: api_key, usd: 2, window: day}]}\n",
			[]string{`t.yaml:5: endpoints[0].limits[0].usd: no backend of endpoint "chat" (its routes and fallbacks) has a price, so this budget would count nothing (a backend without a price costs 0): give a backend pricing, or limit tokens instead`}},
		{"a key that reaches only free backends",
			usdBackends + `endpoints:
  - {name: chat, type: chat, routes: [{backend: free}]}
  - {name: paid, type: chat, routes: [{backend: paid}]}
auth:
  keys:
    - {name: a, key: sk-a, endpoints: [chat], limits: [{per: api_key, usd: 2, window: day}]}
`,
			[]string{`t.yaml:9: auth.keys[0].limits[0].usd: no backend the key can reach has a price, so this budget would count nothing (a backend without a price costs 0): give a backend pricing, or limit tokens instead`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, problems := parseProblems(t, tc.y, nil)
			if tc.want == nil {
				if len(problems) != 1 || !strings.HasPrefix(problems[0], "t.yaml:5: endpoints[0].limits[0].usd: ") {
					t.Fatalf("problems = %q, want one naming endpoints[0].limits[0].usd", problems)
				}
				return
			}
			if !slices.Equal(problems, tc.want) {
				t.Fatalf("problems = %q\nwant       %q", problems, tc.want)
			}
		})
	}
}

// A budget counts whatever a priced backend it may reach charges: one priced fallback
// is enough (a route's free backend may fail over to it), and so, for a key, is one
// priced backend among the endpoints it may call; a tier's price alone is a price.
func TestUSDLimitConfigPricedSomewhere(t *testing.T) {
	for _, tc := range []struct{ name, y string }{
		{"a priced fallback", usdBackends + "endpoints:\n  - {name: chat, type: chat, routes: [{backend: free}], fallbacks: [paid], limits: [{per: api_key, usd: 2, window: day}]}\n"},
		{"a key calling every endpoint", usdBackends + `endpoints:
  - {name: chat, type: chat, routes: [{backend: free}]}
  - {name: paid, type: chat, routes: [{backend: paid}]}
auth:
  keys:
    - {name: a, key: sk-a, limits: [{per: api_key, usd: 2, window: day}]}
`},
		{"a tier's price", `backends:
  tiered: {provider: openai, base_url: "http://127.0.0.1:1/v1", model: m, pricing: {tiers: {flex: {input_per_million: 1, output_per_million: 2}}}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: tiered}], limits: [{per: api_key, usd: 2, window: day}]}
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, problems := parseProblems(t, tc.y, nil); problems != nil {
				t.Fatalf("problems = %q", problems)
			}
		})
	}
}

// An MLflow file's own limit counts calls only; a key of Tollgate's auth section beside
// its endpoints may carry a budget, refused as anywhere when no backend has a price
// (MLflow's configs have none), under its own key.
func TestUSDLimitMLflowKey(t *testing.T) {
	_, problems := parseProblems(t, `endpoints:
  - name: chat
    endpoint_type: llm/v1/chat
    model: {provider: openai, name: gpt-4o, config: {openai_api_key: k}}
auth:
  keys:
    - {name: a, key: sk-a, limits: [{per: api_key, usd: 5, window: day}]}
`, nil)
	want := "t.yaml:7: auth.keys[0].limits[0].usd: no backend the key can reach has a price"
	if len(problems) != 1 || !strings.HasPrefix(problems[0], want) {
		t.Fatalf("problems = %q, want one beginning %q", problems, want)
	}
}

// What shows limits beside the config: MLflow's endpoint listing gives a budget as it
// gives any limit of a Tollgate endpoint, as no MLflow limit (MLflow's counts calls
// only), and the admin API's reload lists a budget's problem under its key, keeping
// the running config.
func TestUSDLimitListingAndAdminReload(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	cfg := usdTestConfig(addr, "{per: api_key, usd: 5, window: day}", "{per: endpoint, usd: 0.5, window: hour, burst: 2}", "")
	g := startGateway(t, cfg)
	req, _ := http.NewRequest("GET", g.url+"/api/2.0/endpoints/paid", nil)
	req.Header.Set("Authorization", "Bearer sk-usd-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var ep map[string]any
	if err := json.Unmarshal(body, &ep); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if l, ok := ep["limit"]; !ok || l != nil {
		t.Errorf("MLflow's limit of an endpoint with a budget: %v, want null", l)
	}

	bad := strings.Replace(cfg, "pricing: {input_per_million: 0.37, output_per_million: 1.13}", "pricing: {}", 1)
	if bad == cfg {
		t.Fatal("the config's pricing was not found")
	}
	if err := os.WriteFile(g.path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := adminCall(t, "POST", "http://"+g.AdminAddr()+"/admin/reload", "", "")
	problems, _ := json.Marshal(out["problems"])
	if code != 422 || !strings.Contains(string(problems), "endpoints[0].limits[0].usd: no backend of endpoint") ||
		!strings.Contains(string(problems), "auth.keys[0].limits[0].usd: no backend the key can reach has a price") ||
		strings.Contains(string(problems), "sk-usd-secret") {
		t.Fatalf("reload: %d %s", code, problems)
	}
	if got := usdProbe(t, g); got != 5_000_000_000 {
		t.Errorf("the running config's budget: %d left, want 5000000000", got)
	}
}
