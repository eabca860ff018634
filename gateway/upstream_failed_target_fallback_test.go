package gateway

import (
	"encoding/json"
	"net"
	"strings"
	"testing"
)

// The "upstream failed" warning names the target its last attempt went to (README,
// Access log: "the `target` its last attempt went to (as
// tollgate_upstream_attempts_total names it)"). Here the only attempt that reached an
// upstream is the route's, on a target that refuses connections; the fallback after it
// refuses the call locally (Anthropic takes no n: 2) and makes no attempt, so the
// route's backend and error stand, as the warning's backend and error say. Its target
// must stand too.
func TestUpstreamFailedWarningKeepsTargetPastLocalFallback(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  a: {provider: openai, base_url: "http://`+dead+`/v1", model: m}
  claude: {provider: anthropic, base_url: "http://`+dead+`", model: claude-x, api_key: sk-ant-test-1234}
endpoints:
  - {name: chat, type: chat, routes: [{backend: a}], fallbacks: [claude]}
`)
	status, body := postChatBody(t, g.url, `{"model":"chat","n":2,"messages":[{"role":"user","content":"hi"}]}`)
	if status < 500 {
		t.Fatalf("status %d %s, want the route's 5xx", status, body)
	}
	var warned bool
	for _, l := range jsonLogLines(t, g.logs.String()) {
		if l["msg"] != "upstream failed" {
			continue
		}
		warned = true
		line, _ := json.Marshal(l)
		if l["backend"] != "a" {
			t.Fatalf("warning %s: backend is not the route's", line)
		}
		if target, _ := l["target"].(string); !strings.Contains(target, dead) {
			t.Errorf("observed %s; expected target naming %s, where the last attempt (the one counted in tollgate_upstream_attempts_total, backend a) went", line, dead)
		}
	}
	if !warned {
		t.Fatalf("no upstream failed warning:\n%s", g.logs.String())
	}
}
