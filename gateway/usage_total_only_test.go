package gateway

import (
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// A chat answer whose usage names total_tokens alone (a completion of ~1,000 tokens)
// has no usage count: its generated tokens are never counted (or priced) as input, as
// a rerank's lone total is (README "### Rerank": nothing is generated there); the
// estimate stands.
func TestChatTotalOnlyUsageNotInput(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("word ", 1000)
	addr := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetContentType("application/json")
		ctx.SetBodyString(`{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"up-model","choices":[{"index":0,"message":{"role":"assistant","content":"` +
			long + `"},"finish_reason":"stop"}],"usage":{"total_tokens":1010}}`)
	})
	g := startGateway(t, mockConfig(addr, `  priced: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model, pricing: {input_per_million: 1, output_per_million: 10}}
`, `  - {name: pchat, type: chat, routes: [{backend: priced}]}
`))
	status, raw := postJSON(t, g.url+"/v1/chat/completions", `{"model":"pchat","messages":[{"role":"user","content":"Write a long essay."}],"max_tokens":2000}`)
	if status != 200 {
		t.Fatalf("status %d: %s", status, raw)
	}
	in := counterValue(t, g.Server, "tollgate_tokens_total", "endpoint", "pchat", "type", "input")
	out := counterValue(t, g.Server, "tollgate_tokens_total", "endpoint", "pchat", "type", "output")
	if in == 1010 && out == 0 {
		t.Errorf("a chat completion of ~1,000 generated tokens counted as %v input and %v output tokens (its total_tokens as input); want no count, the estimate kept", in, out)
	}
}
