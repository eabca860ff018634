package gateway

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// SRE: some OpenAI-compatible servers end a chat stream after its finish_reason chunk
// and its usage chunk with the body's end, no data: [DONE]. The Messages and Responses
// bridges completed such a stream, but plain chat passthrough sent the client an
// upstream_stream_cut error event, logged the request as failed and counted the
// failure against the target. Once every choice has finished and the usage asked for
// has come, the body's clean end is the stream's end: the client gets data: [DONE].
// A body that ends before that was cut, as before.
func TestChatStreamWithoutDone(t *testing.T) {
	chunk := func(s string) string { return strconv.FormatInt(int64(len(s)), 16) + "\r\n" + s + "\r\n" }
	finish := `data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\n"
	usage := `data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}` + "\n\n"
	addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, req *http.Request) {
		events := sseChunk("hello")
		switch req.Header.Get("X-Test-Mode") {
		case "whole":
			events += finish + usage
		case "no-usage":
			events += finish
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"+chunk(events)+"0\r\n\r\n")
	})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+addr+`/v1", model: m, health: {eject_after: 1}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`)
	cases := []struct {
		name, mode, body string
		whole            bool
	}{
		{"usage asked by the client", "whole", `{"model":"chat","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`, true},
		{"usage asked by the gateway", "whole", `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`, true},
		{"usage not come", "no-usage", `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`, false},
		{"no finish_reason", "", `{"model":"chat","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			okBefore := counterValue(t, g.Server, "tollgate_upstream_attempts_total", "backend", "up", "outcome", "ok")
			req, _ := http.NewRequest("POST", g.url+"/v1/chat/completions", strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Test-Mode", tc.mode)
			resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body, id := string(b), resp.Header.Get("X-Request-Id")
			if resp.StatusCode != 200 || !strings.Contains(body, "hello") {
				t.Fatalf("status %d, want the stream begun:\n%s", resp.StatusCode, body)
			}
			line := accessLine(t, g, id)
			okAfter := counterValue(t, g.Server, "tollgate_upstream_attempts_total", "backend", "up", "outcome", "ok")
			if tc.whole {
				if !strings.HasSuffix(body, "data: [DONE]\n\n") || strings.Contains(body, `"error"`) {
					t.Fatalf("the client got %q, want the stream ending with data: [DONE], no error event", body)
				}
				if tc.mode == "whole" && strings.Contains(tc.name, "gateway") && strings.Contains(body, "usage") {
					t.Fatalf("the usage chunk the gateway asked for reached the client: %q", body)
				}
				if line["error"] != "" || line["status"] != float64(200) || line["output_tokens"] != float64(2) {
					t.Fatalf("access log %v, want status 200, no error, the usage's 2 output tokens", line)
				}
				if okAfter != okBefore+1 {
					t.Fatalf("attempts with outcome ok went from %v to %v, want the stream's counted", okBefore, okAfter)
				}
				if !g.rt.Load().backends["up"].Healthy() {
					t.Fatal("the whole stream counted against its target (eject_after 1)")
				}
				return
			}
			if !strings.Contains(body, "upstream_stream_cut") || strings.Contains(body, "[DONE]") {
				t.Fatalf("the client got %q, want an upstream_stream_cut error event, no [DONE]", body)
			}
			if line["error"] != "upstream_stream_cut" {
				t.Fatalf("access log %v, want error upstream_stream_cut", line)
			}
			if okAfter != okBefore {
				t.Fatalf("a cut stream counted as an attempt with outcome ok")
			}
		})
	}
}
