package gateway

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// mlflowAzureConfig is an MLflow endpoint of provider with the openai config lines
// given (each "key: value").
func mlflowAzureConfig(provider string, config ...string) []byte {
	y := `endpoints:
  - name: chat
    endpoint_type: llm/v1/chat
    model:
      provider: ` + provider + `
      name: gpt-4o
      config:
        openai_api_key: $AZURE_KEY
`
	for _, c := range config {
		y += "        " + c + "\n"
	}
	return []byte(y)
}

// TestMLflowAzureTypeNeedsItsKeys: MLflow's OpenAIConfig refuses openai_api_type azure
// or azuread without openai_api_base, openai_deployment_name and openai_api_version.
// Loaded with the openai provider's default base, the Azure key (or AD token) would
// go to api.openai.com.
func TestMLflowAzureTypeNeedsItsKeys(t *testing.T) {
	all := []string{"openai_api_base: https://r.openai.azure.com", "openai_deployment_name: d", `openai_api_version: "2024-02-01"`}
	for _, typ := range []string{"azure", "AzureAD"} {
		for i, missing := range []string{"openai_api_base", "openai_deployment_name", "openai_api_version"} {
			t.Run(typ+" without "+missing, func(t *testing.T) {
				config := append([]string{"openai_api_type: " + typ}, all[:i]...)
				config = append(config, all[i+1:]...)
				cfg, err := ParseConfig("ml.yaml", mlflowAzureConfig("openai", config...), env(map[string]string{"AZURE_KEY": "azure-secret"}))
				if err == nil {
					b := cfg.Backends["chat"]
					t.Fatalf("loaded: provider %s, base_url %q; want an error naming %s", b.Provider, b.BaseURL, missing)
				}
				want := "ml.yaml:7: endpoints[0].model.config." + missing + ": is required when openai_api_type is " + strings.ToLower(typ)
				if err.Error() != want {
					t.Fatalf("err =\n%v\nwant\n%s", err, want)
				}
			})
		}
	}
	t.Run("all three", func(t *testing.T) {
		cfg, err := ParseConfig("ml.yaml", mlflowAzureConfig("openai", append([]string{"openai_api_type: azure"}, all...)...), env(map[string]string{"AZURE_KEY": "k"}))
		if err != nil {
			t.Fatal(err)
		}
		if b := cfg.Backends["chat"]; b.Provider != "azure" || b.BaseURL != "https://r.openai.azure.com" || b.Deployment != "d" || b.APIVersion != "2024-02-01" {
			t.Fatalf("backend %+v", b)
		}
	})
}

// TestMLflowAPITypeDecidesAuth: in MLflow openai_api_type decides how the key goes
// (azuread: Authorization: Bearer, an Azure AD token Azure refuses in api-key; azure:
// api-key; openai: Bearer to an OpenAI-style backend), whatever the provider's name;
// without it, the provider's name decides.
func TestMLflowAPITypeDecidesAuth(t *testing.T) {
	azure := []string{"openai_api_base: https://r.openai.azure.com/", `openai_api_version: "2024-02-01"`, "openai_deployment_name: d"}
	for _, c := range []struct {
		provider, apiType, backend, apiKey, authz string
	}{
		{"azure", "azuread", "azure", "", "Bearer aad-token"},
		{"azuread", "azure", "azure", "aad-token", ""},
		{"azure", "", "azure", "aad-token", ""},
		{"azuread", "", "azure", "", "Bearer aad-token"},
		{"openai", "azure", "azure", "aad-token", ""},
		{"openai", "azuread", "azure", "", "Bearer aad-token"},
		{"azure", "openai", "openai", "aad-token", ""},
	} {
		t.Run(c.provider+"/"+c.apiType, func(t *testing.T) {
			config := azure
			if c.apiType == "openai" {
				config = azure[:2] // MLflow takes no deployment with the OpenAI type
			}
			if c.apiType != "" {
				config = append([]string{"openai_api_type: " + c.apiType}, config...)
			}
			cfg, err := ParseConfig("ml.yaml", mlflowAzureConfig(c.provider, config...), env(map[string]string{"AZURE_KEY": "aad-token"}))
			if err != nil {
				t.Fatal(err)
			}
			b := cfg.Backends["chat"]
			if b.Provider != c.backend || b.APIKey != c.apiKey || b.Headers["Authorization"] != c.authz {
				t.Fatalf("backend %s, api key %q, Authorization %q; want %s, %q, %q",
					b.Provider, b.APIKey, b.Headers["Authorization"], c.backend, c.apiKey, c.authz)
			}
		})
	}
}

// TestMLflowAzureProviderNameNeedsBaseOnly: provider azure or azuread without
// openai_api_type needs openai_api_base alone, as README says: the deployment is then
// model.name and the api-version the azure provider's default, so the calls go to
// {base}/openai/deployments/{model.name}/chat/completions?api-version=2024-10-21.
func TestMLflowAzureProviderNameNeedsBaseOnly(t *testing.T) {
	up := startChatOnlyUpstream(t)
	g := startGateway(t, `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
endpoints:
  - name: az
    endpoint_type: llm/v1/completions
    model: {provider: azure, name: gpt-4o, config: {openai_api_key: az-key, openai_api_base: "http://`+up.addr+`"}}
  - name: azad
    endpoint_type: llm/v1/completions
    model: {provider: azuread, name: gpt-4o-mini, config: {openai_api_key: ad-token, openai_api_base: "http://`+up.addr+`"}}
`)
	for _, c := range []struct{ endpoint, path, apiKey, authz string }{
		{"az", "/openai/deployments/gpt-4o/chat/completions", "az-key", ""},
		{"azad", "/openai/deployments/gpt-4o-mini/chat/completions", "", "Bearer ad-token"},
	} {
		t.Run(c.endpoint, func(t *testing.T) {
			resp, err := http.Post(g.url+"/endpoints/"+c.endpoint+"/invocations", "application/json", strings.NewReader(`{"prompt":"Say hello"}`))
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, raw)
			}
			r := up.last(t)
			if r.path != c.path || r.query != "api-version=2024-10-21" || r.apiKey != c.apiKey || r.authz != c.authz {
				t.Fatalf("upstream got %s?%s api-key %q Authorization %q; want %s?api-version=2024-10-21 %q %q", r.path, r.query, r.apiKey, r.authz, c.path, c.apiKey, c.authz)
			}
		})
	}
}
