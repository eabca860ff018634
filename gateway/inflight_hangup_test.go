package gateway

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// A request whose client hangs up while the upstream works on it is aborted upstream:
// the gateway closes the upstream connection (which is how vLLM learns to stop
// generating) within a fraction of a second, frees the slot, sends no retry, and ends
// the request as client_gone (499) without counting it against the target. The
// upstream did work of unknown size: the token estimate stays charged. A stream
// whose upstream holds its answer's header (Ollama loading a model, a proxy that
// buffers headers until the first token) is aborted the same way while the header
// is awaited.
func TestInFlightRequestIsAbortedWhenItsClientHangsUp(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		hangUp func(c net.Conn) error
	}{
		{"close", net.Conn.Close},
		{"half-close", func(c net.Conn) error { return c.(*net.TCPConn).CloseWrite() }},
		{"reset", func(c net.Conn) error { _ = c.(*net.TCPConn).SetLinger(0); return c.Close() }},
	}
	for _, stream := range []bool{false, true} {
		for _, tc := range cases {
			t.Run(map[bool]string{false: "buffered", true: "stream"}[stream]+"/"+tc.name, func(t *testing.T) {
				testInFlightHangUp(t, stream, tc.hangUp)
			})
		}
	}
}

// testInFlightHangUp is one case of TestInFlightRequestIsAbortedWhenItsClientHangsUp.
func testInFlightHangUp(t *testing.T, stream bool, hangUp func(c net.Conn) error) {
	arrived, abandoned := make(chan string, 4), make(chan string, 4)
	addr, count := scriptedUpstream(t, func(_ int, c net.Conn, req *http.Request) {
		client := req.Header.Get("X-Test-Client")
		arrived <- client
		if client == "gone" {
			// Generating: the only thing it hears is its connection closing.
			_, _ = c.Read(make([]byte, 1))
			abandoned <- client
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(fiveTokenAnswer))+"\r\n\r\n"+fiveTokenAnswer)
	})
	g, exp := startTracedGateway(t, hangupConfig(addr, "",
		"    limits: [{per: endpoint, tokens: 1000, window: hour}]\n"+traced))

	gone := dialRaw(t, g, nil)
	body := `{"model":"chat","max_tokens":800,"messages":[{"role":"user","content":"hi"}]}`
	if stream {
		body = `{"model":"chat","stream":true,"max_tokens":800,"messages":[{"role":"user","content":"hi"}]}`
	}
	gone.send(t, g, "gone", body)
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached the upstream")
	}
	time.Sleep(50 * time.Millisecond) // well into its generation
	hungUp := time.Now()
	if err := hangUp(gone.conn); err != nil {
		t.Fatal(err)
	}
	select {
	case <-abandoned:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream connection stayed open under the request whose client hung up")
	}
	if took := time.Since(hungUp); took > 2*time.Second {
		t.Errorf("the upstream request was aborted %v after its client hung up", took)
	}
	line := accessLine(t, g, "gone")
	if line["status"] != 499.0 || line["error"] != "client_gone" || line["attempts"] != 1.0 {
		t.Errorf("access log %v, want status 499, error client_gone, 1 attempt", line)
	}
	waitInFlight(t, g, 0, "after the hang-up")
	checkClientGoneSpans(t, g, exp, "gone", true)

	// The one slot is free, the target still in service, and the 800 tokens
	// estimated stay charged.
	after := dialRaw(t, g, nil)
	after.send(t, g, "after", chatBody)
	code, h := after.status(t)
	if code != 200 {
		t.Fatalf("the next request: status %d", code)
	}
	rem, err := strconv.Atoi(h.Get("X-Ratelimit-Remaining-Tokens"))
	if err != nil || rem > 300 {
		t.Errorf("x-ratelimit-remaining-tokens %q after the hang-up, want under 200: the estimate of the aborted request was given back", h.Get("X-Ratelimit-Remaining-Tokens"))
	}
	if n := count.Load(); n != 2 {
		t.Errorf("upstream received %d requests, want 2: the aborted one was retried", n)
	}
	if n := requestsWith(t, g, map[string]string{"endpoint": "chat", "code": "499"}); n != 1 {
		t.Errorf("tollgate_requests_total{code=499} = %v, want 1", n)
	}
}
