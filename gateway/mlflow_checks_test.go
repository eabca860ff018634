package gateway

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/router"
)

// mlflowChat is an MLflow endpoint entry of llm/v1/chat on the openai provider, 7
// lines.
func mlflowChat(name string) string {
	return `  - name: ` + name + `
    endpoint_type: llm/v1/chat
    model:
      provider: openai
      name: gpt-4o
      config:
        openai_api_key: sk-o
`
}

// TestMLflowChecksAsMLflow: an MLflow file loads where MLflow's gateway loads it and is
// refused where MLflow refuses it, each mistake with one message naming the MLflow
// file's line and key.
func TestMLflowChecksAsMLflow(t *testing.T) {
	unsupported := supportedList()
	for _, c := range []struct{ name, file, want string }{
		{"unsupported provider's nested config", `endpoints:
  - name: a
    endpoint_type: llm/v1/chat
    model:
      provider: bedrock
      name: anthropic.claude-v2
      config:
        aws_config:
          aws_region: us-east-1
          aws_access_key_id: x
`, `ml.yaml:5: endpoints[0].model.provider: provider "bedrock" is not supported ` + unsupported},
		{"unsupported provider's config shared by an anchor", `endpoints:
  - name: a
    endpoint_type: llm/v1/chat
    model:
      provider: bedrock
      name: anthropic.claude-v2
      config: &c
        aws_config: {aws_region: us-east-1}
  - name: b
    endpoint_type: llm/v1/chat
    model: {provider: openai, name: gpt-4o, config: *c}
`, `ml.yaml:8: endpoints[1].model.config.aws_config: must be a string, not a mapping
ml.yaml:5: endpoints[0].model.provider: provider "bedrock" is not supported ` + unsupported + `
ml.yaml:11: endpoints[1].model.config.openai_api_key: is required for provider openai`},
		{"unsupported provider's config merged in", `base: &base
  config:
    aws_config: {aws_region: us-east-1}
endpoints:
  - name: a
    endpoint_type: llm/v1/chat
    model:
      <<: *base
      provider: amazon-bedrock
      name: anthropic.claude-v2
`, `ml.yaml:1: base: unknown key (known keys: auth, endpoints, limiter, logging, routes, server, tracing)
ml.yaml:9: endpoints[0].model.provider: provider "amazon-bedrock" is not supported ` + unsupported},

		{"deployment with openai_api_type openai", `endpoints:
  - name: a
    endpoint_type: llm/v1/chat
    model:
      provider: openai
      name: gpt-4o
      config:
        openai_api_key: sk-o
        openai_api_type: openai
        openai_deployment_name: my-deployment
`, "ml.yaml:10: endpoints[0].model.config.openai_deployment_name: applies only when openai_api_type is azure or azuread, not openai"},
		{"deployment on provider openai without a type", `endpoints:
  - name: a
    endpoint_type: llm/v1/chat
    model:
      provider: openai
      name: gpt-4o
      config:
        openai_api_key: sk-o
        openai_deployment_name: my-deployment
`, "ml.yaml:9: endpoints[0].model.config.openai_deployment_name: applies only when openai_api_type is azure or azuread (left out, it is openai for provider openai)"},
		{"organization with openai_api_type azure", `endpoints:
  - name: a
    endpoint_type: llm/v1/chat
    model:
      provider: openai
      name: gpt-4o
      config:
        openai_api_key: k
        openai_api_type: azure
        openai_api_base: https://r.openai.azure.com
        openai_api_version: "2024-02-01"
        openai_deployment_name: d
        openai_organization: org-1
`, "ml.yaml:13: endpoints[0].model.config.openai_organization: applies only when openai_api_type is openai, not azure"},

		{"no model name nor deployment on provider azure", `endpoints:
  - name: a
    endpoint_type: llm/v1/chat
    model:
      provider: azure
      config:
        openai_api_key: k
        openai_api_base: https://r.openai.azure.com
`, "ml.yaml:6: endpoints[0].model.config.openai_deployment_name: is required for provider azure without model.name (the deployment name in the Azure portal)"},

		{"traffic percentages", "endpoints:\n" + mlflowChat("chat1") + mlflowChat("chat2") + `routes:
  - name: r
    task_type: llm/v1/chat
    destinations:
      - {name: chat1, traffic_percentage: 50}
      - {name: chat2, traffic_percentage: 40}
`, "ml.yaml:19: routes[0].destinations: traffic_percentage values add up to 90, want 100"},
		{"unknown destination, percentages not summed", "endpoints:\n" + mlflowChat("chat1") + `routes:
  - name: r
    task_type: llm/v1/chat
    destinations:
      - {name: chat1, traffic_percentage: 50}
      - {name: chat3, traffic_percentage: 60}
`, `ml.yaml:14: routes[0].destinations[1].name: endpoint "chat3" is not in endpoints`},
		{"destination without a name", "endpoints:\n" + mlflowChat("chat1") + `routes:
  - name: r
    task_type: llm/v1/chat
    destinations:
      - {name: chat1, traffic_percentage: 50}
      - {traffic_percentage: 50}
`, `ml.yaml:14: routes[0].destinations[1].name: is required`},
		{"destination without a percentage", "endpoints:\n" + mlflowChat("chat1") + mlflowChat("chat2") + `routes:
  - name: r
    task_type: llm/v1/chat
    destinations:
      - {name: chat1, traffic_percentage: 100}
      - {name: chat2}
`, `ml.yaml:21: routes[0].destinations[1].traffic_percentage: is required`},
		{"percentage of a fraction", "endpoints:\n" + mlflowChat("chat1") + mlflowChat("chat2") + `routes:
  - name: r
    task_type: llm/v1/chat
    destinations:
      - {name: chat1, traffic_percentage: 50.5}
      - {name: chat2, traffic_percentage: 49.5}
`, "ml.yaml:20: routes[0].destinations[0].traffic_percentage: must be a whole number, not 50.5\nml.yaml:21: routes[0].destinations[1].traffic_percentage: must be a whole number, not 49.5"},
		{"percentage out of range", "endpoints:\n" + mlflowChat("chat1") + mlflowChat("chat2") + `routes:
  - name: r
    task_type: llm/v1/chat
    destinations:
      - {name: chat1, traffic_percentage: 150}
      - {name: chat2, traffic_percentage: -50}
`, "ml.yaml:20: routes[0].destinations[0].traffic_percentage: must be 0..100\nml.yaml:21: routes[0].destinations[1].traffic_percentage: must be 0..100"},
		{"destination of an unsupported provider", "endpoints:\n" + mlflowChat("chat1") + `  - name: chat2
    endpoint_type: llm/v1/chat
    model: {provider: cohere, name: command, config: {cohere_api_key: k}}
routes:
  - name: r
    task_type: llm/v1/chat
    destinations:
      - {name: chat1, traffic_percentage: 50}
      - {name: chat2, traffic_percentage: 50}
`, `ml.yaml:11: endpoints[1].model.provider: provider "cohere" is not supported ` + unsupported},
		{"destination without endpoint_type", "endpoints:\n" + mlflowChat("chat1") + `  - name: chat2
    model: {provider: openai, name: gpt-4o, config: {openai_api_key: k}}
routes:
  - name: r
    task_type: llm/v1/chat
    destinations:
      - {name: chat1, traffic_percentage: 50}
      - {name: chat2, traffic_percentage: 50}
`, "ml.yaml:9: endpoints[1].endpoint_type: is required: llm/v1/chat, llm/v1/completions or llm/v1/embeddings"},
		{"destination the anthropic provider cannot serve", `endpoints:
  - name: c1
    endpoint_type: llm/v1/completions
    model: {provider: openai, name: gpt-4o, config: {openai_api_key: k}}
  - name: c2
    endpoint_type: llm/v1/completions
    model: {provider: anthropic, name: claude-2, config: {anthropic_api_key: k}}
routes:
  - name: r
    task_type: llm/v1/completions
    destinations:
      - {name: c1, traffic_percentage: 50}
      - {name: c2, traffic_percentage: 50}
`, "ml.yaml:6: endpoints[1].endpoint_type: llm/v1/completions is not served by provider anthropic: Tollgate reaches Anthropic through its Messages API, which serves llm/v1/chat only"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig("ml.yaml", []byte(c.file), env(nil))
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want\n%s", err, c.want)
			}
			if got := ce.Error(); got != c.want {
				t.Fatalf("err =\n%s\nwant\n%s", got, c.want)
			}
		})
	}
}

// supportedList is the end of the message refusing a provider.
func supportedList() string {
	return "(supported: anthropic, azure, azuread, huggingface-text-generation-inference, mistral, mlflow-model-serving, openai, openai-compatible, togetherai)"
}

// TestMLflowTakesWhatMLflowTakes: files MLflow's gateway loads load, and become what
// MLflow would send: no model where model.name is left out on a provider that needs
// none, and an endpoint named twice in a route drawn by its shares' sum.
func TestMLflowTakesWhatMLflowTakes(t *testing.T) {
	cfg, err := ParseConfig("ml.yaml", []byte(`endpoints:
  - name: served
    endpoint_type: llm/v1/completions
    model:
      provider: mlflow-model-serving
      config: {model_server_url: "http://127.0.0.1:5001"}
  - name: tgi
    endpoint_type: llm/v1/chat
    model:
      provider: huggingface-text-generation-inference
      config: {hf_server_url: "http://127.0.0.1:8080"}
  - name: azure
    endpoint_type: llm/v1/chat
    model:
      provider: openai
      config:
        openai_api_key: k
        openai_api_type: azuread
        openai_api_base: https://r.openai.azure.com
        openai_api_version: "2024-02-01"
        openai_deployment_name: gpt4o-prod
  - name: azure-untyped
    endpoint_type: llm/v1/completions
    model:
      provider: azure
      config: {openai_api_key: k, openai_api_base: "https://r.openai.azure.com", openai_deployment_name: d}
  - name: chat
    endpoint_type: llm/v1/chat
    model: {provider: openai, name: gpt-4o, config: {openai_api_key: k}}
routes:
  - name: r
    task_type: llm/v1/chat
    destinations:
      - {name: chat, traffic_percentage: 30}
      - {name: tgi, traffic_percentage: 40}
      - {name: chat, traffic_percentage: 30}
`), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]struct {
		model      string
		noModel    bool
		deployment string
	}{
		"served":        {"", true, ""},
		"tgi":           {"tgi", false, ""},
		"azure":         {"", true, "gpt4o-prod"},
		"azure-untyped": {"", true, "d"},
		"chat":          {"gpt-4o", false, ""},
	} {
		b := cfg.Backends[name]
		if b.Model != want.model || b.NoModel != want.noModel || b.Deployment != want.deployment {
			t.Errorf("backend %s: model %q, NoModel %v, deployment %q; want %q, %v, %q", name, b.Model, b.NoModel, b.Deployment, want.model, want.noModel, want.deployment)
		}
	}
	r := cfg.Endpoints[5]
	if want := []router.Route{{Backend: "chat", Weight: 60}, {Backend: "tgi", Weight: 40}}; r.Name != "r" || len(r.Routes) != 2 || r.Routes[0] != want[0] || r.Routes[1] != want[1] {
		t.Fatalf("route endpoint %s: routes %+v, want %+v", r.Name, r.Routes, want)
	}
	var b strings.Builder
	b.Write(appendMLflowEndpoint(nil, &cfg.Endpoints[0], cfg))
	if want := `"model":{"name":null,"provider":"mlflow-model-serving"}`; !strings.Contains(b.String(), want) {
		t.Errorf("listing %s, want %s: MLflow lists a model without name as null", b.String(), want)
	}
}

// TestMLflowNamelessModelUpstream: the calls of an endpoint without model.name go up as
// MLflow sends them, with no model: to an MLflow model server (behind OpenAI-compatible
// routes) and to an Azure deployment, completions through chat included; a TGI server,
// whose older Messages API wants a model it does not read, gets "tgi".
func TestMLflowNamelessModelUpstream(t *testing.T) {
	up := startChatOnlyUpstream(t)
	base := "http://" + up.addr
	g := startGateway(t, `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
endpoints:
  - name: served
    endpoint_type: llm/v1/chat
    model:
      provider: mlflow-model-serving
      config: {model_server_url: "`+base+`/v1"}
  - name: tgi
    endpoint_type: llm/v1/chat
    model:
      provider: huggingface-text-generation-inference
      config: {hf_server_url: "`+base+`"}
  - name: azure
    endpoint_type: llm/v1/completions
    model:
      provider: openai
      config:
        openai_api_key: k
        openai_api_type: azure
        openai_api_base: "`+base+`"
        openai_api_version: "2024-10-21"
        openai_deployment_name: gpt4o-prod
`)
	for _, c := range []struct {
		endpoint, body, path string
		model                any
	}{
		{"served", `{"messages":[{"role":"user","content":"hi"}]}`, "/v1/chat/completions", nil},
		{"served", `{"messages":[{"role":"user","content":"hi"}],"stream":true}`, "/v1/chat/completions", nil},
		{"tgi", `{"messages":[{"role":"user","content":"hi"}]}`, "/v1/chat/completions", "tgi"},
		{"azure", `{"prompt":"hi"}`, "/openai/deployments/gpt4o-prod/chat/completions", nil},
	} {
		resp, err := http.Post(g.url+"/endpoints/"+c.endpoint+"/invocations", "application/json", strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s %s: %d %s", c.endpoint, c.body, resp.StatusCode, raw)
		}
		r := up.last(t)
		model, has := r.body["model"]
		if r.path != c.path || r.body == nil || has != (c.model != nil) || has && model != c.model {
			t.Fatalf("%s %s: upstream got %s %v; want %s with model %v", c.endpoint, c.body, r.path, r.body, c.path, c.model)
		}
	}
}
