package gateway

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"
)

// requestCounter counts the requests an upstream was sent.
type requestCounter struct {
	mu sync.Mutex
	n  int
}

func (r *requestCounter) add(*fasthttp.RequestCtx) {
	r.mu.Lock()
	r.n++
	r.mu.Unlock()
}

func (r *requestCounter) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// "Messages" and "meſſages" (U+017F, long s) are read as the prompt by an upstream
// whose parser folds case, Unicode folding included (the Anthropic translation decodes
// with encoding/json): their size counts in the token estimate as "messages" does, so
// a prompt too large for what is left is refused the same way.
func TestFoldedMessagesKeyCountsInEstimate(t *testing.T) {
	// encoding/json, as the Anthropic translation uses it, takes the key as messages.
	var probe struct {
		Messages []json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal([]byte(`{"meſſages":[{"role":"user","content":"hi"}]}`), &probe); err != nil || len(probe.Messages) != 1 {
		t.Fatalf("encoding/json does not read meſſages as messages: %v %v", err, probe)
	}
	big := strings.Repeat("word ", 4000) // 20000 bytes: about 5000 tokens estimated
	// "messages" is the contrast.
	for _, key := range []string{"messages", "Messages", "meſſages"} {
		t.Run(key, func(t *testing.T) {
			var rec requestCounter
			anth := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
				rec.add(ctx)
				ctx.SetContentType("application/json")
				ctx.SetBodyString(`{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"ok"}],"stop_reason":"end_turn","usage":{"input_tokens":5000,"output_tokens":1}}`)
			})
			s := newTestServer(t, `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  claude: {provider: anthropic, base_url: "http://`+anth+`/v1", model: claude-sonnet-4-5, api_key: sk-ant-xxxxxxxx}
endpoints:
  - {name: chat, type: chat, routes: [{backend: claude}], limits: [{per: endpoint, tokens: 8000, window: hour}]}
logging: {level: error, access_log: false}
`)
			// A first request spends 5001 of the 8000 tokens.
			first := newProxyCtx([]byte(`{"model":"chat","messages":[{"role":"user","content":"` + big + `"}],"max_tokens":10}`))
			proxyOnce(s, first)
			if first.Response.StatusCode() != 200 {
				t.Fatalf("first request: %d %s", first.Response.StatusCode(), first.Response.Body())
			}
			// The second, with as large a prompt, does not fit what is left.
			ctx := newProxyCtx([]byte(`{"model":"chat","` + key + `":[{"role":"user","content":"` + big + `"}],"max_tokens":10}`))
			proxyOnce(s, ctx)
			if status, sent := ctx.Response.StatusCode(), rec.count()-1; status != 429 || sent != 0 {
				t.Errorf("%q: status %d, %d sent upstream; want 429 and none, as for \"messages\"", key, status, sent)
			}
		})
	}
}
