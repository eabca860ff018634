package gateway

import (
	"strings"
	"testing"
)

// An operation the backend's API lacks (count_tokens on an Azure deployment, a
// tokenizer on Anthropic's API) is the gateway's own 400 unsupported_operation, asked
// of no upstream: its access log line says so, and no `upstream failed` warning
// (README: for a request that got no usable answer from its upstream, the 502 and
// 504) names a failure that did not happen.
func TestUnsupportedOperationLogsNoUpstreamFailure(t *testing.T) {
	t.Parallel()
	bridged, _, _ := startMessagesBridge(t)
	e := startMessages(t, "")
	for _, tc := range []struct {
		name       string
		g          *gw
		path, body string
	}{
		{"count_tokens on azure", bridged, "/v1/messages/count_tokens", `{"model":"az","messages":[{"role":"user","content":"hi"}]}`},
		{"tokenize on anthropic", e.g, "/tokenize", `{"model":"claude","prompt":"hi"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := msgPostTo(t, tc.g, tc.path, tc.body)
			if resp.StatusCode != 400 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			id := resp.Header.Get("X-Request-Id")
			if line := accessLine(t, tc.g, id); line["error"] != "unsupported_operation" || line["attempts"] != 0.0 {
				t.Errorf("access log error %v attempts %v, want unsupported_operation and 0", line["error"], line["attempts"])
			}
			for _, l := range strings.Split(tc.g.logs.String(), "\n") {
				if strings.Contains(l, id) && strings.Contains(l, `"upstream failed"`) {
					t.Errorf("warning for an operation no upstream was asked: %s", l)
				}
			}
		})
	}
}
