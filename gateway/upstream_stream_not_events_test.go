package gateway

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// README (Request handling): an event that is not one JSON object (an HTML error
// page, a proxy's message) ends the stream with code upstream_bad_response. An
// upstream (a proxy in front of it) that answers a stream's 200 event-stream header
// with an HTML page, a bare JSON error object or plain text instead of events sent an
// invalid stream, not a cut one: before the client's header went out it gets a 502
// upstream_bad_response (with a JSON error's message), after it an error event of
// that code.
func TestUpstreamStreamNotEventsIsBadResponse(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		status     int
		message    string
	}{
		{name: "html page", body: "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body><center><h1>502 Bad Gateway</h1></center></body>\r\n</html>\r\n", status: 502},
		{name: "json error object", body: `{"error":{"message":"model overloaded","type":"server_error","code":503}}` + "\n", status: 502,
			message: "model overloaded"},
		{name: "plain text", body: "upstream connect error or disconnect/reset before headers. reset reason: overflow", status: 502},
		{name: "html page after an event", body: sseChunk("Hi") + "<html><body>502 Bad Gateway</body></html>\n", status: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// One write: the gateway sends the stream's header once the upstream
			// makes it wait, and a pause before the end of the body would make the
			// 502 cases an error event after a 200 header (as the last case is).
			addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"+
					strconv.FormatInt(int64(len(tc.body)), 16)+"\r\n"+tc.body+"\r\n0\r\n\r\n")
			})
			g := startGateway(t, mockConfig(addr, "", ""))
			resp, body := postChat(t, g, streamBody)
			if resp.StatusCode != tc.status || !strings.Contains(body, `"code":"upstream_bad_response"`) {
				t.Fatalf("%d %q, want %d and upstream_bad_response", resp.StatusCode, body, tc.status)
			}
			if tc.status == 200 && (!strings.HasPrefix(body, "data: {\"id\"") || strings.Contains(body, "[DONE]")) {
				t.Errorf("%q: want the event, then an error event and no [DONE]", body)
			}
			if !strings.Contains(body, tc.message) || tc.message == "" && strings.Contains(body, "<html>") {
				t.Errorf("%q: want the message %q and nothing of the page", body, tc.message)
			}
		})
	}
}

// anthropicStreamConfig is a gateway with one chat endpoint on an Anthropic backend at
// addr whose key is key.
func anthropicStreamConfig(addr, key string) string {
	return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 5s}
backends:
  claude: {provider: anthropic, base_url: "http://` + addr + `/v1", model: ` + afModel + `, api_key: "` + key + `", timeout: 5s}
endpoints:
  - {name: chat, type: chat, routes: [{backend: claude}]}
logging: {level: warn, access_log: false}
`
}

// An Anthropic stream whose body is a bare JSON error object quoting the backend's key
// ends with upstream_bad_response and the object's message, the key masked, in the
// client's answer and the log, mid-stream and before the first event.
func TestAnthropicBareErrorObjectMasked(t *testing.T) {
	const key = "sk-ant-api03-Rr3SecretKeyValue-9f8e7d"
	bare := `{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key ` + key + `"}}` + "\n"
	for _, tc := range []struct {
		name, before string
	}{
		{"mid-stream", anthStart + anthTextStart(0) + anthText(0, "Hi")},
		{"before the first event", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
				writeStreamHead(c)
				if tc.before != "" {
					writeChunk(c, tc.before)
				}
				writeChunk(c, bare)
				_, _ = c.Write([]byte("0\r\n\r\n"))
			})
			g := startGateway(t, anthropicStreamConfig(addr, key))
			resp, body := postChat(t, g, streamBody)
			if !strings.Contains(body, "upstream_bad_response") {
				t.Fatalf("%d %q: want upstream_bad_response", resp.StatusCode, body)
			}
			if strings.Contains(body, key) {
				t.Errorf("the client reads the backend's key: %d %q", resp.StatusCode, body)
			}
			if logs := g.logs.String(); strings.Contains(logs, key) {
				t.Errorf("the log holds the backend's key:\n%s", logs)
			}
		})
	}
}

// An Anthropic stream whose first events (read within the attempt) are a bare JSON
// error object gets a 502 upstream_bad_response quoting its message, as an OpenAI
// backend's stream does (TestUpstreamStreamNotEventsIsBadResponse).
func TestAnthropicBareErrorBeforeFirstEventQuoted(t *testing.T) {
	bare := `{"type":"error","error":{"type":"overloaded_error","message":"model m-overloaded-7"}}` + "\n"
	addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
		writeStreamHead(c)
		writeChunk(c, bare)
		_, _ = c.Write([]byte("0\r\n\r\n"))
	})
	g := startGateway(t, anthropicStreamConfig(addr, "sk-ant-test-key-0123456789"))
	resp, body := postChat(t, g, streamBody)
	if resp.StatusCode != 502 || !strings.Contains(body, "upstream_bad_response") {
		t.Fatalf("%d %q: want 502 upstream_bad_response", resp.StatusCode, body)
	}
	if !strings.Contains(body, "model m-overloaded-7") {
		t.Errorf("502 %q: want the upstream's message quoted, as for an OpenAI backend", body)
	}
}
