package gateway

import (
	"bufio"
	"context"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// connectProxy is an HTTP proxy that serves CONNECT only, as egress proxies in front
// of public APIs do, and counts the tunnels it opened and where to.
type connectProxy struct {
	addr    string
	auth    string // the Proxy-Authorization it requires, "" for none
	tunnels atomic.Int64
	mu      sync.Mutex
	targets []string
}

func startConnectProxy(t *testing.T, user, password string) *connectProxy {
	t.Helper()
	p := &connectProxy{}
	if user != "" {
		p.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
	}
	p.addr = serveTCP(t, p.serve)
	return p
}

// serveTCP accepts loopback connections and hands each to serve on a goroutine of its
// own until the test ends; it returns the address.
func serveTCP(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// splice copies between the client (read through r) and up until both are done.
func splice(c net.Conn, r io.Reader, up net.Conn) {
	done := make(chan struct{})
	go func() {
		io.Copy(up, r)
		up.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	io.Copy(c, up)
	<-done
}

func (p *connectProxy) serve(c net.Conn) {
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	if req.Method != http.MethodConnect {
		io.WriteString(c, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
		return
	}
	if p.auth != "" && req.Header.Get("Proxy-Authorization") != p.auth {
		io.WriteString(c, "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"egress\"\r\nContent-Length: 0\r\n\r\n")
		return
	}
	up, err := net.Dial("tcp", req.Host)
	if err != nil {
		io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	defer up.Close()
	p.tunnels.Add(1)
	p.mu.Lock()
	p.targets = append(p.targets, req.Host)
	p.mu.Unlock()
	io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	splice(c, br, up)
}

// TestUpstreamProxy: a backend with proxy reaches its targets through the egress
// proxy's CONNECT tunnels, plain and TLS targets alike, streams and health checks
// included, with the credentials in the proxy URL; a proxy that refuses makes the
// target unreachable, and its password never reaches an answer or the logs.
func TestUpstreamProxy(t *testing.T) {
	pki := newTestPKI(t)
	tlsUp := startTLSMock(t, pki, false)
	_, plainUp := startMock(t, mockllm.Options{MaxTokens: 4})
	open, checks := startConnectProxy(t, "", ""), startConnectProxy(t, "", "")
	guarded := startConnectProxy(t, "egress", "s3cr3t-pa55")
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  plain: {provider: openai, base_url: "http://`+plainUp+`/v1", model: up-model, proxy: "http://`+open.addr+`"}
  checked: {provider: openai, base_url: "http://`+plainUp+`/v1", model: up-model, proxy: "http://`+checks.addr+`",
            health: {interval: 100ms, timeout: 1s}}
  secure: {provider: openai, base_url: "https://`+tlsUp+`/v1", model: up-model, proxy: "http://egress:s3cr3t-pa55@`+guarded.addr+`",
           tls: {ca_file: "`+pki.caFile+`"}}
  refused: {provider: openai, base_url: "http://`+plainUp+`/v1", model: up-model, proxy: "http://egress:wrong-pa55@`+guarded.addr+`"}
endpoints:
  - {name: plain, type: chat, routes: [{backend: plain}]}
  - {name: secure, type: chat, routes: [{backend: secure}]}
  - {name: refused, type: chat, routes: [{backend: refused}]}
  - {name: checked, type: chat, routes: [{backend: checked}]}
logging: {level: debug}
`)
	c := g.client()
	ctx := context.Background()
	for _, name := range []string{"plain", "secure"} {
		res, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: name, Messages: userMsg("hi")})
		if err != nil || res.Usage.CompletionTokens == 0 {
			t.Fatalf("%s through the proxy: %v", name, err)
		}
		stream := c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: name, Messages: userMsg("hi")})
		chunks := 0
		for stream.Next() {
			chunks++
		}
		if err := stream.Err(); err != nil || chunks < 2 {
			t.Fatalf("%s stream through the proxy: %d chunks, %v", name, chunks, err)
		}
	}
	if open.tunnels.Load() == 0 || guarded.tunnels.Load() == 0 {
		t.Fatalf("tunnels: open %d, guarded %d: the backends went around their proxies", open.tunnels.Load(), guarded.tunnels.Load())
	}
	// Health checks go through the backend's proxy too: checked gets no request but
	// its checks.
	waitFor(t, func() bool { return checks.tunnels.Load() > 0 })
	_, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "refused", Messages: userMsg("hi")})
	if e := apiErr(t, err); e.StatusCode != 502 || e.Code != "upstream_unreachable" || strings.Contains(e.Message, "pa55") {
		t.Fatalf("refused by the proxy: %d %q %q", e.StatusCode, e.Code, e.Message)
	}
	if logs := g.logs.String(); strings.Contains(logs, "pa55") {
		t.Fatalf("a proxy password reached the logs:\n%s", logs)
	}
}

// TestUpstreamProxyConfigErrors: a proxy URL that cannot work is refused when the
// config loads, without quoting it (it may hold a password).
func TestUpstreamProxyConfigErrors(t *testing.T) {
	for _, c := range []struct{ backend, want string }{
		{`{provider: openai, base_url: "http://127.0.0.1:1/v1", model: m, proxy: "https://u:pa55@proxy:3128"}`, "backends.up.proxy: must start with http://, socks5:// or socks5h://"},
		{`{provider: openai, base_url: "http://127.0.0.1:1/v1", model: m, proxy: "http://u:pa55@proxy"}`, "backends.up.proxy: must name a host and a port"},
		{`{provider: openai, base_url: "http://127.0.0.1:1/v1", model: m, proxy: "http://u:pa%zz55@proxy:3128"}`, "backends.up.proxy: is not a URL"},
		{`{provider: openai, base_url: "http://127.0.0.1:1/v1", model: m, proxy: "http://proxy:3128/path"}`, "backends.up.proxy: must have no path or query"},
		{`{provider: mock, model: m, proxy: "http://proxy:3128"}`, "backends.up.proxy: does not apply to provider mock"},
	} {
		_, err := ParseConfig("proxy.yaml", []byte("backends:\n  up: "+c.backend+"\nendpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n"), env(nil))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("err = %v, want %q", err, c.want)
		} else if strings.Contains(err.Error(), "pa55") || strings.Contains(err.Error(), "pa%zz55") {
			t.Errorf("the error quotes the proxy's password: %v", err)
		}
	}
}

// startSocks5 is a SOCKS5 proxy without authentication that serves CONNECT, and counts
// its tunnels.
func startSocks5(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	addr := serveTCP(t, func(c net.Conn) {
		b := make([]byte, 262)
		// Greeting: version, methods; choose "no authentication".
		if _, err := io.ReadFull(c, b[:2]); err != nil || b[0] != 5 {
			return
		}
		if _, err := io.ReadFull(c, b[:b[1]]); err != nil {
			return
		}
		c.Write([]byte{5, 0})
		// Request: version, CONNECT, reserved, address type, address, port.
		if _, err := io.ReadFull(c, b[:4]); err != nil || b[1] != 1 {
			return
		}
		var host string
		switch b[3] {
		case 1:
			io.ReadFull(c, b[:4])
			host = net.IP(b[:4]).String()
		case 3:
			io.ReadFull(c, b[:1])
			l := int(b[0])
			io.ReadFull(c, b[:l])
			host = string(b[:l])
		default:
			return
		}
		io.ReadFull(c, b[:2])
		up, err := net.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(int(b[0])<<8|int(b[1]))))
		if err != nil {
			c.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0})
			return
		}
		defer up.Close()
		n.Add(1)
		c.Write([]byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0})
		splice(c, c, up)
	})
	return addr, &n
}

// TestUpstreamSocks5Proxy: a socks5:// proxy carries the backend's connections.
func TestUpstreamSocks5Proxy(t *testing.T) {
	_, up := startMock(t, mockllm.Options{MaxTokens: 4})
	socks, tunnels := startSocks5(t)
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+up+`/v1", model: up-model, proxy: "socks5://`+socks+`"}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`)
	c := g.client()
	res, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg("hi")})
	if err != nil || res.Usage.CompletionTokens == 0 {
		t.Fatalf("through the SOCKS5 proxy: %v", err)
	}
	if tunnels.Load() == 0 {
		t.Fatal("the backend went around its SOCKS5 proxy")
	}
}

// listen6 listens on IPv6 loopback. A host without it skips the test, but CI must
// have it: there the test fails rather than hide the missing dependency.
func listen6(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Fatalf("no IPv6 loopback (::1), which these tests need: %v", err)
	}
	return ln
}

// An egress proxy at an IPv6 address (proxy: "http://[fd00::3128]:3128", or a name
// with only an AAAA record) carries the backend's connections: the dial to the proxy
// is dual-stack.
func TestUpstreamProxyOverIPv6(t *testing.T) {
	ln := listen6(t)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	p := &connectProxy{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); defer c.Close(); p.serve(c) }()
		}
	}()
	_, up := startMock(t, mockllm.Options{MaxTokens: 4})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "http://`+up+`/v1", model: up-model, proxy: "http://`+ln.Addr().String()+`"}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`)
	resp, body := postChat(t, g, chatBody)
	if resp.StatusCode != 200 || p.tunnels.Load() != 1 {
		t.Fatalf("through the proxy at %s: %d %s, %d tunnels", ln.Addr(), resp.StatusCode, body, p.tunnels.Load())
	}
}
