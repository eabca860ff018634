package gateway

import (
	"net/http"
	"testing"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// A stream that fails before its first event, its 200 not yet sent, is answered with
// the error instead (answerInstead): its status line names the error's status, not the
// "OK" of the upstream's 200 whose header it was built from. On chat completions, and
// on the Messages API natively (anthropic) and through chat (messages_api: chat).
func TestStreamAnsweredInsteadStatusLine(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 8, Seed: 1})
	_, aaddr := startMock(t, mockllm.Options{Model: msgModel, API: mockllm.APIAnthropic, APIKey: msgKey, MaxTokens: 8, Seed: 1})
	g := startGateway(t, mockConfig(addr,
		`  bridged: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model, messages_api: chat, timeout: 5s}
  claude: {provider: anthropic, base_url: "http://`+aaddr+`/v1", model: `+msgModel+`, api_key: `+msgKey+`, timeout: 5s}
`, `  - {name: bridged, type: chat, routes: [{backend: bridged}]}
  - {name: claude, type: chat, routes: [{backend: claude}]}
`))
	for _, tc := range []struct{ name, path, body string }{
		{"chat completions", "/v1/chat/completions", `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`},
		{"messages bridged", "/v1/messages", `{"model":"bridged","stream":true,"max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`},
		{"messages native", "/v1/messages", `{"model":"claude","stream":true,"max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := postWith(t, g.url+tc.path, tc.body, map[string]string{"x-mock-garbage": "1", "anthropic-version": "2023-06-01"})
			if resp.StatusCode != http.StatusBadGateway || resp.Status != "502 Bad Gateway" {
				t.Errorf("status line %q (body %s), want 502 Bad Gateway", resp.Status, body)
			}
		})
	}
}
