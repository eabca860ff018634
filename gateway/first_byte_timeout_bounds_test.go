package gateway

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// deafUpstream accepts connections and never reads from them (nor answers):
// an upstream hung in its accept loop, or a half-dead process. Its sockets' receive
// buffers are small, so a request body of a few MiB cannot vanish into the kernel.
func deafUpstream(t *testing.T) string {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		if e := c.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) }); e != nil {
			return e
		}
		return err
	}}
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	return ln.Addr().String()
}

// first_byte_timeout bounds the wait "until the response headers" (README, replica
// pools). An upstream that accepts the connection and never reads the request gives
// no headers either; with a body larger than the socket buffers the gateway's write of
// the request blocks, and that write must not escape the bound: the client should get
// 504 upstream_timeout after about first_byte_timeout, not after the whole backend
// timeout.
func TestFirstByteTimeoutBoundsUnreadRequestWrite(t *testing.T) {
	t.Parallel()
	addr := deafUpstream(t)
	cfg := strings.Replace(mockConfig(addr, "", ""), "timeout: 20s}", "timeout: 8s, first_byte_timeout: 500ms}", 1)
	cfg = strings.Replace(cfg, "max_body_bytes: 64KiB,", "max_body_bytes: 8MiB,", 1)
	g := startGateway(t, cfg)
	body := `{"model":"chat","messages":[{"role":"user","content":"` + strings.Repeat("a", 6<<20) + `"}]}`
	c := &http.Client{Timeout: 30 * time.Second}
	start := time.Now()
	resp, err := c.Post(g.url+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	if took > 4*time.Second || resp.StatusCode != 504 {
		t.Errorf("upstream that never reads, first_byte_timeout 500ms, timeout 8s: client got %d after %v (%s); want 504 upstream_timeout within a few seconds",
			resp.StatusCode, took.Round(100*time.Millisecond), b)
	}
}

// first_byte_timeout is "until the response headers": an upstream that sends its
// status line and then stalls inside the header (a proxy that flushed the line, a
// process that hangs half-way) has not given its headers. With no stream_idle_timeout,
// the status line's bytes must not turn the first-byte bound into the whole timeout.
func TestFirstByteTimeoutBoundsStalledHeader(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	addr, _ := scriptedUpstream(t, func(_ int, c net.Conn, _ *http.Request) {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: appl")
		select {
		case <-release:
		case <-time.After(20 * time.Second):
		}
		c.Close()
	})
	cfg := strings.Replace(mockConfig(addr, "", ""), "timeout: 20s}", "timeout: 8s, first_byte_timeout: 500ms}", 1)
	g := startGateway(t, cfg)
	start := time.Now()
	resp, b := postChat(t, g, chatBody)
	took := time.Since(start)
	if took > 4*time.Second || resp.StatusCode != 504 {
		t.Errorf("upstream stalled inside its response header, first_byte_timeout 500ms, timeout 8s: client got %d after %v (%s); want 504 upstream_timeout within a few seconds",
			resp.StatusCode, took.Round(100*time.Millisecond), b)
	}
}
