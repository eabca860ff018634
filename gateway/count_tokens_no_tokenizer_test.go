package gateway

import (
	"strings"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// A server found without a tokenizer (its /tokenize answered 404) is asked once: the
// counts after it are refused with the same 400 without asking it (no attempt in the
// access log, tollgate_upstream_attempts_total or the upstream's request count),
// and an endpoint with a fallback goes to it at once. Chat calls to the same backend
// go upstream as before, and a reload, which builds the backend anew, asks again.
func TestCountTokensNoTokenizerRemembered(t *testing.T) {
	var tokenize, chat atomic.Int64
	counter, counterAddr := startMock(t, mockllm.Options{Model: "vllm-up", Seed: 3})
	addr := serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		ctx.Response.Header.SetContentTypeBytes(strJSON)
		switch string(ctx.Path()) {
		case "/v1/chat/completions":
			chat.Add(1)
			ctx.SetBody(benchChatResp)
			return
		case "/tokenize":
			tokenize.Add(1)
		}
		ctx.SetStatusCode(404)
		ctx.SetBodyString(`{"error":{"message":"Invalid URL (POST ` + string(ctx.Path()) + `)","type":"invalid_request_error","param":null,"code":null}}`)
	})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  gpt: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model, timeout: 5s, messages_api: chat}
  vllm: {provider: openai, base_url: "http://`+counterAddr+`/v1", model: vllm-up, timeout: 5s, messages_api: chat}
endpoints:
  - {name: gpt, type: chat, routes: [{backend: gpt}], retries: 2}
  - {name: gpt-fb, type: chat, routes: [{backend: gpt}], retries: 2, fallbacks: [vllm]}
`)
	const countBody = `{"model":"gpt","messages":[{"role":"user","content":"hi"}]}`
	resp, first := msgPostTo(t, g, "/v1/messages/count_tokens", countBody, "X-Request-Id", "count-0")
	if resp.StatusCode != 400 || !strings.Contains(first, "has no tokenizer API") || tokenize.Load() != 1 {
		t.Fatalf("first count: %d %s, /tokenize asked %d times", resp.StatusCode, first, tokenize.Load())
	}
	for _, id := range []string{"count-1", "count-2", "count-3"} {
		resp, body := msgPostTo(t, g, "/v1/messages/count_tokens", countBody, "X-Request-Id", id)
		if want := strings.Replace(first, "count-0", id, 1); resp.StatusCode != 400 || body != want {
			t.Errorf("%s: %d %s\nwant the first count's answer %s", id, resp.StatusCode, body, want)
		}
		if line := accessLine(t, g, id); line["status"] != 400.0 || line["error"] != "unsupported_operation" || line["attempts"] != 0.0 || line["backend"] != "gpt" {
			t.Errorf("%s: access log %v; want 400 unsupported_operation, no attempt, backend gpt", id, line)
		}
	}
	if n := tokenize.Load(); n != 1 {
		t.Errorf("/tokenize asked %d times for 4 counts, want once", n)
	}
	fams := scrapeAdmin(t, g)
	_, all := seriesWith(fams, "tollgate_upstream_attempts_total", "backend", "gpt")
	if _, sum := seriesWith(fams, "tollgate_upstream_attempts_total", "backend", "gpt", "outcome", "status_4xx"); sum != 1 || all != 1 {
		t.Errorf("attempts on gpt: %v status_4xx, %v in all; want the first count's alone", sum, all)
	}

	// The fallback counts, gpt not asked.
	resp, body := msgPostTo(t, g, "/v1/messages/count_tokens", `{"model":"gpt-fb","messages":[{"role":"user","content":"hi"}]}`, "X-Request-Id", "count-fb")
	if resp.StatusCode != 200 || body != `{"input_tokens":1}` || resp.Header.Get("X-Tollgate-Backend") != "vllm" {
		t.Fatalf("with a fallback: %d %s (backend %s)", resp.StatusCode, body, resp.Header.Get("X-Tollgate-Backend"))
	}
	if line := accessLine(t, g, "count-fb"); line["attempts"] != 1.0 || line["backend"] != "vllm" {
		t.Errorf("access log attempts %v backend %v; want 1, vllm", line["attempts"], line["backend"])
	}
	if n, st := tokenize.Load(), counter.Stats(); n != 1 || st.Requests["/tokenize"] != 1 {
		t.Errorf("/tokenize asked %d times of gpt, %d of vllm; want 1, 1", n, st.Requests["/tokenize"])
	}

	// Chat goes upstream on the same backend.
	if resp, body := msgPostTo(t, g, "/v1/messages", `{"model":"gpt","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`); resp.StatusCode != 200 || chat.Load() != 1 {
		t.Errorf("message: %d %s, chat asked %d times", resp.StatusCode, body, chat.Load())
	}

	// A reload asks again.
	if status, _, raw := adminGet(t, "POST", "http://"+g.AdminAddr()+"/admin/reload", nil); status != 200 {
		t.Fatalf("reload: %d %s", status, raw)
	}
	if resp, body := msgPostTo(t, g, "/v1/messages/count_tokens", countBody); resp.StatusCode != 400 || tokenize.Load() != 2 {
		t.Errorf("after a reload: %d %s, /tokenize asked %d times; want 2", resp.StatusCode, body, tokenize.Load())
	}
}
