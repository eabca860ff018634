package gateway

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A chat server behind the Responses or Messages bridge that sends its answer and its
// usage chunk (the last a chat stream sends before data: [DONE]) and then neither
// [DONE] nor the body's end (a server stuck after its last token, a proxy that holds
// the connection): the bridge's terminal event is the end of the client's stream,
// which ends right after it, not when stream_idle_timeout (without one, the backend's
// whole timeout) gives up on the upstream. The request is logged and counted whole,
// and the upstream connection, the rest of its answer unread, is closed rather than
// kept for another request.
func TestBridgedStreamEndsAtUsageChunkOfSilentUpstream(t *testing.T) {
	t.Parallel()
	const usageChunk = `data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[],` +
		`"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}` + "\n\n"
	for _, tc := range []struct {
		name, backend, path, body, last string
	}{
		{"responses", "responses_api: chat", "/v1/responses", `{"model":"chat","stream":true,"input":"hi"}`, "event: response.completed\n"},
		{"messages", "messages_api: chat", "/v1/messages", `{"model":"chat","stream":true,"max_tokens":50,"messages":[{"role":"user","content":"hi"}]}`, "event: message_stop\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g, resp, body := silentAfter(t, []string{bridgeChunk("Hel", ""), bridgeChunk("lo", ""), bridgeChunk("", `"stop"`), usageChunk},
				"provider: openai, model: m, "+tc.backend, tc.path, tc.body, nil)
			if !strings.Contains(body, tc.last) || strings.Contains(body, `"error":{`) || strings.Contains(body, `"type":"error"`) {
				t.Errorf("stream %q: want it whole, ending with %q", body, tc.last)
			}
			line := accessLine(t, g, resp.Header.Get("X-Request-Id"))
			if line["error"] != "" || line["output_tokens"] != 3.0 || line["input_tokens"] != 7.0 {
				t.Errorf("access log error %v, tokens %v in %v out; want a whole answer of 7 and 3 tokens", line["error"], line["input_tokens"], line["output_tokens"])
			}
			if ms, _ := line["latency_ms"].(float64); ms > 2000 {
				t.Errorf("access log latency_ms %v", ms)
			}
			targetsIdle(t, g)
		})
	}
}

// silentAfter relays a stream from an upstream that sends events and then nothing,
// keeping its connection open until the gateway closes it: the gateway's one endpoint
// chat routes to backend up (backend: its settings but base_url and timeouts), path is
// asked with body (and the headers hdr), and the answer is read whole.
// The client's stream must end, and the upstream's connection be closed, within 2 s
// of the request: well before stream_idle_timeout (5 s) and the backend's timeout.
func silentAfter(t *testing.T, events []string, backend, path, body string, hdr map[string]string) (*gw, *http.Response, string) {
	t.Helper()
	upClosed := make(chan time.Time, 1)
	addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
		writeStreamHead(c)
		for _, ev := range events {
			writeChunk(c, ev)
		}
		// Silent until the gateway closes the connection.
		_, _ = io.Copy(io.Discard, c)
		upClosed <- time.Now()
	})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {`+backend+`, base_url: "http://`+addr+`/v1", timeout: 20s, stream_idle_timeout: 5s}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}], retries: 0}
`)
	start := time.Now()
	resp, b := postRaw(t, &http.Client{Timeout: 10 * time.Second}, g.url+path, body, hdr)
	took := time.Since(start)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %q", resp.StatusCode, b)
	}
	if took > 2*time.Second {
		t.Errorf("the client's stream ended %v after the request, its last event long sent: held until stream_idle_timeout", took.Round(time.Millisecond))
	}
	select {
	case at := <-upClosed:
		if d := at.Sub(start); d > 2*time.Second {
			t.Errorf("the upstream connection was closed %v after the request", d.Round(time.Millisecond))
		}
	case <-time.After(5 * time.Second):
		t.Error("the upstream connection, its answer unread, was kept open")
	}
	return g, resp, string(b)
}
