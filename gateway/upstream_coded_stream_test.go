package gateway

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// A stream's events are not decoded: an upstream stream whose Content-Encoding names
// a coding is refused from its header, 502 upstream_bad_response before any of it
// reaches the client, whether its first bytes come with the header or after a wait
// (which would send the client the 200), and whether they are coded or not.
func TestUpstreamCodedStreamRefused(t *testing.T) {
	t.Parallel()
	const events = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n"
	for _, tc := range []struct {
		name string
		body string
		wait time.Duration
	}{
		{"gzip with the header", string(fasthttp.AppendGzipBytes(nil, []byte(events))), 0},
		{"gzip after a wait", string(fasthttp.AppendGzipBytes(nil, []byte(events))), 300 * time.Millisecond},
		{"labelled gzip, not coded", events, 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
				_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Encoding: gzip\r\nContent-Length: " +
					strconv.Itoa(len(tc.body)) + "\r\n\r\n"))
				time.Sleep(tc.wait)
				_, _ = c.Write([]byte(tc.body))
			})
			g := startGateway(t, mockConfig(addr, "", ""))
			resp, body := postChat(t, g, streamBody)
			if resp.StatusCode != 502 || !strings.Contains(body, `"code":"upstream_bad_response"`) {
				t.Fatalf("%d %q; want 502 upstream_bad_response", resp.StatusCode, body)
			}
		})
	}
}
