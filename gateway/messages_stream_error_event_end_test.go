package gateway

import (
	"strings"
	"testing"
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
			g, resp, body := silentAfter(t, tc.events, "provider: anthropic, model: claude-x, api_key: k", "/v1/messages",
				`{"model":"chat","stream":true,"max_tokens":50,"messages":[{"role":"user","content":"hi"}]}`,
				map[string]string{"anthropic-version": "2023-06-01"})
			if !strings.HasSuffix(body, anthOverloaded) || strings.Count(body, "event: error") != 1 {
				t.Errorf("stream %q: want it to end with the upstream's error event alone", body)
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
