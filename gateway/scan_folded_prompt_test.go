package gateway

import (
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

// "Messages" is read as the prompt by an upstream whose parser folds case (the
// Anthropic translation decodes with encoding/json): its size counts in the token
// estimate as "messages" does, so a prompt too large for what is left is refused the
// same way.
func TestFoldedMessagesKeyCountsInEstimate(t *testing.T) {
	big := strings.Repeat("word ", 4000) // 20000 bytes: about 5000 tokens estimated
	run := func(key string) (status int, sentToUpstream int) {
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
		return ctx.Response.StatusCode(), rec.count() - 1
	}
	if status, sent := run("messages"); status != 429 || sent != 0 {
		t.Fatalf("contrast, \"messages\": status %d, %d sent upstream; want 429 and none", status, sent)
	}
	if status, sent := run("Messages"); status != 429 || sent != 0 {
		t.Errorf("\"Messages\": status %d, %d sent upstream; want 429 and none, as for \"messages\"", status, sent)
	}
}
