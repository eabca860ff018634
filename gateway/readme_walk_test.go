package gateway

import (
	"encoding/json"
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

// recordingChatUpstream serves a fixed chat completion and records the X-Request-Id each
// request carried.
func recordingChatUpstream(t *testing.T) (addr string, ids func() []string) {
	var mu sync.Mutex
	var got []string
	addr = serveUpstream(t, func(ctx *fasthttp.RequestCtx) {
		mu.Lock()
		got = append(got, string(ctx.Request.Header.Peek("X-Request-Id")))
		mu.Unlock()
		ctx.Response.Header.SetContentType("application/json")
		ctx.Response.SetBodyString(`{"id":"c1","object":"chat.completion","created":1,"model":"up-model","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`)
	})
	return addr, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
}

func postWith(t *testing.T, url, body string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// The token estimate reads "max_tokens": 5000.0 (or 5e3) as 5000, as vLLM (pydantic's
// lax mode) does, not as missing (default_max_tokens). The charge shows in
// x-ratelimit-remaining-tokens, taken when the request was admitted.
func TestTokenEstimateReadsWholeFloatMaxTokens(t *testing.T) {
	up, _ := recordingChatUpstream(t)
	eps := ""
	forms := []string{"5000", "5000.0", "5e3"}
	for i := range forms {
		eps += `
  - name: small` + string(rune('0'+i)) + `
    type: chat
    routes: [{backend: up}]
    default_max_tokens: 16
    limits: [{per: endpoint, tokens: 100000, window: minute}]
`
	}
	g := startGateway(t, mockConfig(up, "", eps))
	for i, mt := range forms {
		resp, body := postWith(t, g.url+"/v1/chat/completions",
			`{"model":"small`+string(rune('0'+i))+`","messages":[{"role":"user","content":"hi"}],"max_tokens":`+mt+`}`, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("max_tokens %s: status %d: %s", mt, resp.StatusCode, body)
		}
		t.Logf("max_tokens %s: x-ratelimit-remaining-tokens %s", mt, resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
		if rem, _ := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens")); rem > 100000-5000 {
			t.Errorf("max_tokens %s: x-ratelimit-remaining-tokens %d, want at most %d (the estimate counts max_tokens 5000, as for \"max_tokens\": 5000)", mt, rem, 100000-5000)
		}
	}
}

// A stream the gateway cuts when shutdown_grace runs out is logged as shutdown_cut
// (status 200, what the client got), not as the client hanging up (client_gone, 499).
func TestShutdownCutStreamIsNotClientGone(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 4000, TPOT: 20 * time.Millisecond})
	g := startGateway(t, strings.Replace(mockConfig(addr, "", ""), "shutdown_grace: 5s", "shutdown_grace: 300ms", 1))
	req, _ := http.NewRequest("POST", g.url+"/v1/chat/completions",
		strings.NewReader(`{"model":"chat","stream":true,"max_tokens":4000,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	// The client keeps reading the stream until the gateway cuts it.
	read := make(chan struct{})
	go func() {
		defer close(read)
		_, _ = io.Copy(io.Discard, resp.Body)
	}()
	time.Sleep(100 * time.Millisecond)
	g.cancel() // SIGTERM: drain for shutdown_grace, then cut what is left
	select {
	case <-read:
	case <-time.After(4 * time.Second):
		t.Fatal("the stream was not cut when the grace ran out")
	}
	<-g.done
	g.done <- nil
	var line map[string]any
	for _, l := range strings.Split(g.logs.String(), "\n") {
		if strings.Contains(l, `"msg":"request"`) && strings.Contains(l, `"endpoint":"chat"`) {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
		}
	}
	if line == nil {
		t.Fatalf("no access log line for the stream:\n%s", g.logs.String())
	}
	if line["error"] != "shutdown_cut" || line["status"] != float64(200) {
		t.Errorf("a stream the gateway cut at the end of shutdown_grace is logged as status %v error %q, want 200 shutdown_cut", line["status"], line["error"])
	}
}
