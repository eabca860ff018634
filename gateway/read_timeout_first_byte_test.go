package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// serverConfig is mockConfig with settings added to server: (timeouts, tls).
func serverConfig(up, settings string) string {
	return strings.Replace(mockConfig(up, "", ""), "shutdown_grace: 5s}", "shutdown_grace: 5s, "+settings+"}", 1)
}

// tlsSettings is server.tls with pki's server certificate.
func tlsSettings(pki *testPKI) string {
	return `tls: {cert_file: "` + pki.serverCert + `", key_file: "` + pki.serverKey + `"}`
}

// TestReadTimeoutCountsFromFirstByte: README, server.read_timeout is the time "to read
// a request, from its first byte". A client that opens its connection ahead of its
// first request (a preconnect, a warming pool, a load balancer's pre-opened
// connection), over TLS with the handshake made ahead too, is timed from the
// request's first byte, not from the open: fasthttp's own clock starts at the accept.
// read_timeout still ends a request that takes longer than that from its first byte.
func TestReadTimeoutCountsFromFirstByte(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	for _, tc := range []struct {
		name  string
		roots *x509.CertPool
	}{
		{"plain", nil},
		{"TLS, handshake made ahead", pki.pool},
	} {
		t.Run(tc.name, func(t *testing.T) {
			settings := "read_timeout: 1s, idle_timeout: 5s"
			if tc.roots != nil {
				settings += ", " + tlsSettings(pki)
			}
			g := startGateway(t, serverConfig(up, settings))
			raw := rawRequest(t, g, chatBody)

			t.Run("read within read_timeout of its first byte", func(t *testing.T) {
				// On a loaded machine a sleep can overrun by a second: a try whose
				// request took 900ms or more from its first byte to its end says
				// nothing, and is made again.
				for try := 1; ; try++ {
					c := dialRaw(t, g, tc.roots)
					time.Sleep(700 * time.Millisecond) // connected, the request not begun
					first := time.Now()
					if _, err := io.WriteString(c.conn, raw[:len(raw)-10]); err != nil {
						t.Fatal(err)
					}
					time.Sleep(500 * time.Millisecond)
					if _, err := io.WriteString(c.conn, raw[len(raw)-10:]); err != nil {
						t.Fatalf("writing the end of the request %v after its first byte: %v", time.Since(first), err)
					}
					took := time.Since(first)
					code, _ := c.status(t)
					if took >= 900*time.Millisecond && try < 5 {
						continue
					}
					if code != 200 {
						t.Errorf("a request read whole %v after its first byte (read_timeout 1s), on a connection opened 700ms before it: %d, want 200", took, code)
					}
					return
				}
			})
			t.Run("stalled past read_timeout from its first byte", func(t *testing.T) {
				c := dialRaw(t, g, tc.roots)
				time.Sleep(700 * time.Millisecond)
				first := time.Now()
				if _, err := io.WriteString(c.conn, raw[:len(raw)-10]); err != nil {
					t.Fatal(err)
				}
				code, _ := c.status(t)
				if took := time.Since(first); code != 408 || took < 900*time.Millisecond || took > 3*time.Second {
					t.Errorf("a request stalled after its first byte: %d after %v, want 408 at read_timeout's 1s", code, took)
				}
			})
		})
	}
}

// TestIdleNewConnectionGetsNoAnswer: a connection on which the client has sent no
// byte of a request has made none, so nothing is answered on it and nothing is
// counted: it is closed in silence once idle past idle_timeout, as a kept-alive one
// is (and as nginx and Go's net/http close any idle connection). An answer written
// unasked would be read as the answer to a request the client sends at that moment;
// counted, every preconnect a load balancer leaves idle would show as a 408.
func TestIdleNewConnectionGetsNoAnswer(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	g := startGateway(t, serverConfig(up, "read_timeout: 300ms, idle_timeout: 800ms"))
	gt := startGateway(t, serverConfig(up, "read_timeout: 300ms, idle_timeout: 800ms, "+tlsSettings(pki)))
	dial := func(t *testing.T, addr string) net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	tests := []struct {
		name string
		g    *gw
		// open returns the connection, and whether read_timeout rather than
		// idle_timeout bounds it (bytes of a handshake came).
		open func(t *testing.T) (net.Conn, bool)
	}{
		{"API listener", g, func(t *testing.T) (net.Conn, bool) { return dial(t, g.Addr()), false }},
		{"admin listener", g, func(t *testing.T) (net.Conn, bool) { return dial(t, g.AdminAddr()), false }},
		{"TLS, no handshake", gt, func(t *testing.T) (net.Conn, bool) { return dial(t, gt.Addr()), false }},
		{"TLS, after the handshake", gt, func(t *testing.T) (net.Conn, bool) {
			c, err := tls.Dial("tcp", gt.Addr(), &tls.Config{RootCAs: pki.pool, MinVersion: tls.VersionTLS12})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			return c, false
		}},
		{"TLS, handshake cut short", gt, func(t *testing.T) (net.Conn, bool) {
			c := dial(t, gt.Addr())
			// A handshake record's header, and nothing of the record.
			if _, err := c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00}); err != nil {
				t.Fatal(err)
			}
			return c, true
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := requestsTotal(t, tc.g)
			start := time.Now()
			c, begun := tc.open(t)
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			b, err := io.ReadAll(c)
			took := time.Since(start)
			if strings.Contains(string(b), "HTTP/") {
				line, _, _ := strings.Cut(string(b), "\r\n")
				t.Errorf("a connection on which no request was sent got an answer %q; want it closed without one", line)
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("connection still open after %v", took)
			}
			if min := 700 * time.Millisecond; !begun && took < min {
				t.Errorf("closed after %v, want idle_timeout's 800ms", took)
			}
			if after := requestsTotal(t, tc.g); after != before {
				t.Errorf("tollgate_requests_total went from %v to %v for a connection that sent no request", before, after)
			}
		})
	}
	if logs := g.logs.String() + gt.logs.String(); strings.Contains(logs, "request_timeout") {
		t.Errorf("an access log line for a connection that sent no request:\n%s", logs)
	}
}

// TestResetNewConnectionUncounted: a client that connects and resets the connection
// without sending a byte of a request (a load balancer's TCP health check, a port
// scanner) has made no request, any more than one that idles: nothing is counted in
// tollgate_requests_total nor logged, plain or over TLS after the handshake.
func TestResetNewConnectionUncounted(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	g := startGateway(t, serverConfig(up, "read_timeout: 2s, idle_timeout: 5s"))
	gt := startGateway(t, serverConfig(up, "read_timeout: 2s, idle_timeout: 5s, "+tlsSettings(pki)))
	tests := []struct {
		name string
		g    *gw
		tls  bool
	}{
		{"plain", g, false},
		{"TLS, after the handshake", gt, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := requestsTotal(t, tc.g)
			logged := strings.Count(tc.g.logs.String(), `"msg":"request"`)
			c, err := net.Dial("tcp", tc.g.Addr())
			if err != nil {
				t.Fatal(err)
			}
			if tc.tls {
				tconn := tls.Client(c, &tls.Config{RootCAs: pki.pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
				_ = tconn.SetDeadline(time.Now().Add(5 * time.Second))
				if err := tconn.Handshake(); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(100 * time.Millisecond) // accepted, waiting for its first byte
			_ = c.(*net.TCPConn).SetLinger(0)
			_ = c.Close() // a reset
			// Nothing to wait for but time: a count, if any, comes within it.
			after := before
			for end := time.Now().Add(time.Second); after == before && time.Now().Before(end); {
				time.Sleep(20 * time.Millisecond)
				after = requestsTotal(t, tc.g)
			}
			if after != before {
				t.Errorf("tollgate_requests_total went from %v to %v for a connection reset before a byte of a request", before, after)
			}
			if n := strings.Count(tc.g.logs.String(), `"msg":"request"`); n != logged {
				t.Errorf("an access log line for a connection reset before a byte of a request:\n%s", tc.g.logs.String())
			}
		})
	}
}
