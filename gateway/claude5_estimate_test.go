package gateway

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// A forced tool call without max_tokens on Claude Opus 5 turns its default thinking
// off and sends the backend's max_tokens as it is: the token estimate adds no thinking
// room either, so on an endpoint with a 4000-token day limit the request is admitted
// with room to spare.
func TestForcedToolOnClaude5ChargedWithoutThinkingRoom(t *testing.T) {
	up := &recordingAnthropic{}
	addr := serveUpstream(t, up.serve)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  opus5: {provider: anthropic, base_url: "http://`+addr+`/v1", model: claude-opus-5, api_key: sk-ant-test, timeout: 5s, max_tokens: 1000}
endpoints:
  - name: opus5
    type: chat
    routes: [{backend: opus5}]
    limits: [{per: user, tokens: 4000, window: day}]
logging: {level: error, access_log: false}
`)
	const tools = `"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]`
	c := &http.Client{Timeout: 10 * time.Second}
	resp, b := postRaw(t, c, g.url+"/v1/chat/completions", `{"model":"opus5","user":"u-forced",`+tools+`,"tool_choice":"required",`+
		`"messages":[{"role":"user","content":"What does get_weather say for Paris?"}]}`, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("forced tool call on claude-opus-5 (max_tokens sent upstream would be 1000, thinking off): status %d %s; "+
			"want 200: the estimate counted 4096 tokens of thinking the request turns off", resp.StatusCode, b)
	}
	sent := up.body(t, 0)
	if string(sent["max_tokens"]) != "1000" || string(sent["thinking"]) != `{"type":"disabled"}` {
		t.Errorf("upstream got max_tokens %s, thinking %s; want 1000 and disabled", sent["max_tokens"], sent["thinking"])
	}
	rem, err := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
	if err != nil {
		t.Fatalf("x-ratelimit-remaining-tokens %q", resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
	}
	// ~256 (default_max_tokens) + the prompt's ~100 bytes / 4 charged, nothing for
	// thinking: more than 3000 of 4000 left.
	if rem < 3000 {
		t.Errorf("x-ratelimit-remaining-tokens %d of 4000 after a forced tool call sent upstream with max_tokens 1000 "+
			"and thinking disabled: the estimate counted Opus 5's default thinking room (4096) the request turned off", rem)
	}
}

// mockllm refuses thinking budgets and sampling settings on every Claude 5 model, named
// in its table or not, as Anthropic does.
func TestMockllmClaude5ModelsRefuseBudgetsAndSampling(t *testing.T) {
	t.Parallel()
	for _, model := range []string{"claude-opus-5" /* contrast: listed */, "claude-haiku-5-5", "claude-fable-5-1", "claude-mythos-5"} {
		_, addr := startMock(t, mockllm.Options{Model: model, API: mockllm.APIAnthropic, MaxTokens: 16, Seed: 1})
		for _, extra := range []string{`"thinking":{"type":"enabled","budget_tokens":2048}`, `"top_k":40`} {
			req, err := http.NewRequest("POST", "http://"+addr+"/v1/messages", strings.NewReader(`{"model":"`+model+`","max_tokens":4096,`+
				extra+`,"messages":[{"role":"user","content":"Hi"}]}`))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("anthropic-version", "2023-06-01")
			resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 400 {
				t.Errorf("mockllm --api anthropic --model %s, %s: status %d %.100s; want 400 as for the listed Claude 5 models",
					model, extra, resp.StatusCode, b)
			}
		}
	}
}
