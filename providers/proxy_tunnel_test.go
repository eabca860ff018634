package providers

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// An HTTP proxy's answer to CONNECT opens the tunnel whatever the size of its header
// (Via, policy headers egress proxies add: fasthttpproxy read 1 KiB at most), and
// bytes read along with it are the tunnel's first.
func TestProxyConnectAnswerOpensTunnel(t *testing.T) {
	cases := []struct {
		name, answer string
	}{
		{"header over 1 KiB", "HTTP/1.1 200 Connection established\r\nVia: 1.1 egress\r\nX-Policy: " + strings.Repeat("a", 1100) + "\r\n\r\n"},
		{"target's bytes in the same write", "HTTP/1.1 200 Connection established\r\n\r\nfrom the target"},
		{"HTTP/1.0", "HTTP/1.0 200 OK\r\n\r\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			addr := serveProxy(t, func(conn net.Conn) {
				if req, err := http.ReadRequest(bufio.NewReader(conn)); err != nil || req.Method != http.MethodConnect {
					return
				}
				_, _ = io.WriteString(conn, c.answer)
				if !strings.HasSuffix(c.answer, "\r\n\r\n") {
					return
				}
				_, _ = io.WriteString(conn, "from the target")
			})
			dial, err := proxyDial("http://"+addr, net.Dialer{})
			if err != nil {
				t.Fatal(err)
			}
			conn, err := dial(context.Background(), "10.255.255.1:8000", time.Now().Add(5*time.Second))
			if err != nil {
				t.Fatalf("dial through the proxy: %v", err)
			}
			defer conn.Close()
			got, err := io.ReadAll(conn)
			if string(got) != "from the target" {
				t.Fatalf("tunnel read %q, %v; want the target's bytes", got, err)
			}
		})
	}
}

// A proxy that accepts the connection and never answers fails the dial as a timeout
// at its end (connect_timeout within the attempt's deadline), not when the proxy
// gives up: x/net's SOCKS5 Dial has no deadline of its own. One that never ends its
// CONNECT answer's header is refused.
func TestProxyDialBoundedByEnd(t *testing.T) {
	silent := serveProxy(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	endless := serveProxy(t, func(c net.Conn) {
		_, _ = c.Read(make([]byte, 4096))
		_, _ = io.WriteString(c, "HTTP/1.1 200 Connection established\r\n")
		line := "X-Pad: " + strings.Repeat("a", 1000) + "\r\n"
		for {
			if _, err := io.WriteString(c, line); err != nil {
				return
			}
		}
	})
	cases := []struct {
		name, proxy string
		class       error
		says        string
	}{
		{"silent socks5", "socks5://" + silent, ErrTimeout, "no answer to the SOCKS5 handshake"},
		{"silent socks5 with credentials", "socks5://user:ProxyPw-4f1a@" + silent, ErrTimeout, "no answer to the SOCKS5 handshake"},
		{"silent http", "http://" + silent, ErrTimeout, "no answer to CONNECT"},
		{"endless header", "http://" + endless, ErrConnect, "header over 64 KiB"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dial, err := proxyDial(c.proxy, net.Dialer{})
			if err != nil {
				t.Fatal(err)
			}
			conn, err := dial(context.Background(), "10.255.255.1:8000", time.Now().Add(200*time.Millisecond))
			if err == nil {
				conn.Close()
				t.Fatal("dial through the proxy succeeded")
			}
			if got := classify(err); !errors.Is(got, c.class) || !strings.Contains(err.Error(), c.says) {
				t.Errorf("%v, classified as %v; want %v saying %q", err, got, c.class, c.says)
			}
			if strings.Contains(err.Error(), "ProxyPw") {
				t.Errorf("error carries the proxy password: %v", err)
			}
		})
	}
}

// A target written with an IPv6 zone ([fe80::1%eth0]:8000, RFC 6874) is asked of an HTTP
// proxy without it: the zone names this host's interface, which the proxy has not, and
// its bare % makes the request line one proxies refuse.
func TestProxyConnectTargetWithoutZone(t *testing.T) {
	got := make(chan string, 1)
	addr := serveProxy(t, func(conn net.Conn) {
		line, _ := bufio.NewReader(conn).ReadString('\n')
		got <- line
		_, _ = io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n")
	})
	dial, err := proxyDial("http://"+addr, net.Dialer{})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := dial(context.Background(), "[fe80::1%eth0]:8000", time.Now().Add(5*time.Second))
	if err != nil {
		t.Fatalf("dial through the proxy: %v", err)
	}
	conn.Close()
	if line := <-got; line != "CONNECT [fe80::1]:8000 HTTP/1.1\r\n" {
		t.Fatalf("observed the request line %q; expected CONNECT [fe80::1]:8000 HTTP/1.1, the zone left out", line)
	}
}
