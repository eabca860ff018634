package gateway

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tollgate/tollgate/internal/freeport"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// TestParseErrorAnswerKeepsArrival: a request whose body fasthttp reads ahead of the
// handler (a Content-Length body, up to 8 KiB of it) and cannot read, because it
// stalls (408 at read_timeout) or the client's close cuts it (400), is answered from
// fasthttp's error handler after fasthttp has reset the header the gateway had in
// full. It is answered and logged as the request it was all the same: with the
// client's own X-Request-Id (README: every answer carries the client's own, the ID
// the access log names), the client X-Forwarded-For names behind
// server.trusted_proxies, and a latency from its arrival. Behind nginx with
// proxy_request_buffering off (ALB and Envoy too pass bodies on as they come), and
// from a trusted proxy that a raw client plays itself.
func TestParseErrorAnswerKeepsArrival(t *testing.T) {
	t.Parallel()
	_, addr := startMock(t, mockllm.Options{MaxTokens: 5})
	cfg := strings.Replace(mockConfig(addr, "", ""), `shutdown_grace: 5s}`,
		`shutdown_grace: 5s, read_timeout: 1s, trusted_proxies: ["127.0.0.1"]}`, 1)
	g := startGateway(t, cfg)
	ng := nginxInFront(t, g.Addr(), "", "proxy_request_buffering off;")
	cases := []struct {
		name string
		// via is the address the client connects to, from 127.0.0.9; xff is the
		// X-Forwarded-For it sends itself, from 127.0.0.1, when it plays the
		// trusted proxy.
		via, xff string
		cut      bool
		status   int
	}{
		{"behind nginx: content-length body stalls", ng, "", false, 408},
		{"behind nginx: content-length body cut by the client", ng, "", true, 400},
		{"from a trusted proxy: content-length body stalls", g.Addr(), "127.0.0.9", false, 408},
		{"from a trusted proxy: content-length body cut by the client", g.Addr(), "127.0.0.9", true, 400},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := "edge-stall-" + strconv.Itoa(i+1)
			before := len(accessLines(g))
			local, header := "127.0.0.9", ""
			if c.xff != "" {
				local, header = "127.0.0.1", "X-Forwarded-For: "+c.xff+"\r\n"
			}
			conn, br := dialFrom(t, c.via, local)
			writeTo(t, conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Request-Id: "+id+"\r\n"+header+
				"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"model\":")
			if c.cut {
				time.Sleep(200 * time.Millisecond)
				_ = conn.(*net.TCPConn).CloseWrite()
			}
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				if !c.cut {
					t.Fatalf("no answer: %v", err)
				}
				// nginx answers a client that cut its body with nothing.
			} else {
				_, _ = io.Copy(io.Discard, resp.Body)
				if resp.StatusCode != c.status {
					t.Fatalf("status %d, want %v", resp.StatusCode, c.status)
				}
				if got := resp.Header.Get("X-Request-Id"); got != id {
					t.Errorf("answer's x-request-id %q, want the client's %q (README: every answer carries the client's own)", got, id)
				}
			}
			line := nextAccessLine(t, g, before)
			if line["status"] != float64(c.status) {
				t.Errorf("access log status %v, want %d", line["status"], c.status)
			}
			if line["request_id"] != id {
				t.Errorf("access log request_id %v, want the client's %q", line["request_id"], id)
			}
			if line["client_ip"] != "127.0.0.9" {
				t.Errorf("access log client_ip %v, want 127.0.0.9 (README: behind server.trusted_proxies, the client X-Forwarded-For names), not the proxy's address", line["client_ip"])
			}
			if ms, _ := line["latency_ms"].(float64); !c.cut && ms < 500 {
				t.Errorf("access log latency_ms %v for a request answered at read_timeout (1s)", ms)
			}
		})
	}
}

// TestParseErrorNotTakenForRequestBefore: a request whose header cannot be read (431)
// on a connection that carried one before is answered and logged on its own: a new
// request ID and the connection's peer, not the X-Request-Id and the forwarded client
// of the request before it.
func TestParseErrorNotTakenForRequestBefore(t *testing.T) {
	_, addr := startMock(t, mockllm.Options{MaxTokens: 5})
	cfg := strings.Replace(mockConfig(addr, "", ""), `shutdown_grace: 5s}`,
		`shutdown_grace: 5s, trusted_proxies: ["127.0.0.1"]}`, 1)
	g := startGateway(t, cfg)
	conn, br := dialGateway(t, g)
	writeTo(t, conn, rawRequest(t, g, chatBody, "X-Request-Id: the-one-before", "X-Forwarded-For: 203.0.113.7"))
	readChat(t, br)
	before := len(accessLines(g))
	writeTo(t, conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 9<<10)+"\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 431 {
		t.Fatalf("status %d, want 431", resp.StatusCode)
	}
	if got := resp.Header.Get("X-Request-Id"); got == "" || got == "the-one-before" {
		t.Errorf("answer's x-request-id %q; want a new one", got)
	}
	line := nextAccessLine(t, g, before)
	if line["request_id"] == "the-one-before" || line["client_ip"] != "127.0.0.1" {
		t.Errorf("access log of the unreadable request: request_id %v, client_ip %v; want a new ID and the peer 127.0.0.1", line["request_id"], line["client_ip"])
	}
}

// TestHeaderReceivedHeaderIsCtxs pins what ctxOf relies on in the fasthttp the gateway
// is built with: HeaderReceived gets the header of the RequestCtx that the handler, or
// the error handler when the body's first bytes cannot be read, gets next.
func TestHeaderReceivedHeaderIsCtxs(t *testing.T) {
	t.Parallel()
	var got *fasthttp.RequestCtx
	check := func(ctx *fasthttp.RequestCtx, where string) {
		if got != ctx {
			t.Errorf("%s: ctxOf(header) %p, want the RequestCtx %p", where, got, ctx)
		}
		got = nil
	}
	srv := &fasthttp.Server{
		StreamRequestBody: true,
		ReadTimeout:       300 * time.Millisecond,
		HeaderReceived: func(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
			got = ctxOf(h)
			if &got.Request.Header != h {
				t.Errorf("ctxOf(h) holds no h")
			}
			return fasthttp.RequestConfig{}
		},
		Handler:      func(ctx *fasthttp.RequestCtx) { check(ctx, "handler") },
		ErrorHandler: func(ctx *fasthttp.RequestCtx, _ error) { check(ctx, "error handler") },
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	conn, br := dialFrom(t, ln.Addr().String(), "")
	for _, body := range []string{"", "{}", strings.Repeat("x", 20<<10)} {
		writeTo(t, conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
	}
	// A body that stalls: fasthttp's error handler answers it.
	writeTo(t, conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := http.ReadResponse(br, nil); err != nil {
		t.Fatal(err)
	}
	if got != nil {
		t.Errorf("HeaderReceived's RequestCtx reached neither handler")
	}
}

// nginxInFront runs nginx in front of upstream (host:port) with the keep-alive config
// its docs give; upstreamExtra and location hold extra directives for the upstream
// block and the location. It returns nginx's address.
func nginxInFront(t *testing.T, upstream, upstreamExtra, location string) string {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		bin = "/usr/sbin/nginx"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("nginx (Debian's nginx-light) is not installed: %v", err)
	}
	dir := t.TempDir()
	port, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	var b strings.Builder
	w := func(s ...string) { b.WriteString(strings.Join(s, "")); b.WriteByte('\n') }
	w("daemon off;")
	w("master_process off;")
	w("worker_processes 1;")
	w("pid ", dir, "/nginx.pid;")
	w("error_log ", dir, "/error.log info;")
	w("events { worker_connections 1024; }")
	w("http {")
	w("    access_log ", dir, "/access.log;")
	for _, tp := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		w("    ", tp, "_temp_path ", dir, "/", tp, ";")
	}
	w("    upstream gw {")
	w("        server ", upstream, ";")
	w("        keepalive 32;")
	w(upstreamExtra)
	w("    }")
	w("    server {")
	w("        listen ", addr, ";")
	w("        location / {")
	w("            proxy_pass http://gw;")
	w("            proxy_http_version 1.1;")
	w(`            proxy_set_header Connection "";`)
	w("            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;")
	w(location)
	w("        }")
	w("    }")
	w("}")
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", conf, "-e", dir+"/error.log")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			el, _ := os.ReadFile(dir + "/error.log")
			if len(el) > 3000 {
				el = el[len(el)-3000:]
			}
			t.Logf("nginx error.log:\n%s", el)
		}
	})
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		if i > 100 {
			t.Fatalf("nginx did not start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return addr
}

// dialFrom connects to addr (from local, when given) and returns the connection and a
// reader on it.
func dialFrom(t *testing.T, addr, local string) (net.Conn, *bufio.Reader) {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// accessLines are the access log lines so far.
func accessLines(g *gw) []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(g.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "request" {
			out = append(out, m)
		}
	}
	return out
}

// nextAccessLine waits for the access log line after the first n.
func nextAccessLine(t *testing.T, g *gw, n int) map[string]any {
	t.Helper()
	var line map[string]any
	if !pollFor(10*time.Second, func() bool {
		if l := accessLines(g); len(l) > n {
			line = l[n]
			return true
		}
		return false
	}) {
		t.Fatalf("no access log line:\n%s", g.logs.String())
	}
	return line
}
