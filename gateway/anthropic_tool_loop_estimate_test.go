package gateway

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

// A tool loop replayed without its thinking_blocks (the Node SDK's runTools) on Claude
// Opus 5, no max_tokens named, goes with the model's default thinking disabled and the
// backend's max_tokens as it is: the token estimate adds no thinking room either, so on
// an endpoint with a 4000-token day limit the request is admitted with room to spare.
// The same loop with its thinking_blocks sent back keeps the default thinking, and the
// estimate its 4096 tokens of room: more than the limit holds, admitted as an overdraft.
func TestClaude5ToolLoopWithoutThinkingChargedWithoutThinkingRoom(t *testing.T) {
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
	loop := func(user, thinkingBlocks string) string {
		return `{"model":"opus5","user":"` + user + `","messages":[{"role":"user","content":"What does get_weather say for Paris?"},` +
			`{"role":"assistant","content":null,"tool_calls":[{"id":"toolu_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]` +
			thinkingBlocks + `},{"role":"tool","tool_call_id":"toolu_1","content":"sunny"}],` +
			`"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]}`
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, b := postRaw(t, c, g.url+"/v1/chat/completions", loop("u-replay", ""), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("tool loop replayed without thinking_blocks on claude-opus-5 (max_tokens sent upstream would be 1000, thinking off): "+
			"status %d %s; want 200: the estimate counted 4096 tokens of thinking the request turns off", resp.StatusCode, b)
	}
	sent := up.body(t, 0)
	if string(sent["max_tokens"]) != "1000" || string(sent["thinking"]) != `{"type":"disabled"}` {
		t.Errorf("upstream got max_tokens %s, thinking %s; want 1000 and disabled", sent["max_tokens"], sent["thinking"])
	}
	rem, err := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
	if err != nil {
		t.Fatalf("x-ratelimit-remaining-tokens %q", resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
	}
	// ~256 (default_max_tokens) + the prompt's ~500 bytes / 4 charged, nothing for
	// thinking: more than 3000 of 4000 left.
	if rem < 3000 {
		t.Errorf("x-ratelimit-remaining-tokens %d of 4000 after a tool loop sent upstream with max_tokens 1000 "+
			"and thinking disabled: the estimate counted Opus 5's default thinking room (4096) the request turned off", rem)
	}

	// The contrast: thinking sent back, the default thinking stays on and the upstream
	// may use its room, which the estimate counts.
	resp, b = postRaw(t, c, g.url+"/v1/chat/completions",
		loop("u-thought", `,"thinking_blocks":[{"type":"thinking","thinking":"Checking the weather.","signature":"c2lnbmVk"}]`), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("tool loop with its thinking_blocks: status %d %s", resp.StatusCode, b)
	}
	if sent := up.body(t, 1); string(sent["max_tokens"]) != "5096" || sent["thinking"] != nil {
		t.Errorf("upstream got max_tokens %s, thinking %s; want 5096 and the model's default", sent["max_tokens"], sent["thinking"])
	}
	if rem := resp.Header.Get("X-Ratelimit-Remaining-Tokens"); rem != "0" {
		t.Errorf("x-ratelimit-remaining-tokens %s of 4000 after a tool loop sent upstream with max_tokens 5096 "+
			"and the default thinking; want 0, the estimate counting its room", rem)
	}
}
