package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// bigAnthropicError is Anthropic's error body with a message of n bytes.
func bigAnthropicError(n int) string {
	return `{"type":"error","error":{"type":"invalid_request_error","message":"` + strings.Repeat("m", n) + `"},"request_id":"req_up"}`
}

// TestAnthropicStreamErrorBodyWhole: an upstream error answered to a streaming call
// on an anthropic backend, over 64 KiB, reaches the client whole (its message in
// full) on the Messages route and the chat route alike, and never as a body cut
// short.
func TestAnthropicStreamErrorBodyWhole(t *testing.T) {
	const msgLen = 100 << 10
	body := bigAnthropicError(msgLen)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("content-type", "application/json")
		w.WriteHeader(400)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(up.Close)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 5s}
backends:
  claude: {provider: anthropic, base_url: "`+up.URL+`/v1", model: claude-x, api_key: sk-ant-x, timeout: 5s}
endpoints:
  - {name: claude, type: chat, routes: [{backend: claude}]}
`)
	for _, c := range []struct{ name, path, body string }{
		{"messages", "/v1/messages", `{"model":"claude","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"hi"}]}`},
		{"chat", "/v1/chat/completions", `{"model":"claude","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"hi"}]}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", g.url+c.path, strings.NewReader(c.body))
			req.Header.Set("content-type", "application/json")
			req.Header.Set("anthropic-version", "2023-06-01")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 400 {
				t.Fatalf("status %d, want 400; body %.300s", resp.StatusCode, got)
			}
			var e struct {
				Type  string `json:"type"`
				Error struct {
					Type    string `json:"type"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(got, &e); err != nil {
				t.Fatalf("body of %d bytes is not whole JSON: %v; it ends %q", len(got), err, got[max(0, len(got)-80):])
			}
			if len(e.Error.Message) != msgLen {
				t.Fatalf("message of %d bytes, want the upstream's %d", len(e.Error.Message), msgLen)
			}
		})
	}
}

// TestAnthropicStreamErrorBodyOverBound: an error answer to a streaming call over the
// backend's max_response_bytes is not cut to fit: the client gets the gateway's own
// 502 upstream_bad_response, in the Messages API's shape on its route and OpenAI's
// on the chat route.
func TestAnthropicStreamErrorBodyOverBound(t *testing.T) {
	body := bigAnthropicError(100 << 10)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("content-type", "application/json")
		w.WriteHeader(400)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(up.Close)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 5s}
backends:
  claude: {provider: anthropic, base_url: "`+up.URL+`/v1", model: claude-x, api_key: sk-ant-x, timeout: 5s, max_response_bytes: 64KiB}
endpoints:
  - {name: claude, type: chat, routes: [{backend: claude}]}
`)
	const req = `{"model":"claude","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"hi"}]}`
	for _, c := range []struct{ name, path, want string }{
		{"messages", "/v1/messages", `"type":"error","error":{"type":"api_error"`},
		{"chat", "/v1/chat/completions", `"code":"upstream_bad_response"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, _ := http.NewRequest("POST", g.url+c.path, strings.NewReader(req))
			r.Header.Set("content-type", "application/json")
			r.Header.Set("anthropic-version", "2023-06-01")
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 502 || !json.Valid(got) || !strings.Contains(string(got), c.want) {
				t.Fatalf("status %d body %.400s; want 502 holding %s", resp.StatusCode, got, c.want)
			}
		})
	}
}
