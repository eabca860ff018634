package gateway

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// A Responses API call asking an Anthropic model for reasoning, through the bridge,
// is charged the thinking room its chat form would be: reasoning.effort is the chat
// call's reasoning_effort, and without max_output_tokens the estimate counts what the
// translation adds to max_tokens for it.
func TestResponsesBridgeThinkingRoomCharged(t *testing.T) {
	t.Parallel()
	up := startThinkingAnthropic(t)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  claude: {provider: anthropic, base_url: "`+up.url+`/v1", model: claude-opus-4-7, api_key: sk-ant-test, timeout: 20s}
endpoints:
  - name: lim
    type: chat
    routes: [{backend: claude}]
    default_max_tokens: 100
    limits: [{per: user, tokens: 1000000, window: day}]
`)
	charged := func(path, body string) int {
		t.Helper()
		req, _ := http.NewRequest("POST", g.url+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		rem, err := strconv.Atoi(resp.Header.Get("x-ratelimit-remaining-tokens"))
		if resp.StatusCode != 200 || err != nil {
			t.Fatalf("%s: %d %s %v", path, resp.StatusCode, b, resp.Header)
		}
		return 1000000 - rem
	}
	chat := charged("/v1/chat/completions", `{"model":"lim","user":"u-chat","reasoning_effort":"high","messages":[{"role":"user","content":"hi"}]}`)
	resp := charged("/v1/responses", `{"model":"lim","user":"u-resp","reasoning":{"effort":"high"},"input":"hi"}`)
	plain := charged("/v1/responses", `{"model":"lim","user":"u-plain","input":"hi"}`)
	if chat < 1000 || resp < chat-20 || resp > chat+20 {
		t.Fatalf("charged %d for the chat call, %d for the Responses call; expected the same thinking room in both", chat, resp)
	}
	if plain >= resp {
		t.Fatalf("charged %d without reasoning, %d with it", plain, resp)
	}
}
