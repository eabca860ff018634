package gateway

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// vLLM's tokenizer API is served through any endpoint whose backend is vLLM: the body
// goes to the server's root /tokenize (or /detokenize) with the backend's model, the
// answer comes back as it came, and a token limit is charged nothing.
func TestTokenizeThroughAnyEndpoint(t *testing.T) {
	mock, addr := startMock(t, mockllm.Options{Seed: 3})
	g := startGateway(t, mockConfig(addr, `  claude: {provider: anthropic, base_url: "http://`+addr+`/v1", model: c, api_key: k}
  az: {provider: azure, base_url: "http://`+addr+`", deployment: d, model: m, api_key: k}
  inproc: {provider: mock, model: m}
`, `  - {name: lim, type: chat, routes: [{backend: up}], limits: [{per: endpoint, tokens: 1000, window: day}]}
  - {name: claude, type: chat, routes: [{backend: claude}]}
  - {name: az, type: chat, routes: [{backend: az}]}
  - {name: demo, type: chat, routes: [{backend: inproc}]}
`))
	var tok struct {
		Count  int   `json:"count"`
		Tokens []int `json:"tokens"`
	}
	for _, ep := range []string{"chat", "embed", "legacy", "lim", "demo"} {
		resp, body := msgPostTo(t, g, "/tokenize", `{"model":"`+ep+`","prompt":"How many tokens is this sentence?"}`)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", ep, resp.StatusCode, body)
		}
		if err := json.Unmarshal([]byte(body), &tok); err != nil || tok.Count == 0 || len(tok.Tokens) != tok.Count {
			t.Fatalf("%s: %s (%v)", ep, body, err)
		}
		if ep == "lim" && msgRemaining(t, resp) != 1000 {
			t.Errorf("lim: x-ratelimit-remaining-tokens %s after a tokenize call; want 1000 (nothing charged)", resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
		}
	}
	st := mock.Stats()
	if st.LastPath != "/tokenize" || !strings.Contains(string(st.LastBody), `"model":"up-model"`) {
		t.Errorf("upstream got %s %s", st.LastPath, st.LastBody)
	}
	ids, _ := json.Marshal(tok.Tokens)
	resp, body := msgPostTo(t, g, "/detokenize", `{"model":"chat","tokens":`+string(ids)+`}`)
	if resp.StatusCode != 200 || !strings.Contains(body, `"prompt"`) {
		t.Errorf("detokenize: %d %s", resp.StatusCode, body)
	}
	if st := mock.Stats(); st.LastPath != "/detokenize" {
		t.Errorf("detokenize went to %s", st.LastPath)
	}
	for _, ep := range []string{"claude", "az"} {
		resp, body := msgPostTo(t, g, "/tokenize", `{"model":"`+ep+`","prompt":"hi"}`)
		if resp.StatusCode != 400 || !strings.Contains(body, "has no tokenizer API") || !strings.Contains(body, `"code":"unsupported_operation"`) {
			t.Errorf("%s: %d %s; want 400 naming the missing tokenizer API", ep, resp.StatusCode, body)
		}
	}
	if resp, body := msgPostTo(t, g, "/tokenize", `{"model":"nope","prompt":"hi"}`); resp.StatusCode != 404 || !strings.Contains(body, `"model_not_found"`) {
		t.Errorf("unknown model: %d %s", resp.StatusCode, body)
	}
}
