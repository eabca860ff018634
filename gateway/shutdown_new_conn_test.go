package gateway

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A shutdown with nothing in flight ends at once though clients have opened
// connections they have sent nothing on (a client pool warming up, a load balancer's
// TCP check), on either listener: they carry no request, and fasthttp would wait up
// to 5 s for each, as for one.
func TestShutdownNotHeldBySilentNewConnection(t *testing.T) {
	t.Parallel()
	g := startGateway(t, `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 30s}
backends:
  demo: {provider: mock, model: mock-1}
endpoints:
  - {name: chat, type: chat, routes: [{backend: demo}]}
`)
	var conns []net.Conn
	for _, addr := range []string{g.Addr(), g.AdminAddr()} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	time.Sleep(200 * time.Millisecond)
	t0 := time.Now()
	g.cancel()
	select {
	case err := <-g.done:
		g.done <- err
	case <-time.After(2 * time.Second):
		// Let the connections go, so that Serve returns and the test ends.
		for _, c := range conns {
			c.Close()
		}
		g.done <- <-g.done
		t.Errorf("shutdown with silent new connections: Serve still draining 2s after it began (returned %v after it, "+
			"once the clients closed); want it to return at once", time.Since(t0).Round(100*time.Millisecond))
	}
}

// latencyConn is a client's side of a connection whose writes reach the server oneWay
// after they are made (a client some milliseconds away), hook called before each
// with the write's number (1-based).
type latencyConn struct {
	net.Conn
	oneWay time.Duration
	n      int
	hook   func(n int)
}

func (c *latencyConn) Write(b []byte) (int, error) {
	c.n++
	if c.hook != nil {
		c.hook(c.n)
	}
	time.Sleep(c.oneWay)
	return c.Conn.Write(b)
}

// An HTTPS client (TLS 1.2) whose handshake is under way when the shutdown begins has
// sent bytes, and sends its request one round trip after the server's Finished: the
// request is served as one that comes during the drain on a connection open before it
// is, its answer with Connection: close and the connection closed after, not left with
// its connection closed unanswered.
func TestShutdownAnswersTLS12ClientMidHandshake(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	g := startGateway(t, `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", shutdown_grace: 5s,
  tls: {cert_file: "`+pki.serverCert+`", key_file: "`+pki.serverKey+`"}}
backends:
  demo: {provider: mock, model: mock-1}
endpoints:
  - {name: chat, type: chat, routes: [{backend: demo}]}
logging: {level: info, access_log: false}
`)
	raw, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	lc := &latencyConn{Conn: raw, oneWay: 30 * time.Millisecond, hook: func(n int) {
		if n != 2 {
			return
		}
		// Write 2 is the client's key exchange and Finished: the gateway has read
		// the ClientHello and answered it.
		g.cancel()
		waitFor(t, func() bool { return strings.Contains(g.logs.String(), "shutting down") })
	}}
	tc := tls.Client(lc, &tls.Config{RootCAs: pki.pool, ServerName: "127.0.0.1", MaxVersion: tls.VersionTLS12})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	body := `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
	if _, err := tc.Write([]byte("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body)); err != nil {
		t.Fatalf("write: %v", err)
	}
	_ = tc.SetReadDeadline(time.Now().Add(3 * time.Second))
	br := bufio.NewReader(tc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("request sent right after a TLS 1.2 handshake under way when the shutdown began: %v; want it served", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !resp.Close {
		t.Errorf("request sent right after a TLS 1.2 handshake under way when the shutdown began: %s (Connection: close %v), "+
			"want it served, 200 with Connection: close", resp.Status, resp.Close)
	}
	if n, err := br.ReadByte(); err == nil {
		t.Errorf("after the answer the connection sent %q; want it closed", n)
	}
}
