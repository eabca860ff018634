package gateway

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/providers/mockllm"
	"github.com/tollgate/tollgate/router"
)

// mlflowTrafficConfig is MLflow's current config format: endpoints, and routes beside
// them that split a task's traffic between endpoints of its type by percentage.
const mlflowTrafficConfig = `endpoints:
  - name: chat1
    endpoint_type: llm/v1/chat
    model:
      provider: openai
      name: gpt-4o-mini
      config:
        openai_api_key: $OPENAI_API_KEY
    limit: {renewal_period: minute, calls: 10}
  - name: chat2
    endpoint_type: llm/v1/chat
    model:
      provider: openai
      name: gpt-4o
      config:
        openai_api_key: $OPENAI_API_KEY
  - name: embed
    endpoint_type: llm/v1/embeddings
    model:
      provider: openai
      name: text-embedding-3-small
      config:
        openai_api_key: $OPENAI_API_KEY
routes:
  - name: chat-route
    task_type: llm/v1/chat
    destinations:
      - name: chat1
        traffic_percentage: 80
      - name: chat2
        traffic_percentage: 20
    routing_strategy: TRAFFIC_SPLIT
`

// TestMLflowTrafficRoutes: a routes: list beside endpoints: (MLflow's traffic routes)
// loads as an endpoint of its task_type whose routes go to the destinations' endpoints
// by their traffic_percentage, with no limit of its own (MLflow applies none), the
// endpoints themselves as they were.
func TestMLflowTrafficRoutes(t *testing.T) {
	cfg, err := ParseConfig("ml.yaml", []byte(mlflowTrafficConfig), env(map[string]string{"OPENAI_API_KEY": "sk-o"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Endpoints) != 4 {
		t.Fatalf("endpoints = %d, want the 3 endpoints and the route", len(cfg.Endpoints))
	}
	r := cfg.Endpoints[3]
	want := []router.Route{{Backend: "chat1", Weight: 80}, {Backend: "chat2", Weight: 20}}
	if r.Name != "chat-route" || r.Type != "chat" || len(r.Routes) != 2 || r.Routes[0] != want[0] || r.Routes[1] != want[1] || len(r.Limits) != 0 {
		t.Fatalf("route endpoint = %+v", r)
	}
	if r.Sticky != nil {
		t.Fatalf("sticky %+v: MLflow picks each request's destination at random", r.Sticky)
	}
	if len(cfg.Endpoints[0].Limits) != 1 || cfg.Backends["chat2"].Model != "gpt-4o" {
		t.Fatalf("endpoints changed: %+v %+v", cfg.Endpoints[0], cfg.Backends["chat2"])
	}
}

// TestMLflowTrafficRouteErrors: a route MLflow refuses is refused naming the route's own
// keys and lines.
func TestMLflowTrafficRouteErrors(t *testing.T) {
	head, _, _ := strings.Cut(mlflowTrafficConfig, "routes:\n")
	for _, c := range []struct{ name, routes, want string }{
		{"unknown destination", `  - name: r
    task_type: llm/v1/chat
    destinations:
      - {name: chat1, traffic_percentage: 50}
      - {name: chat3, traffic_percentage: 50}
`, "ml.yaml:29: routes[0].destinations[1].name: endpoint \"chat3\" is not in endpoints"},
		{"other endpoint type", `  - name: r
    task_type: llm/v1/chat
    destinations:
      - {name: chat1, traffic_percentage: 50}
      - {name: embed, traffic_percentage: 50}
`, "ml.yaml:29: routes[0].destinations[1].name: endpoint \"embed\" is llm/v1/embeddings, the route's task_type llm/v1/chat"},
		{"percentages", `  - name: r
    task_type: llm/v1/chat
    destinations:
      - {name: chat1, traffic_percentage: 50}
      - {name: chat2, traffic_percentage: 40}
`, "ml.yaml:27: routes[0].destinations: traffic_percentage values add up to 90, want 100"},
		{"percentage range", `  - name: r
    task_type: llm/v1/chat
    destinations:
      - {name: chat1, traffic_percentage: 150}
      - {name: chat2, traffic_percentage: -50}
`, "ml.yaml:28: routes[0].destinations[0].traffic_percentage: must be 0..100"},
		{"strategy", `  - name: r
    task_type: llm/v1/chat
    destinations: [{name: chat1, traffic_percentage: 100}]
    routing_strategy: ROUND_ROBIN
`, "ml.yaml:28: routes[0].routing_strategy: must be TRAFFIC_SPLIT"},
		{"task type", `  - name: r
    destinations: [{name: chat1, traffic_percentage: 100}]
`, "ml.yaml:25: routes[0].task_type: is required: llm/v1/chat, llm/v1/completions or llm/v1/embeddings"},
		{"no destinations", `  - name: r
    task_type: llm/v1/chat
`, "ml.yaml:25: routes[0].destinations: needs at least one destination"},
		{"name of an endpoint", `  - name: chat2
    task_type: llm/v1/chat
    destinations: [{name: chat1, traffic_percentage: 100}]
`, "ml.yaml:25: routes[0].name: duplicate endpoint \"chat2\""},
		{"endpoint keys", `  - name: r
    endpoint_type: llm/v1/chat
    destinations: [{name: chat1, traffic_percentage: 100}]
`, "ml.yaml:26: routes[0].endpoint_type: unknown key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig("ml.yaml", []byte(head+"routes:\n"+c.routes), env(map[string]string{"OPENAI_API_KEY": "sk-o"}))
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("err =\n%v\nwant it to start with\n%s", err, c.want)
			}
		})
	}
}

// TestMLflowTrafficRouteServes: a traffic route answers on MLflow's invocation route
// and the OpenAI one from its destinations, and is not listed among the endpoints
// (MLflow lists endpoints only).
func TestMLflowTrafficRouteServes(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{Model: "gpt-4o-mini", MaxTokens: 4})
	cfg := strings.NewReplacer(
		"        openai_api_key: $OPENAI_API_KEY\n", "        openai_api_key: $OPENAI_API_KEY\n        openai_api_base: \"http://"+addr+"/v1\"\n",
		"traffic_percentage: 80", "traffic_percentage: 100", "traffic_percentage: 20", "traffic_percentage: 0",
	).Replace(mlflowTrafficConfig)
	t.Setenv("OPENAI_API_KEY", "sk-o")
	g := startGateway(t, "server: {listen: \"127.0.0.1:0\", admin_listen: \"127.0.0.1:0\"}\n"+cfg)
	for _, path := range []string{"/endpoints/chat-route/invocations", "/gateway/chat-route/invocations"} {
		resp, err := http.Post(g.url+path, "application/json", strings.NewReader(`{"messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("x-tollgate-backend") != "chat1" || resp.Header.Get("x-tollgate-variant") != "chat1" {
			t.Fatalf("%s: %d from %q (variant %q)", path, resp.StatusCode, resp.Header.Get("x-tollgate-backend"), resp.Header.Get("x-tollgate-variant"))
		}
	}
	resp, err := http.Post(g.url+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"chat-route","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("x-tollgate-backend") != "chat1" {
		t.Fatalf("/v1/chat/completions: %d from %q", resp.StatusCode, resp.Header.Get("x-tollgate-backend"))
	}

	resp, err = http.Get(g.url + "/api/2.0/endpoints/")
	if err != nil {
		t.Fatal(err)
	}
	var list struct{ Endpoints []struct{ Name string } }
	err = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if err != nil || len(list.Endpoints) != 3 || list.Endpoints[2].Name != "embed" {
		t.Fatalf("listing = %+v (%v)", list, err)
	}
	resp, err = http.Get(g.url + "/api/2.0/endpoints/chat-route")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("GET /api/2.0/endpoints/chat-route: %d, want 404 as MLflow answers", resp.StatusCode)
	}
}

// TestMLflowTrafficRouteKeys checks the mapping of a traffic route's built endpoint's
// keys onto the route's: its routes are the destinations.
func TestMLflowTrafficRouteKeys(t *testing.T) {
	m := &mlflowKeys{list: "endpoints", entries: []mlflowSource{
		{index: 0, name: "a", typKey: "endpoints[0].endpoint_type", mp: mlflowProviders["openai"], config: map[string]string{}},
		{index: 1, name: "r", typKey: "routes[1].task_type", trafficRoute: true},
	}}
	for in, want := range map[string]string{
		"endpoints[1]":                   "routes[1]",
		"endpoints[1].name":              "routes[1].name",
		"endpoints[1].type":              "routes[1].task_type",
		"endpoints[1].routes":            "routes[1].destinations",
		"endpoints[1].routes[2]":         "routes[1].destinations[2]",
		"endpoints[1].routes[2].weight":  "routes[1].destinations[2].traffic_percentage",
		"endpoints[1].routes[2].backend": "routes[1].destinations[2].name",
		"endpoints[1].timeout":           "routes[1]",
		"endpoints[0].type":              "endpoints[0].endpoint_type",
		"backends.a.api_key":             "endpoints[0].model.config.openai_api_key",
		"backends.r":                     "backends.r",
	} {
		if got := m.key(in); got != want {
			t.Errorf("key(%q) = %q, want %q", in, got, want)
		}
	}
}
