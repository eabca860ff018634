package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// startHungCallByID serves a gateway (server and logging settings in serverYAML) in
// front of an upstream that never answers (a busy or hung vLLM), sends it a call by
// response ID on a raw connection, and returns the gateway and the connection once
// the call reached the upstream.
func startHungCallByID(t *testing.T, serverYAML, reqID string) (*gw, net.Conn) {
	t.Helper()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	addr, count := scriptedUpstream(t, func(_ int, c net.Conn, req *http.Request) {
		select {
		case <-release:
		case <-time.After(30 * time.Second):
		}
	})
	g := startGateway(t, serverYAML+`
backends:
  up: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model, timeout: 1m, first_byte_timeout: 1m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`)
	id := "resp_0123" + responseTag("up", "http://"+addr+"/v1")
	c, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, "GET /v1/responses/"+id+" HTTP/1.1\r\nHost: x\r\nX-Request-Id: "+reqID+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if !pollFor(5*time.Second, func() bool { return count.Load() == 1 }) {
		t.Fatal("the call by ID never reached the upstream")
	}
	return g, c
}

// A call by response ID still waiting on a slow upstream when shutdown_grace runs out
// is answered 503 shutting_down (which the SDKs retry on another replica), as a call
// is; a client that hangs up on one is client_gone (499).
func TestResponsesShutdownCutsCallByID(t *testing.T) {
	t.Parallel()
	g, c := startHungCallByID(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 300ms}
logging: {level: error, access_log: false}`, "byid-cut")
	stopped := time.Now()
	g.cancel()
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		serving := "still serving"
		select {
		case <-g.done:
			g.done <- nil
			serving = "Serve had returned"
		default:
		}
		t.Fatalf("observed no answer %v after the stop with shutdown_grace 300ms (%s): %v; expected 503 shutting_down",
			time.Since(stopped).Round(time.Millisecond), serving, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), "shutting_down") {
		t.Errorf("observed %d %s; expected 503 shutting_down", resp.StatusCode, body)
	}
}

func TestResponsesCallByIDClientGone(t *testing.T) {
	t.Parallel()
	g, c := startHungCallByID(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
logging: {level: info, format: json}`, "byid-gone")
	c.Close()
	line := accessLine(t, g, "byid-gone")
	if line["status"] != float64(499) || line["error"] != "client_gone" {
		t.Fatalf("observed access line %v; expected status 499, error client_gone", line)
	}
}
