package gateway

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A Messages API stream relayed natively from an anthropic backend ends at the
// upstream's error event (overloaded_error mid-stream, or as its first event), which
// is the API's last: an upstream that then sends nothing and keeps its connection
// open does not hold the client's stream until stream_idle_timeout (without one, the
// backend's whole timeout). The client gets the error event as the upstream wrote it
// and then the stream's end; the request counts as the upstream's error, and the
// upstream connection is closed.
func TestMessagesStreamEndsAtUpstreamErrorEvent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		events []string
	}{
		{"mid-stream", []string{anthStart, anthTextStart(0), anthText(0, "Hel"), anthOverloaded}},
		{"first event", []string{anthOverloaded}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			upClosed := make(chan time.Time, 1)
			addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
				writeStreamHead(c)
				for _, ev := range tc.events {
					writeChunk(c, ev)
				}
				// Silent until the gateway closes the connection.
				_, _ = io.Copy(io.Discard, c)
				upClosed <- time.Now()
			})
			g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  claude: {provider: anthropic, base_url: "http://`+addr+`/v1", model: claude-x, api_key: k, timeout: 20s, stream_idle_timeout: 5s}
endpoints:
  - {name: chat, type: chat, routes: [{backend: claude}], retries: 0}
`)
			req, _ := http.NewRequest("POST", g.url+"/v1/messages", strings.NewReader(
				`{"model":"chat","stream":true,"max_tokens":50,"messages":[{"role":"user","content":"hi"}]}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("anthropic-version", "2023-06-01")
			start := time.Now()
			resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			took := time.Since(start)
			body := string(b)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("status %d, read %v: %q", resp.StatusCode, err, body)
			}
			if took > 2*time.Second {
				t.Errorf("the client's stream ended %v after the request, its error event long sent: held until stream_idle_timeout", took.Round(time.Millisecond))
			}
			if !strings.HasSuffix(body, anthOverloaded) || strings.Count(body, "event: error") != 1 {
				t.Errorf("stream %q: want it to end with the upstream's error event alone", body)
			}
			select {
			case at := <-upClosed:
				if d := at.Sub(start); d > 2*time.Second {
					t.Errorf("the upstream connection was closed %v after the request", d.Round(time.Millisecond))
				}
			case <-time.After(5 * time.Second):
				t.Error("the upstream connection was kept open")
			}
			if codes := streamErrorCodes(t, g, 1); len(codes) != 1 || codes["upstream_error"] != 1 {
				t.Errorf("tollgate_stream_errors_total by code %v, want upstream_error 1 alone", codes)
			}
			line := accessLine(t, g, resp.Header.Get("X-Request-Id"))
			if line["error"] != "upstream_error" {
				t.Errorf("access log error %v, want upstream_error", line["error"])
			}
			if ms, _ := line["latency_ms"].(float64); ms > 2000 {
				t.Errorf("access log latency_ms %v", ms)
			}
			targetsIdle(t, g)
		})
	}
}
