package gateway

import (
	"net"
	"net/http"
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
			addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
				writeStreamHead(c)
				writeChunk(c, tc.body)
				_, _ = c.Write([]byte("0\r\n\r\n"))
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
