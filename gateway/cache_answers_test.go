package gateway

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// cachedChatAnswer is a chat completion whose message says content, finishing
// with finish (and choiceExtra after it in the choice).
func cachedChatAnswer(id, content, finish, choiceExtra string) string {
	return `{"id":"` + id + `","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":` +
		strconv.Quote(content) + `},"finish_reason":"` + finish + `"` + choiceExtra + `}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`
}

// Claude pauses a long web-search turn (stop_reason pause_turn), which the gateway
// answers as finish_reason "stop" with what was written: a partial answer, which the
// cache does not keep, so the request sent again starts the turn over upstream.
func TestCachePausedTurnNotKept(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	calls := 0
	up := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		mu.Lock()
		calls++
		mu.Unlock()
		ctx.Response.Header.SetContentType("application/json")
		ctx.SetBodyString(`{"id":"msg_01Paused","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[` +
			`{"type":"server_tool_use","id":"srvtoolu_01","name":"web_search","input":{"query":"gateway news"}},` +
			`{"type":"web_search_tool_result","tool_use_id":"srvtoolu_01","content":[{"type":"web_search_result","url":"https://example.com/news","title":"News","encrypted_content":"Eqgf","page_age":"May 1, 2026"}]},` +
			`{"type":"server_tool_use","id":"srvtoolu_02","name":"web_search","input":{"query":"gateway news 2026"}}],` +
			`"stop_reason":"pause_turn","stop_sequence":null,"usage":{"input_tokens":2000,"output_tokens":120,"server_tool_use":{"web_search_requests":2}}}`)
	})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  claude: {provider: anthropic, base_url: "http://`+up+`/v1", model: claude-sonnet-4-5-20250929, api_key: sk-ant-test, timeout: 5s}
endpoints:
  - {name: chat, type: chat, routes: [{backend: claude}], cache: {ttl: 1h}}
`)
	body := `{"model":"chat","messages":[{"role":"user","content":"What is new with gateways?"}],"web_search_options":{}}`
	resp, b := contractPost(t, g, "/v1/chat/completions", body, nil)
	if resp.StatusCode != 200 || !strings.Contains(b, `"content":null`) || !strings.Contains(b, `"finish_reason":"stop"`) {
		t.Fatalf("paused turn: %d %s; want 200 with content null, finish_reason stop", resp.StatusCode, b)
	}
	resp, b = contractPost(t, g, "/v1/chat/completions", body, nil)
	mu.Lock()
	n := calls
	mu.Unlock()
	if got := resp.Header.Get("X-Tollgate-Cache"); got != "miss" || n != 2 {
		t.Errorf("the paused request sent again: got x-tollgate-cache %q and %d upstream calls (answer %.120s); "+
			"expected miss and 2 calls (a paused, partial answer is not kept: the request sent again starts the turn over)", got, n, b)
	}
}

// An OpenAI-compatible upstream (OpenRouter) answers 200 for a generation that failed
// part-way, the failure in the choice (finish_reason "error", an error object): not
// kept, so a repeat goes upstream again.
func TestCacheChoiceErrorNotKept(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	calls := 0
	up := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		mu.Lock()
		calls++
		mu.Unlock()
		ctx.Response.Header.SetContentType("application/json")
		ctx.SetBodyString(cachedChatAnswer("gen-1", "", "error",
			`,"native_finish_reason":"error","error":{"code":502,"message":"Upstream provider returned an error mid-generation"}`))
	})
	g := startGateway(t, cacheGatewayConfig(up, "{ttl: 1h}", ""))
	body := `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
	contractPost(t, g, "/v1/chat/completions", body, nil)
	resp, b := contractPost(t, g, "/v1/chat/completions", body, nil)
	mu.Lock()
	n := calls
	mu.Unlock()
	if got := resp.Header.Get("X-Tollgate-Cache"); got != "miss" || n != 2 {
		t.Errorf("a 200 whose choice holds an error object, asked again: got x-tollgate-cache %q and %d upstream calls (answer %.160s); "+
			"expected miss and 2 calls (an answer holding an error object is never kept)", got, n, b)
	}
}

// Cache-Control on two lines, an empty one first, then no-store (a proxy adding a
// line): read as one list (RFC 9111 5.2), so nothing is kept.
func TestCacheNoStoreOnLaterLine(t *testing.T) {
	t.Parallel()
	mock, addr := startMock(t, mockllm.Options{MaxTokens: 4})
	g := startGateway(t, cacheGatewayConfig(addr, "{ttl: 1h}", ""))
	body := `{"model":"chat","messages":[{"role":"user","content":"my account number is 12345"}]}`
	resp, b := exchange(t, g.Addr(), rawRequest(t, g, body, "Cache-Control:", "Cache-Control: no-store"))
	if resp.StatusCode != 200 {
		t.Fatalf("no-store request: %d %s", resp.StatusCode, b)
	}
	first := resp.Header.Get("X-Tollgate-Cache")
	resp, _ = contractPost(t, g, "/v1/chat/completions", body, nil)
	second := resp.Header.Get("X-Tollgate-Cache")
	if first != "bypass" || second != "miss" || upstreamCalls(mock, "/v1/chat/completions") != 2 {
		t.Errorf("Cache-Control lines \"\" and \"no-store\", then the same request without: got x-tollgate-cache %q then %q, %d upstream calls; "+
			"expected bypass then miss, 2 calls (no-store keeps nothing)", first, second, upstreamCalls(mock, "/v1/chat/completions"))
	}
}

// An operator purges an endpoint's cache while a request waits on the upstream: its
// answer, asked for before the purge, is not kept after it, so the next identical
// request goes upstream (as after a reload, carryCaches).
func TestCachePurgeLeavesNoEarlierAnswer(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	var mu sync.Mutex
	calls := 0
	up := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		content := "fresh answer"
		if n == 1 {
			arrived <- struct{}{}
			<-release
			content = "answer begun before the purge"
		}
		ctx.Response.Header.SetContentType("application/json")
		ctx.SetBodyString(cachedChatAnswer("c"+strconv.Itoa(n), content, "stop", ""))
	})
	g := startGateway(t, cacheGatewayConfig(up, "{ttl: 1h}", ""))
	body := `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
	done := make(chan struct{})
	go func() {
		// Not contractPost: t.Fatal belongs to the test's goroutine.
		defer close(done)
		if resp, err := http.Post(g.url+"/v1/chat/completions", "application/json", strings.NewReader(body)); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	select {
	case <-arrived:
	case <-time.After(5 * time.Second):
		close(release)
		t.Fatal("the first request never reached the upstream")
	}
	req, _ := http.NewRequest("DELETE", "http://"+g.AdminAddr()+"/admin/endpoints/chat/cache", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		close(release)
		t.Fatal(err)
	}
	pb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	close(release)
	<-done
	if resp.StatusCode != 200 {
		t.Fatalf("purge: %d %s", resp.StatusCode, pb)
	}
	r2, b2 := contractPost(t, g, "/v1/chat/completions", body, nil)
	if got := r2.Header.Get("X-Tollgate-Cache"); got != "miss" || strings.Contains(b2, "before the purge") {
		t.Errorf("after the purge, the same request: got x-tollgate-cache %q, answer begun before the purge %v; "+
			"expected miss and a fresh answer (nothing asked of the upstream before the purge is served after it)", got, strings.Contains(b2, "before the purge"))
	}
}
