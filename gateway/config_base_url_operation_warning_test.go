package gateway

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A base_url (or target) that already holds the path of an operation, as an API's
// documentation shows a whole endpoint URL (https://api.openai.com/v1/chat/completions,
// Azure's target URI of a deployment), had each request go to that path twice
// (/v1/chat/completions/chat/completions, /openai/deployments/gpt-4o/openai/deployments/
// gpt-4o/chat/completions), every call answered 404 by the upstream while the config
// loaded without a word. It loads (a proxy in front may map such a path on), with a
// warning at the key.
func TestCheckConfigWarnsBaseURLWithOperation(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tollgate.yaml")
	conf := `backends:
  gpt:
    provider: openai
    base_url: "https://api.openai.com/v1/chat/completions/"
    model: gpt-4o-mini
  pool:
    provider: openai
    targets: ["http://10.0.0.1:8000/v1", "http://10.0.0.2:8000/v1/embeddings"]
    model: m
  claude:
    provider: anthropic
    base_url: "https://api.anthropic.com/v1/messages"
    model: claude-sonnet-4-5
  az:
    provider: azure
    base_url: "https://res.openai.azure.com/openai/deployments/gpt-4o"
    deployment: gpt-4o
    model: gpt-4o
  azv1:
    provider: azure
    base_url: "https://res.openai.azure.com/openai/v1/"
    deployment: gpt-4o
    model: gpt-4o
  fine:
    provider: azure
    base_url: "https://res.openai.azure.com/openai/"
    deployment: gpt-4o
    model: gpt-4o
  vllm: {provider: openai, base_url: "http://10.0.0.3:8000/v1/", model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: gpt, weight: 20}, {backend: claude, weight: 20}, {backend: az, weight: 20}, {backend: azv1, weight: 20}, {backend: fine, weight: 10}, {backend: vllm, weight: 10}]}
  - {name: embed, type: embeddings, routes: [{backend: pool}]}
`
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	warnings, err := CheckConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		path + ":16: backends.az.base_url: warning: names a deployment (/openai/deployments/…), which each request's path adds itself: give the resource's endpoint (https://RESOURCE.openai.azure.com) and the deployment in deployment",
		path + ":21: backends.azv1.base_url: warning: is Azure OpenAI's v1 API (/openai/v1), which provider azure does not speak (its requests go to /openai/deployments/… after it): reach it with provider openai, or give the resource's endpoint alone",
		path + ":12: backends.claude.base_url: warning: ends in /messages, a path each request adds itself (…/messages/messages): give the API's base (https://api.anthropic.com/v1)",
		path + ":4: backends.gpt.base_url: warning: ends in /chat/completions, a path each request adds itself (…/chat/completions/chat/completions): give the API's base (http://HOST:8000/v1, https://api.openai.com/v1)",
		path + ":8: backends.pool.targets[1]: warning: ends in /embeddings, a path each request adds itself (…/embeddings/embeddings): give the API's base (http://HOST:8000/v1, https://api.openai.com/v1)",
	}
	if strings.Join(warnings, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(warnings, "\n"), strings.Join(want, "\n"))
	}
	if err := Validate(path); err != nil {
		t.Errorf("Validate refuses a config with warnings only: %v", err)
	}
}

// An anthropic backend's base_url as the Anthropic SDKs take it
// (https://api.anthropic.com, no /v1) had each request go to /messages, answered 404;
// it loads with a warning, and a URL ending in /v1 (an Anthropic-compatible server's
// path included) gets none.
func TestCheckConfigWarnsAnthropicBaseURLWithoutV1(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tollgate.yaml")
	conf := `backends:
  sdk: {provider: anthropic, base_url: "https://api.anthropic.com", model: claude-sonnet-4-5}
  slash: {provider: anthropic, base_url: "https://api.anthropic.com/", model: claude-sonnet-4-5}
  pool: {provider: anthropic, targets: ["http://10.0.0.1:8000/v1", "http://10.0.0.2:8000/anthropic"], model: m}
  compat: {provider: anthropic, base_url: "https://api.example.com/anthropic/v1/", model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: sdk, weight: 25}, {backend: slash, weight: 25}, {backend: pool, weight: 25}, {backend: compat, weight: 25}]}
`
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	warnings, err := CheckConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	const w = ": warning: does not end in /v1: each request adds /messages to it, and Anthropic's API (and the servers that speak it) answer at …/v1/messages: give https://api.anthropic.com/v1, or the server's …/v1"
	want := []string{
		path + ":4: backends.pool.targets[1]" + w,
		path + ":2: backends.sdk.base_url" + w,
		path + ":3: backends.slash.base_url" + w,
	}
	if strings.Join(warnings, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(warnings, "\n"), strings.Join(want, "\n"))
	}
}
