package gateway

import (
	"os"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// A reload that changes how a backend is sent a call (the Messages API natively or
// through chat completions, the upstream API's version) empties the cache: the
// answers kept were made another way.
func TestCacheFingerprintBackendSettings(t *testing.T) {
	const base = `backends:
  oa: {provider: openai, base_url: "http://127.0.0.1:1/v1", model: m}
  az: {provider: azure, base_url: "https://x.openai.azure.com", model: gpt-4o, deployment: d, api_version: "2024-10-21", api_key: k}
  an: {provider: anthropic, base_url: "http://127.0.0.1:1/v1", model: claude-x, api_key: k}
endpoints:
  - {name: chat, type: chat, routes: [{backend: oa, weight: 50}, {backend: az, weight: 25}, {backend: an, weight: 25}], cache: {ttl: 1h}}
`
	fingerprint := func(y string) string {
		t.Helper()
		cfg, problems := parseProblems(t, y, nil)
		if problems != nil {
			t.Fatalf("problems: %q", problems)
		}
		return cacheFingerprint(cfg, &cfg.Endpoints[0])
	}
	was := fingerprint(base)
	for _, tc := range []struct{ name, from, to string }{
		{"messages_api chat", "model: m}", "model: m, messages_api: chat}"},
		{"api_version", `api_version: "2024-10-21"`, `api_version: "2025-04-01-preview"`},
		{"anthropic_version", "model: claude-x,", "model: claude-x, anthropic_version: 2023-01-01,"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if fingerprint(strings.Replace(base, tc.from, tc.to, 1)) == was {
				t.Errorf("%s changed: same fingerprint, the answers made before kept", tc.name)
			}
		})
	}
	t.Run("messages_api native, the default", func(t *testing.T) {
		if fingerprint(strings.Replace(base, "model: m}", "model: m, messages_api: native}", 1)) != was {
			t.Error("messages_api native: another fingerprint")
		}
	})
}

// End to end: a Messages API call answered natively, then the backend moved to
// messages_api: chat by a reload; the same call goes up again, through chat.
func TestCacheReloadMessagesAPI(t *testing.T) {
	t.Parallel()
	mock, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	cfg := `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://` + addr + `/v1", model: up-model, timeout: 5s}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], cache: {ttl: 1h}}
`
	g := startGateway(t, cfg)
	body := `{"model":"chat","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`
	if resp, b := contractPost(t, g, "/v1/messages", body, nil); resp.StatusCode != 200 || resp.Header.Get("X-Tollgate-Cache") != "miss" {
		t.Fatalf("first call: %d %q %s", resp.StatusCode, resp.Header.Get("X-Tollgate-Cache"), b)
	}
	if err := os.WriteFile(g.path, []byte(strings.Replace(cfg, "timeout: 5s}", "timeout: 5s, messages_api: chat}", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	resp, b := contractPost(t, g, "/v1/messages", body, nil)
	st := mock.Stats().Requests
	if resp.StatusCode != 200 || resp.Header.Get("X-Tollgate-Cache") != "miss" || st["/v1/chat/completions"] != 1 {
		t.Errorf("after messages_api native -> chat: %d, x-tollgate-cache %q, upstream calls %v, %s; want a miss answered through chat completions",
			resp.StatusCode, resp.Header.Get("X-Tollgate-Cache"), st, b)
	}
}
