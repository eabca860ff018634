package gateway

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// README (Signals): a request that has had nothing of its answer when shutdown_grace
// runs out is answered 503 shutting_down with Connection: close, logged and counted,
// and the process exits within the grace plus what the cut takes. A client still
// uploading its body then (a large prompt or audio file over a slow link) is such a
// request: its read ends at the cut rather than holding the shutdown for the cut's
// whole bound, and the client, still sending, reads its 503 before the connection
// closes.
func TestShutdownGraceEndAnswersBodyStillArriving(t *testing.T) {
	cases := []struct {
		name, header, first string
	}{
		// fasthttp reads up to 8 KiB of a body before the handler runs: the part
		// sent is past that, so the handler is reading the rest at the cut.
		{"content_length", "Content-Length: 100000", `{"model":"chat","messages":[{"role":"user","content":"` + strings.Repeat("a", 20000)},
		{"chunked", "Transfer-Encoding: chunked", "4e30\r\n" + `{"model":"chat","messages":[{"role":"user","content":"` + strings.Repeat("a", 20000-54) + "\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := serveWithOptions(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 300ms, read_timeout: 1m}
auth: {mode: none}
backends: {demo: {provider: mock, model: mock-1}}
endpoints: [{name: chat, type: chat, routes: [{backend: demo}]}]
logging: {level: info, access_log: true}
`, Options{})
			c := dialRaw(t, g, nil)
			head := "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Request-Id: " + tc.name + "\r\n" + tc.header + "\r\n\r\n"
			if _, err := io.WriteString(c.conn, head+tc.first); err != nil {
				t.Fatal(err)
			}
			if !pollFor(5*time.Second, func() bool { return g.handling.Load() == 1 }) {
				t.Fatal("the request never reached the handler")
			}
			time.Sleep(100 * time.Millisecond) // the handler waiting for the rest of the body

			stopped := time.Now()
			g.stopWithin(t, 10*time.Second)
			// shutdown_grace (300ms), then the cut; not the cut's 2 s bound on top.
			if took := time.Since(stopped); took > 1500*time.Millisecond {
				t.Errorf("Serve returned %v after the stop with shutdown_grace 300ms: the body's read held it", took)
			}
			// The client still sends, as an uploading client does, then reads.
			_, _ = io.WriteString(c.conn, strings.Repeat("a", 1000))
			_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(c.br, nil)
			if err != nil {
				t.Fatalf("no answer to a request whose body was arriving at the cut: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 503 || !strings.Contains(string(body), `"code":"shutting_down"`) || !resp.Close {
				t.Errorf("answered %d %s (connection close %v); want 503 shutting_down with Connection: close", resp.StatusCode, body, resp.Close)
			}
			line := accessLine(t, g, tc.name)
			if line["status"] != 503.0 || line["error"] != "shutting_down" {
				t.Errorf("access log %v; want status 503, error shutting_down", line)
			}
		})
	}
}
