package gateway

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// LangChain.js's ChatAnthropic (and Claude Code) pointed at the gateway's Messages API
// tells a prompt too long for the model by Anthropic's words, "prompt is too long", in
// a 400: LangChain raises ContextOverflowError on it, which its summarization
// middleware acts on. Through a vLLM backend (its own Messages API route, or the chat
// completions bridge) the refusal came back in vLLM's words ("This model's maximum
// context length is …") and the client saw a plain 400. The bodies are those
// ChatAnthropic.invoke and .stream send (langchain 1.x, @anthropic-ai/sdk 0.122).
func TestLangChainAnthropicContextOverflow(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{Model: "up-model", MaxModelLen: 1024, MaxTokens: 12})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", max_body_bytes: 256KiB, shutdown_grace: 5s}
backends:
  vllm: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model, timeout: 5s}
  bridge: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model, timeout: 5s, messages_api: chat}
endpoints:
  - {name: vllm, type: chat, routes: [{backend: vllm}]}
  - {name: bridge, type: chat, routes: [{backend: bridge}]}
`)
	long := strings.Repeat("word ", 8000)
	for _, model := range []string{"vllm", "bridge"} {
		for _, stream := range []string{"false", "true"} {
			t.Run(model+"/stream="+stream, func(t *testing.T) {
				body := `{"model":"` + model + `","stream":` + stream + `,"max_tokens":8,"messages":[{"role":"user","content":"` + long + `"}]}`
				resp, got := msgPost(t, g, body, "x-api-key", "sk-unused", "user-agent", "Anthropic/JS 0.122.0")
				var e struct {
					Type  string `json:"type"`
					Error struct {
						Type    string `json:"type"`
						Message string `json:"message"`
					} `json:"error"`
				}
				if err := json.Unmarshal([]byte(got), &e); err != nil {
					t.Fatalf("%d %.300s: %v", resp.StatusCode, got, err)
				}
				if resp.StatusCode != 400 || e.Type != "error" || e.Error.Type != "invalid_request_error" ||
					!strings.HasPrefix(e.Error.Message, "prompt is too long: ") ||
					!strings.Contains(e.Error.Message, "maximum context length is 1024 tokens") {
					t.Errorf("got %d %.300s; want 400 invalid_request_error, its message \"prompt is too long: \" and vLLM's words",
						resp.StatusCode, got)
				}
			})
		}
	}
}
