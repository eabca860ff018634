package gateway

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMLflowConfig(t *testing.T) {
	data, err := os.ReadFile("../configs/examples/mlflow-gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig("mlflow-gateway.yaml", data, env(map[string]string{"OPENAI_API_KEY": "sk-o", "ANTHROPIC_API_KEY": "sk-a"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Endpoints) != 5 {
		t.Fatalf("endpoints = %d", len(cfg.Endpoints))
	}
	chat := cfg.Backends["chat"]
	if chat.APIKey != "sk-o" || chat.BaseURL != "https://api.openai.com/v1" || chat.Model != "gpt-4o-mini" {
		t.Errorf("chat backend = %+v", chat)
	}
	if local := cfg.Backends["local-llama"]; local.BaseURL != "http://127.0.0.1:8000/v1" || local.APIKey != "none" {
		t.Errorf("${VAR:-default} not read: %+v", local)
	}
	if e := cfg.Endpoints[2]; e.Type != "embeddings" || e.mlflow.EndpointType != "llm/v1/embeddings" {
		t.Errorf("embeddings endpoint = %+v", e)
	}
	if l := cfg.Endpoints[0].mlflow.Limit; l == nil || l.Calls != 60 || l.RenewalPeriod != "minute" {
		t.Errorf("limit = %+v", l)
	}
}

func TestMLflowConfigErrors(t *testing.T) {
	data := []byte(`endpoints:
  - name: a
    endpoint_type: llm/v1/chat
    model:
      provider: cohere
      name: command
      config: {cohere_api_key: $COHERE_API_KEY}
  - name: b
    endpoint_type: llm/v2/chat
    model: {provider: openai, name: gpt, config: {openai_api_key: $MISSING}}
    limit: {calls: 0, renewal_period: fortnight}
    extra: 1
`)
	_, err := ParseConfig("ml.yaml", data, env(map[string]string{"COHERE_API_KEY": "x"}))
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v", err)
	}
	want := []string{
		"ml.yaml:10: endpoints[1].model.config.openai_api_key: environment variable MISSING is not set",
		"ml.yaml:12: endpoints[1].extra: unknown key",
		"ml.yaml:5: endpoints[0].model.provider: provider \"cohere\" is not supported",
		"ml.yaml:9: endpoints[1].endpoint_type: must be llm/v1/chat, llm/v1/completions or llm/v1/embeddings",
		"ml.yaml:11: endpoints[1].limit.renewal_period: must be second, minute, hour, day, month or year",
		"ml.yaml:11: endpoints[1].limit.calls: must be positive",
	}
	got := ce.Error()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("missing %q in:\n%s", w, got)
		}
	}
}

func TestInvocationBody(t *testing.T) {
	cases := []struct{ in, want string }{
		{`{"messages":[{"role":"user","content":"hi"}]}`, `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`},
		{` { } `, `{"model":"chat" } `},
		{`{}`, `{"model":"chat"}`},
	}
	for _, c := range cases {
		got, e := invocationBody(nil, []byte("chat"), []byte(c.in))
		if e != nil || string(got) != c.want {
			t.Errorf("invocationBody(%s) = %s %v, want %s", c.in, got, e, c.want)
		}
	}
	if _, e := invocationBody(nil, []byte("chat"), []byte(`{"model":"x"}`)); e != &errMLflowModel {
		t.Errorf("model in an invocation: %v", e)
	}
	body, e := invocationBody(nil, []byte("chat"), []byte(`{"a":`))
	var f fields
	if e != nil || scanBody(body, &f) != &errMalformed {
		t.Errorf("malformed invocation not caught by the scan: %v %s", e, body)
	}
	if _, e := invocationBody(nil, []byte("chat"), []byte(`[1]`)); e != &errNotObject {
		t.Errorf("array invocation: %v", e)
	}
}

func TestMLflowAzure(t *testing.T) {
	data := []byte(`endpoints:
  - name: azure-chat
    endpoint_type: llm/v1/chat
    model:
      provider: azuread
      name: gpt-35-turbo
      config:
        openai_api_key: $AZURE_OPENAI_API_KEY
        openai_api_base: https://my-resource.openai.azure.com/
        openai_api_version: "2024-02-01"
        openai_deployment_name: my-deployment
`)
	cfg, err := ParseConfig("az.yaml", data, env(map[string]string{"AZURE_OPENAI_API_KEY": "k"}))
	if err != nil {
		t.Fatal(err)
	}
	b := cfg.Backends["azure-chat"]
	if b.Provider != "azure" || b.Deployment != "my-deployment" || b.APIVersion != "2024-02-01" || b.BaseURL != "https://my-resource.openai.azure.com" {
		t.Fatalf("azure backend = %+v", b)
	}
	// azuread's key is an Azure AD token: a bearer header, not api-key.
	if b.APIKey != "" || b.Headers["Authorization"] != "Bearer k" {
		t.Fatalf("azuread key: api-key %q, headers %v", b.APIKey, b.Headers)
	}
	for _, tc := range []struct{ provider, apiType, apiKey, authz string }{
		{"azure", "", "k", ""},
		{"openai", "azure", "k", ""},
		{"openai", "AzureAD", "", "Bearer k"},
	} {
		y := strings.Replace(strings.Replace(string(data), "provider: azuread", "provider: "+tc.provider, 1),
			"        openai_deployment_name", "        openai_api_type: \""+tc.apiType+"\"\n        openai_deployment_name", 1)
		cfg, err := ParseConfig("az.yaml", []byte(y), env(map[string]string{"AZURE_OPENAI_API_KEY": "k"}))
		if err != nil {
			t.Fatal(err)
		}
		b := cfg.Backends["azure-chat"]
		if b.Provider != "azure" || b.APIKey != tc.apiKey || b.Headers["Authorization"] != tc.authz {
			t.Errorf("provider %s, openai_api_type %q: api-key %q, Authorization %q; want %q, %q",
				tc.provider, tc.apiType, b.APIKey, b.Headers["Authorization"], tc.apiKey, tc.authz)
		}
	}
}

// TestMLflowAPIKeyFromFile checks that an API key given as the path of a file (a
// mounted Docker or Kubernetes secret) is read from it, as MLflow's gateway does,
// without the file's trailing newline; other values are the key itself.
func TestMLflowAPIKeyFromFile(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "openai-key")
	if err := os.WriteFile(keyFile, []byte("sk-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, value, want string }{
		{"file", keyFile, "sk-from-file"},
		{"variable naming a file", "$KEY_FILE", "sk-from-file"},
		{"literal key", "sk-literal", "sk-literal"},
		{"directory", dir, dir},
		{"name too long for a file", strings.Repeat("k", 300), strings.Repeat("k", 300)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := ParseConfig("ml.yaml", mlflowKeyConfig(c.value), env(map[string]string{"KEY_FILE": keyFile}))
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Backends["chat"].APIKey; got != c.want {
				t.Fatalf("api key = %q, want %q", got, c.want)
			}
		})
	}
}

// TestMLflowAPIKeyErrors checks the keys MLflow's gateway refuses: a `$VAR` that is
// unset or empty, and (ours) an empty key file. Each problem names file, line and key
// and never shows a key.
func TestMLflowAPIKeyErrors(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty-key")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, value, want string }{
		{"unset variable", "$OPENAI_API_KEY", "ml.yaml:8: endpoints[0].model.config.openai_api_key: environment variable OPENAI_API_KEY is not set"},
		{"empty variable", "$EMPTY", "ml.yaml:8: endpoints[0].model.config.openai_api_key: environment variable EMPTY is empty"},
		{"empty file", empty, "ml.yaml:8: endpoints[0].model.config.openai_api_key: the key file is empty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig("ml.yaml", mlflowKeyConfig(c.value), env(map[string]string{"EMPTY": ""}))
			if err == nil || err.Error() != c.want {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}

func mlflowKeyConfig(key string) []byte {
	return []byte(`endpoints:
  - name: chat
    endpoint_type: llm/v1/chat
    model:
      provider: openai
      name: gpt-4o-mini
      config:
        openai_api_key: "` + key + `"
`)
}

// TestMLflowConfigKeys checks model.config against each provider's keys: a misspelled
// key is an error with a hint rather than ignored (leaving a backend without its API
// key), and the API key is required where MLflow requires it.
func TestMLflowConfigKeys(t *testing.T) {
	cases := []struct{ name, provider, config, want string }{
		{"misspelled key", "openai", "openai_api_kye: $OPENAI_API_KEY",
			"ml.yaml:8: endpoints[0].model.config.openai_api_kye: unknown key for provider openai (did you mean openai_api_key?)\n" +
				"ml.yaml:7: endpoints[0].model.config.openai_api_key: is required for provider openai"},
		{"another provider's key", "mistral", "mistral_api_key: k\n        openai_organization: org",
			"ml.yaml:9: endpoints[0].model.config.openai_organization: unknown key for provider mistral (known keys: mistral_api_base, mistral_api_key)"},
		{"bad api type", "openai", "openai_api_key: k\n        openai_api_type: azure-ad",
			"ml.yaml:9: endpoints[0].model.config.openai_api_type: must be openai, azure or azuread"},
		{"openai without key", "openai", "openai_api_base: https://api.openai.com/v1",
			"ml.yaml:7: endpoints[0].model.config.openai_api_key: is required for provider openai"},
		{"anthropic without config", "anthropic", "",
			"ml.yaml:4: endpoints[0].model.config.anthropic_api_key: is required for provider anthropic"},
		{"azure without key", "azure", "openai_api_base: https://r.openai.azure.com\n        openai_deployment_name: d",
			"ml.yaml:7: endpoints[0].model.config.openai_api_key: is required for provider azure"},
		{"togetherai without key", "togetherai", "togetherai_api_base: https://api.together.xyz/v1",
			"ml.yaml:7: endpoints[0].model.config.togetherai_api_key: is required for provider togetherai"},
		{"openai-compatible needs no key", "openai-compatible", "api_base: http://127.0.0.1:8000/v1", ""},
		{"tgi needs no key", "huggingface-text-generation-inference", "hf_server_url: http://127.0.0.1:8080", ""},
		{"every openai key", "openai", "openai_api_key: k\n        openai_api_base: https://api.openai.com/v1\n        openai_api_type: openai\n        openai_api_version: v\n        openai_organization: org", ""},
		{"anthropic_version", "anthropic", "anthropic_api_key: k\n        anthropic_version: \"2023-06-01\"", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			y := "endpoints:\n  - name: chat\n    endpoint_type: llm/v1/chat\n    model:\n      provider: " + c.provider + "\n      name: m\n"
			if c.config != "" {
				y += "      config:\n        " + c.config + "\n"
			}
			_, err := ParseConfig("ml.yaml", []byte(y), env(map[string]string{"OPENAI_API_KEY": "sk-x"}))
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || err.Error() != c.want {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}

// TestMLflowBackendErrors checks that a problem of the backend an MLflow endpoint
// becomes names the line and key of the MLflow file that sets it.
func TestMLflowBackendErrors(t *testing.T) {
	cases := []struct{ name, model, want string }{
		{"base URL", "provider: openai-compatible\n      name: m\n      config:\n        api_base: ftp://x",
			"ml.yaml:8: endpoints[0].model.config.api_base: must start with http:// or https://"},
		{"base URL with credentials", "provider: openai\n      name: m\n      config:\n        openai_api_key: k\n        openai_api_base: https://u:p@x/v1",
			"ml.yaml:9: endpoints[0].model.config.openai_api_base: must not hold credentials (use api_key)"},
		{"model name", "provider: openai\n      name: \"gpt\\t4o\"\n      config:\n        openai_api_key: k",
			"ml.yaml:6: endpoints[0].model.name: must not hold control characters"},
		{"anthropic version", "provider: anthropic\n      name: m\n      config:\n        anthropic_api_key: k\n        anthropic_version: \"2023 06 01\"",
			"ml.yaml:9: endpoints[0].model.config.anthropic_version: "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			y := "endpoints:\n  - name: chat\n    endpoint_type: llm/v1/chat\n    model:\n      " + c.model + "\n"
			_, err := ParseConfig("ml.yaml", []byte(y), env(nil))
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}
