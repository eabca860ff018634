package gateway

import (
	"encoding/json"
	"io"
	"maps"
	"net/http"
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

// LangChain.js's ChatOpenAI pointed at a chat endpoint on an Anthropic backend tells a
// context-window refusal by its message alone ("maximum context length", as OpenAI's
// says it: the openai Node SDK's error message carries no code). The gateway's
// translation of Anthropic's "prompt is too long: …" had the code
// context_length_exceeded but Anthropic's words only, and LangChain raised a plain 400
// instead of ContextOverflowError. The bodies are those ChatOpenAI.invoke and .stream
// send (@langchain/openai 1.x, openai 6.49).
func TestLangChainOpenAIContextOverflowFromAnthropic(t *testing.T) {
	t.Parallel()
	up := serveCtxAnswers(t)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  claude: {provider: anthropic, base_url: "http://`+up+`/v1", model: claude-sonnet-4-5, api_key: sk-ant-test, timeout: 5s}
endpoints:
  - {name: claude, type: chat, routes: [{backend: claude}]}
logging: {level: error, access_log: false}
`)
	bodies := map[string]string{
		"invoke": `{"model":"claude","stream":false,"max_tokens":8,"messages":[{"role":"user","content":"a long prompt"}]}`,
		"stream": `{"model":"claude","stream":true,"stream_options":{"include_usage":true},"max_tokens":8,"messages":[{"role":"user","content":"a long prompt"}]}`,
	}
	words := map[string]string{
		"anthropic":    "prompt is too long: 209353 tokens \u003e 200000 maximum",
		"anthropic-mt": "exceed context limit: 188240 + 21333 \u003e 200000",
	}
	for answer, anthropicWords := range words {
		for name, body := range bodies {
			t.Run(answer+"/"+name, func(t *testing.T) {
				h := maps.Clone(nodeSDKHeaders)
				h["user-agent"] = "langchainjs-openai/1.0.0 ((node/v20.20.2; linux; x64))"
				h["x-test-answer"] = answer
				status, got := postWithHeaders(t, g.url+"/v1/chat/completions", body, h)
				var e struct {
					Error struct {
						Message string `json:"message"`
						Code    string `json:"code"`
					} `json:"error"`
				}
				if err := json.Unmarshal(got, &e); err != nil {
					t.Fatalf("%d %.300s: %v", status, got, err)
				}
				if status != 400 || e.Error.Code != "context_length_exceeded" ||
					!strings.Contains(e.Error.Message, "maximum context length") || !strings.Contains(e.Error.Message, anthropicWords) {
					t.Errorf("got %d %.300s; want 400 context_length_exceeded, its message in OpenAI's words (\"maximum context length\") and Anthropic's", status, got)
				}
			})
		}
	}
}

// postWithHeaders posts body to url with exactly the headers h and returns the status
// and body.
func postWithHeaders(t *testing.T, url, body string, h map[string]string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}
