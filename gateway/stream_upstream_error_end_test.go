package gateway

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/tollgate/tollgate/internal/promtest"
)

// vllmEngineError is the error event vLLM sends mid-stream when its engine fails.
const vllmEngineError = `data: {"error":{"object":"error","message":"engine failed","type":"InternalServerError","param":null,"code":500}}` + "\n\n"

// errorEvents counts the error events in a stream body.
func errorEvents(body string) int { return strings.Count(body, `data: {"error"`) }

// streamErrorCodes waits for the gateway to count n failed streams and returns the
// codes counted, with their counts.
func streamErrorCodes(t *testing.T, g *gw, n float64) map[string]float64 {
	t.Helper()
	var fams map[string]*dto.MetricFamily
	waitWithin(3*time.Second, func() bool {
		fams, _ = promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
		got, _ := promtest.Sum(fams, "tollgate_stream_errors_total", nil)
		return got >= n
	})
	codes := map[string]float64{}
	for _, m := range fams["tollgate_stream_errors_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if v := m.GetCounter().GetValue(); l.GetName() == "code" && v != 0 {
				codes[l.GetValue()] += v
			}
		}
	}
	return codes
}

// Once the upstream's own error event went to the client, the stream is over for the
// client: whatever the upstream does next (cuts the connection without [DONE], sends
// more events and then cuts it, sends bytes that are not events, falls silent past
// stream_idle_timeout) ends it with nothing added. The client gets exactly one error
// event, and the stream counts as the upstream's error, not a cut.
func TestStreamUpstreamErrorEventEndsStreamAlone(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		idle  bool // the backend has a 300 ms stream_idle_timeout
		after func(c net.Conn)
	}{
		{"then a cut", false, func(c net.Conn) {}},
		{"then more events and a cut", false, func(c net.Conn) {
			writeChunk(c, sseChunk("lo"))
		}},
		{"then bytes that are not events", false, func(c net.Conn) {
			writeChunk(c, "<html><body>502 Bad Gateway</body></html>\n\n")
		}},
		{"then silence past stream_idle_timeout", true, func(c net.Conn) {
			time.Sleep(time.Second)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
				writeStreamHead(c)
				writeChunk(c, sseChunk("Hel"))
				writeChunk(c, vllmEngineError)
				tc.after(c)
				time.Sleep(100 * time.Millisecond)
				c.Close() // a clean FIN: no [DONE], no terminating chunk
			})
			cfg := mockConfig(addr, "", "")
			if tc.idle {
				cfg = strings.Replace(cfg, "timeout: 20s}", "timeout: 20s, stream_idle_timeout: 300ms}", 1)
			}
			g := startGateway(t, cfg)
			resp, body := postChat(t, g, streamBody)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d %q", resp.StatusCode, body)
			}
			if n := errorEvents(body); n != 1 || !strings.Contains(body, "engine failed") {
				t.Errorf("client got %d error events, want the upstream's alone: %q", n, body)
			}
			if strings.Contains(body, "[DONE]") {
				t.Errorf("[DONE] after an error: %q", body)
			}
			if codes := streamErrorCodes(t, g, 1); len(codes) != 1 || codes["upstream_error"] != 1 {
				t.Errorf("tollgate_stream_errors_total by code %v, want upstream_error 1 alone", codes)
			}
			if line := accessLine(t, g, resp.Header.Get("X-Request-Id")); line["error"] != "upstream_error" {
				t.Errorf("access log error %v, want upstream_error", line["error"])
			}
		})
	}
}

// An Anthropic error event mid-stream (overloaded_error) ends the translated stream
// with the gateway's one error event; the connection's cut after it adds none.
func TestStreamAnthropicErrorEventThenCutOneErrorEvent(t *testing.T) {
	addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
		writeStreamHead(c)
		for _, ev := range []string{anthStart, anthTextStart(0), anthText(0, "Hello"), anthOverloaded} {
			writeChunk(c, ev)
		}
		time.Sleep(100 * time.Millisecond)
		c.Close()
	})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  claude: {provider: anthropic, base_url: "http://`+addr+`/v1", model: claude-x, api_key: k, timeout: 20s}
endpoints:
  - {name: chat, type: chat, routes: [{backend: claude}]}
`)
	resp, body := postChat(t, g, streamBody)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d %q", resp.StatusCode, body)
	}
	if n := errorEvents(body); n != 1 || !strings.Contains(body, "overloaded_error") {
		t.Errorf("client got %d error events, want one naming overloaded_error: %q", n, body)
	}
	if codes := streamErrorCodes(t, g, 1); len(codes) != 1 || codes["upstream_stream_cut"] != 1 {
		t.Errorf("tollgate_stream_errors_total by code %v, want upstream_stream_cut 1 alone", codes)
	}
}
