package gateway

import (
	"strings"
	"testing"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// TestMessagesUnreadNormalizedPathShape: a request line whose path is the Messages
// API's once decoded and cleaned (/v1/%6Dessages, /v1//messages, /v1/./messages, a
// fragment after it), which the gateway serves as a Messages call, gets its refusals
// in the Messages API's shape too: a body that stalls or is cut short (fasthttp has
// reset the header by then, the path read from the request line at its arrival) as a
// header fasthttp cannot read. A path that cleans to another one keeps OpenAI's.
func TestMessagesUnreadNormalizedPathShape(t *testing.T) {
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	g := startGateway(t, strings.Replace(mockConfig(up, "", ""), "shutdown_grace: 5s}",
		"shutdown_grace: 5s, read_timeout: 300ms}", 1))
	body := `{"model":"chat","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`
	request := func(path string) string {
		return "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
			itoa(len(body)) + "\r\n\r\n"
	}
	for _, c := range []struct {
		path      string
		anthropic bool
	}{
		{"/v1/%6Dessages", true},
		{"/v1//messages", true},
		{"/v1/./messages", true},
		{"/v1/x/../messages", true},
		{"/v1/messages#part", true},
		{"/v1/messages/%63ount_tokens", true},
		{"http://x/v1//messages?beta=true", true},
		{"/v1/messages%2F..", false},
		{"/v1/%63hat/completions", false},
	} {
		t.Run(c.path, func(t *testing.T) {
			// Whole, the request is served on the route the cleaned path names.
			resp, got := exchange(t, g.Addr(), request(c.path)+body)
			if served := resp.StatusCode == 200 && strings.Contains(got, `"type":"message"`) || strings.Contains(got, `"input_tokens"`); served != c.anthropic {
				t.Fatalf("whole: status %d %.200s; served as a Messages call: %v, want %v", resp.StatusCode, got, served, c.anthropic)
			}
			for _, cut := range []struct {
				name, raw string
				status    int
			}{
				{"body stalls", request(c.path) + body[:5], 408},
				{"bare LF", strings.Replace(request(c.path), "\r\n", "\n", 1) + body, 400},
			} {
				resp, got := exchange(t, g.Addr(), cut.raw)
				if resp.StatusCode != cut.status {
					t.Fatalf("%s: status %d, want %d: %s", cut.name, resp.StatusCode, cut.status, got)
				}
				if anthropicShaped(got) != c.anthropic {
					t.Errorf("%s: in the Messages API's shape: %v, want %v: %s", cut.name, !c.anthropic, c.anthropic, got)
				}
			}
		})
	}
}
