package gateway

// An upstream error that quotes the backend's key JSON-escaped (valid JSON that every
// client reads back the same) reaches the client with the key masked: PHP's
// json_encode writes '/' as \/, and .NET's System.Text.Json (ASP.NET services, Azure
// API Management policies) writes '+' as \u002B. Base64-style keys, Basic passwords and
// SAS signatures hold both, and the client's SDK decodes the message.

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// errorMessage is error.message of an OpenAI error body as a client's SDK reads it:
// JSON-decoded.
func errorMessage(t *testing.T, body string) string {
	t.Helper()
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("answer is not JSON: %v\n%s", err, body)
	}
	return e.Error.Message
}

// keyedOpenAIConfig is a gateway with one chat endpoint on an openai backend at url
// with key key.
func keyedOpenAIConfig(url, key string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "` + url + `/v1", model: m, api_key: "` + key + `"}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`
}

func TestEscapedKeyMaskedInUpstreamError(t *testing.T) {
	for _, c := range []struct{ name, key, escaped string }{
		{"slash as \\/", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzr", `wJalrXUtnFEMI\/K7MDENG\/bPxRfiCYzzr`},
		{"plus as \\u002B", "Zq7+Rt2WmX9+kLp4Vb8Nc3Hs", `Zq7\u002BRt2WmX9\u002BkLp4Vb8Nc3Hs`},
	} {
		t.Run(c.name, func(t *testing.T) {
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "); got != c.key {
					w.WriteHeader(500)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(401)
				io.WriteString(w, `{"error":{"message":"Invalid API key: `+c.escaped+`","type":"invalid_request_error","code":"invalid_api_key"}}`)
			}))
			defer up.Close()
			g := startGateway(t, keyedOpenAIConfig(up.URL, c.key))
			status, body := probePost(t, g.url+"/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`, nil)
			if status != 401 {
				t.Fatalf("status %d, want the upstream's 401:\n%s", status, body)
			}
			if msg := errorMessage(t, body); msg != "Invalid API key: ***" {
				t.Errorf("the client reads %q, want the key masked", msg)
			}
		})
	}
}

// The same echo in an OpenAI-format stream's error event.
func TestEscapedKeyMaskedInStreamErrorEvent(t *testing.T) {
	const key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzs"
	escaped := strings.ReplaceAll(key, "/", `\/`)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, `data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]}`+"\n\n")
		io.WriteString(w, `data: {"error":{"message":"key `+escaped+` revoked mid-stream","type":"invalid_request_error","code":"invalid_api_key"}}`+"\n\n")
	}))
	defer up.Close()
	g := startGateway(t, keyedOpenAIConfig(up.URL, key))
	_, body := probePost(t, g.url+"/v1/chat/completions", `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`, nil)
	found := false
	for line := range strings.SplitSeq(body, "\n") {
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok || !strings.Contains(data, `"error"`) {
			continue
		}
		// The gateway's own error event for the stream ending without [DONE] follows.
		msg := errorMessage(t, data)
		found = found || msg == "key *** revoked mid-stream"
		if strings.Contains(msg, key) {
			t.Errorf("the client reads the key in an error event: %q", msg)
		}
	}
	if !found {
		t.Errorf("the upstream's error event did not reach the client with the key masked:\n%s", body)
	}
}
