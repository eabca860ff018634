package gateway

import (
	"strings"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"
)

// The client's anthropic-beta goes upstream, and Anthropic answers the same body
// otherwise under other betas: a request with one neither reads nor fills the cache,
// so that no beta's answer is served to a request asking for others (or none).
func TestCacheAnthropicBetaBypass(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	up := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		calls.Add(1)
		ctx.Response.Header.SetContentType("application/json")
		ctx.SetBodyString(`{"id":"msg_01","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"betas: ` +
			string(ctx.Request.Header.Peek("anthropic-beta")) + `"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":2}}`)
	})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  claude: {provider: anthropic, base_url: "http://`+up+`/v1", model: claude-x, api_key: sk-ant-test, timeout: 5s}
endpoints:
  - {name: chat, type: chat, routes: [{backend: claude}], cache: {ttl: 1h}}
`)
	body := `{"model":"chat","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`
	steps := []struct {
		beta, cache, text string
	}{
		{"", "miss", "betas: "},
		{"interleaved-thinking-2025-05-14", "bypass", "betas: interleaved-thinking-2025-05-14"},
		{"context-management-2025-06-27", "bypass", "betas: context-management-2025-06-27"},
		{"", "hit", "betas: "},
	}
	for i, s := range steps {
		hdr := map[string]string{"anthropic-version": "2023-06-01"}
		if s.beta != "" {
			hdr["anthropic-beta"] = s.beta
		}
		resp, b := contractPost(t, g, "/v1/messages", body, hdr)
		if resp.StatusCode != 200 || resp.Header.Get("X-Tollgate-Cache") != s.cache || !strings.Contains(b, `"text":"`+s.text+`"`) {
			t.Errorf("call %d, anthropic-beta %q: %d, x-tollgate-cache %q, %s; want %s and the answer to its own betas (%q)",
				i, s.beta, resp.StatusCode, resp.Header.Get("X-Tollgate-Cache"), b, s.cache, s.text)
		}
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("upstream calls %d, want 3 (each beta's call went up, the repeat without betas was a hit)", n)
	}
}
