package gateway

import (
	"strings"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"
)

// The answer cache keeps no Messages API answer whose stop_reason is pause_turn (a
// long server-tool turn Anthropic paused: sent again, the request starts it over) or
// refusal (the model declined, which a retry may not repeat), as it keeps no such
// chat answer.
func TestMessagesCacheKeepsNoPausedOrRefused(t *testing.T) {
	t.Parallel()
	for _, reason := range []string{"pause_turn", "refusal"} {
		t.Run(reason, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int64
			up := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
				calls.Add(1)
				ctx.Response.Header.SetContentType("application/json")
				content := `{"type":"server_tool_use","id":"srvtoolu_01","name":"web_search","input":{"query":"gateway news"}}`
				if reason == "refusal" {
					content = `{"type":"text","text":"I can't help with that."}`
				}
				ctx.SetBodyString(`{"id":"msg_01Stop","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[` +
					content + `],"stop_reason":"` + reason + `","stop_sequence":null,"usage":{"input_tokens":2000,"output_tokens":120}}`)
			})
			g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  claude: {provider: anthropic, base_url: "http://`+up+`/v1", model: claude-sonnet-4-5-20250929, api_key: sk-ant-test, timeout: 5s}
endpoints:
  - {name: chat, type: chat, routes: [{backend: claude}], cache: {ttl: 1h}}
`)
			body := `{"model":"chat","max_tokens":1024,"messages":[{"role":"user","content":"What is new with gateways?"}],` +
				`"tools":[{"type":"web_search_20250305","name":"web_search"}]}`
			first, b := msgPost(t, g, body)
			if first.StatusCode != 200 || !strings.Contains(b, `"stop_reason":"`+reason+`"`) {
				t.Fatalf("first call: %d %s", first.StatusCode, b)
			}
			again, b := msgPost(t, g, body)
			if got := again.Header.Get("X-Tollgate-Cache"); got != "miss" || calls.Load() != 2 {
				t.Errorf("the request sent again: x-tollgate-cache %q and %d upstream calls (answer %.80s); "+
					"want miss and 2 calls (a %s answer is not kept)", got, calls.Load(), b, reason)
			}
		})
	}
}
