package gateway

import (
	"net"
	"net/http"
	"testing"
)

// TestAttemptSpanStatusOfInvalidAnswer: README (Tracing): each upstream attempt's span
// carries "the upstream's http.response.status_code when it answered". An upstream that
// answers 200 with an HTML page (a proxy's error page), 302 (a login redirect) or a
// body its connection's close cut short did answer: the client gets 502
// upstream_bad_response, and the SRE opening the trace sees what the upstream said, not
// a span that reads as a connection never answered. Both translations (OpenAI's API
// passed through, Anthropic's translated) record it.
func TestAttemptSpanStatusOfInvalidAnswer(t *testing.T) {
	up := serveScripted(t, map[string]string{
		"html": "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 54\r\n\r\n" +
			"<html><body><h1>Service Unavailable</h1></body></html>",
		"redirect": "HTTP/1.1 302 Found\r\nLocation: https://login.example.com/\r\nContent-Length: 0\r\n\r\n",
		"cut":      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"id\":\"chatcmpl-1\",",
	})
	g, exp := startTracedGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+up+`/v1", model: up-model, timeout: 3s}
  an: {provider: anthropic, base_url: "http://`+up+`/v1", model: claude-sonnet-4-5, timeout: 3s}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
  - {name: claude, type: chat, routes: [{backend: an}]}
tracing: {exporter: otlp-grpc, sample_ratio: 1}
logging: {level: info, format: json}
`)
	for _, ep := range []struct{ name, span string }{{"chat", "chat up-model"}, {"claude", "chat claude-sonnet-4-5"}} {
		for _, c := range []struct{ kind, want string }{{"html", "200"}, {"redirect", "302"}, {"cut", "200"}} {
			t.Run(ep.name+"/"+c.kind, func(t *testing.T) {
				id := "status-" + ep.name + "-" + c.kind
				resp, b := postRaw(t, http.DefaultClient, g.url+"/v1/chat/completions",
					`{"model":"`+ep.name+`","messages":[{"role":"user","content":"hi"}]}`,
					map[string]string{"X-Request-Id": id, "X-Test-Answer": c.kind})
				if resp.StatusCode != 502 {
					t.Fatalf("status %d, want 502: %s", resp.StatusCode, b)
				}
				attempts := requestSpans(t, g, exp, id)[ep.span]
				if len(attempts) != 1 {
					t.Fatalf("%d attempt spans, want 1", len(attempts))
				}
				if v, ok := attr(attempts[0].Snapshot(), "http.response.status_code"); !ok || v.Emit() != c.want {
					t.Errorf("attempt span http.response.status_code %q (set %v), want the upstream's %s", v.Emit(), ok, c.want)
				}
			})
		}
	}
}

// serveScripted serves each request the raw answer that its X-Test-Answer header names
// in answers, then closes the connection.
func serveScripted(t *testing.T, answers map[string]string) string {
	t.Helper()
	addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, req *http.Request) {
		answer, ok := answers[req.Header.Get("X-Test-Answer")]
		if !ok {
			answer = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
		}
		_, _ = c.Write([]byte(answer))
		_ = c.Close()
	})
	return addr
}
