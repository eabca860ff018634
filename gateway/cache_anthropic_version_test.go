package gateway

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/internal/redistest"
)

// The client's anthropic-version goes upstream with a Messages API call, and the
// version picks the answer's shape: it is part of the cache's key, so that an answer
// made for one version is served only to calls sending that one (or, made without
// the header, to calls without it), in memory and in Redis. A request sending the
// header twice is not looked up: which line the upstream reads is its own choice.
func TestCacheAnthropicVersionKeyed(t *testing.T) {
	t.Parallel()
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int64
			up := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
				calls.Add(1)
				ctx.Response.Header.SetContentType("application/json")
				ctx.SetBodyString(`{"id":"msg_01","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"version ` +
					string(ctx.Request.Header.Peek("anthropic-version")) + `"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":2}}`)
			})
			cache, limiter := "{ttl: 1h}", ""
			if store == "redis" {
				rds := redistest.Start(t)
				cache, limiter = "{ttl: 1h, store: redis}", "limiter: {store: redis, redis: {url: \""+rds.URL()+"\"}, timeout: 5s}\n"
			}
			g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  claude: {provider: anthropic, base_url: "http://`+up+`/v1", model: claude-x, api_key: sk-ant-test, timeout: 5s}
endpoints:
  - {name: chat, type: chat, routes: [{backend: claude}], cache: `+cache+`}
`+limiter)
			body := `{"model":"chat","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`
			stored := 0
			for i, s := range []struct{ version, cache, text string }{
				{"2023-06-01", "miss", "version 2023-06-01"},
				{"2023-01-01", "miss", "version 2023-01-01"},
				{"2023-06-01", "hit", "version 2023-06-01"},
				{"2023-01-01", "hit", "version 2023-01-01"},
				// The backend's own version goes up, the answer kept apart.
				{"", "miss", "version 2023-06-01"},
				{"", "hit", "version 2023-06-01"},
			} {
				hdr := map[string]string{}
				if s.version != "" {
					hdr["anthropic-version"] = s.version
				}
				resp, b := contractPost(t, g, "/v1/messages", body, hdr)
				if resp.StatusCode != 200 || resp.Header.Get("X-Tollgate-Cache") != s.cache || !strings.Contains(b, `"text":"`+s.text+`"`) {
					t.Fatalf("call %d, anthropic-version %q: %d, x-tollgate-cache %q, %s; want %s and %q",
						i, s.version, resp.StatusCode, resp.Header.Get("X-Tollgate-Cache"), b, s.cache, s.text)
				}
				if s.cache == "miss" && store == "redis" {
					stored++
					waitStored(t, g, "chat", float64(stored))
				}
			}
			if n := calls.Load(); n != 3 {
				t.Errorf("upstream calls %d, want 3", n)
			}
			// Two lines: not looked up, not kept.
			req, _ := http.NewRequest("POST", g.url+"/v1/messages", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Add("anthropic-version", "2023-06-01")
			req.Header.Add("anthropic-version", "2023-01-01")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			b := string(raw)
			if resp.StatusCode != 200 || resp.Header.Get("X-Tollgate-Cache") != "bypass" || calls.Load() != 4 {
				t.Errorf("two anthropic-version lines: %d, x-tollgate-cache %q, upstream calls %d, %s; want bypass", resp.StatusCode, resp.Header.Get("X-Tollgate-Cache"), calls.Load(), b)
			}
		})
	}
}
