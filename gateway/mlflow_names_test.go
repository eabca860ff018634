package gateway

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/promtest"
)

// TestMLflowEndpointNamesNeedNotBeLabels: MLflow takes any endpoint name of word
// characters (Unicode ones too), '-' and '.', of any length. Such an endpoint's one
// route has no variant (a variant must be a label of 1..64 ASCII characters); the
// variant shown in x-tollgate-variant, the metrics and the access log is its backend's
// name, the endpoint's, as for any route without a variant.
func TestMLflowEndpointNamesNeedNotBeLabels(t *testing.T) {
	t.Parallel()
	for name, ep := range map[string]string{
		"70 characters": "azure-openai-gpt-4o-mini-2024-07-18-chat-completions-production-eastus2",
		"non-ASCII":     "résumé_chat",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseConfig("ml.yaml", []byte(`endpoints:
  - name: `+ep+`
    endpoint_type: llm/v1/chat
    model: {provider: openai, name: gpt-4o, config: {openai_api_key: k}}
`), env(nil))
			if err != nil {
				t.Fatalf("MLflow-valid endpoint name %q refused: %v", ep, err)
			}
		})
	}

	up := startChatOnlyUpstream(t)
	const ep = "résumé_chat"
	g := startGateway(t, `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
endpoints:
  - name: `+ep+`
    endpoint_type: llm/v1/chat
    model: {provider: openai, name: gpt-4o-mini, config: {openai_api_key: k, openai_api_base: "http://`+up.addr+`/v1"}}
`)
	resp, err := http.Post(g.url+"/endpoints/"+url.PathEscape(ep)+"/invocations", "application/json",
		strings.NewReader(`{"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Tollgate-Variant") != ep || resp.Header.Get("X-Tollgate-Backend") != ep {
		t.Fatalf("%d %s, x-tollgate-variant %q, x-tollgate-backend %q; want 200 and the endpoint's name in both",
			resp.StatusCode, raw, resp.Header.Get("X-Tollgate-Variant"), resp.Header.Get("X-Tollgate-Backend"))
	}
	fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := promtest.Sum(fams, "tollgate_requests_total", func(l map[string]string) bool {
		return l["endpoint"] == ep && l["variant"] == ep && l["code"] == "200"
	})
	if n != 1 {
		t.Fatalf("tollgate_requests_total{endpoint=%q,variant=%q,code=\"200\"} = %v, want 1", ep, ep, n)
	}
}

// TestMLflowProblemsNameMLflowKeys: README: "Problems name the MLflow file's line and
// key". A problem the checks of the built config find (the Anthropic provider serves
// chat only; an endpoint name clients cannot send) names the MLflow key to fix, never
// one of the built endpoint's (routes[0].backend, type, limits[0].window).
func TestMLflowProblemsNameMLflowKeys(t *testing.T) {
	for _, c := range []struct{ name, entry, want string }{
		{"anthropic completions", `  - name: claude-completions
    endpoint_type: llm/v1/completions
    model: {provider: anthropic, name: claude-2, config: {anthropic_api_key: k}}
`, "ml.yaml:3: endpoints[0].endpoint_type: llm/v1/completions is not served by provider anthropic: Tollgate reaches Anthropic through its Messages API, which serves llm/v1/chat only"},
		{"endpoint name", `  - name: "chat{1}"
    endpoint_type: llm/v1/chat
    model: {provider: openai, name: gpt-4o, config: {openai_api_key: k}}
`, "ml.yaml:2: endpoints[0].name: must not hold spaces"},
		{"legacy routes list", `  - name: a
    route_type: llm/v1/chat
    model: {provider: openai, name: gpt-4o, config: {openai_api_key: k}}
  - name: a
    route_type: llm/v1/chat
    model: {provider: openai, name: gpt-4o, config: {openai_api_key: k}}
`, "ml.yaml:5: routes[1].name: duplicate endpoint \"a\""},
	} {
		t.Run(c.name, func(t *testing.T) {
			list := "endpoints:\n"
			if strings.Contains(c.entry, "route_type") {
				list = "routes:\n"
			}
			_, err := ParseConfig("ml.yaml", []byte(list+c.entry), env(nil))
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("err =\n%v\nwant it to start with\n%s", err, c.want)
			}
		})
	}
}

// TestMLflowKeysOfBuiltConfig checks the mapping of the built config's keys onto the
// MLflow file's, for each kind of key the built config's checks and build report.
func TestMLflowKeysOfBuiltConfig(t *testing.T) {
	m := &mlflowKeys{list: "routes", entries: []mlflowSource{
		{index: 0, name: "a.b", typKey: "routes[0].route_type", mp: mlflowProviders["openai"], config: map[string]string{}},
		{index: 2, name: "a", typKey: "routes[2].endpoint_type", mp: mlflowProviders["mistral"], config: map[string]string{}},
	}}
	for in, want := range map[string]string{
		"endpoints[1].type":                "routes[2].endpoint_type",
		"endpoints[1].name":                "routes[2].name",
		"endpoints[1]":                     "routes[2]",
		"endpoints[0].routes[0].backend":   "routes[0].model",
		"endpoints[1].limits[0].window":    "routes[2].limit.renewal_period",
		"endpoints[1].limits[0].per":       "routes[2].limit.key",
		"endpoints[1].limits[0].requests":  "routes[2].limit.calls",
		"endpoints[0].timeout":             "routes[0]",
		"backends.a.b.base_url":            "routes[0].model.config.openai_api_base",
		"backends.a.api_key":               "routes[2].model.config.mistral_api_key",
		"backends.a":                       "routes[2].model",
		"auth.keys[0].endpoints[0]":        "auth.keys[0].endpoints[0]",
		"endpoints[7].type":                "endpoints[7].type",
		"server.listen":                    "server.listen",
		"backends.unknown.base_url":        "backends.unknown.base_url",
		"endpoints[0].routes[0].variant":   "routes[0].model",
		"endpoints[1].limits[0]":           "routes[2].limit",
		"endpoints[1].fallbacks[0]":        "routes[2].model",
		"endpoints[0].default_max_tokens":  "routes[0]",
		"backends.a.b.headers.X-Something": "routes[0].model",
	} {
		if got := m.key(in); got != want {
			t.Errorf("key(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestMLflowMissingEndpointType: a file of MLflow endpoints is told by any entry with
// MLflow's keys (endpoint_type, route_type, a model naming a provider), so that an entry
// without its endpoint_type is reported as such, not the whole file as one of ours
// full of unknown keys; under the older routes: list the key is route_type.
func TestMLflowMissingEndpointType(t *testing.T) {
	for _, c := range []struct{ name, yaml, want string }{
		{"first entry", `endpoints:
  - name: chat
    model: {provider: openai, name: gpt-4o, config: {openai_api_key: k}}
  - name: embeddings
    endpoint_type: llm/v1/embeddings
    model: {provider: openai, name: text-embedding-3-small, config: {openai_api_key: k}}
`, "ml.yaml:2: endpoints[0].endpoint_type: is required: llm/v1/chat, llm/v1/completions or llm/v1/embeddings"},
		{"later entry", `endpoints:
  - name: chat
    endpoint_type: llm/v1/chat
    model: {provider: openai, name: gpt-4o, config: {openai_api_key: k}}
  - name: embeddings
    model: {provider: openai, name: text-embedding-3-small, config: {openai_api_key: k}}
`, "ml.yaml:5: endpoints[1].endpoint_type: is required: llm/v1/chat, llm/v1/completions or llm/v1/embeddings"},
		{"only entry", `endpoints:
  - name: chat
    model: {provider: openai, name: gpt-4o, config: {openai_api_key: k}}
`, "ml.yaml:2: endpoints[0].endpoint_type: is required: llm/v1/chat, llm/v1/completions or llm/v1/embeddings"},
		{"routes list", `routes:
  - name: chat
    model: {provider: openai, name: gpt-4o, config: {openai_api_key: k}}
`, "ml.yaml:2: routes[0].route_type: is required: llm/v1/chat, llm/v1/completions or llm/v1/embeddings"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig("ml.yaml", []byte(c.yaml), env(nil))
			if err == nil || err.Error() != c.want {
				t.Fatalf("err =\n%v\nwant\n%s", err, c.want)
			}
		})
	}
}
