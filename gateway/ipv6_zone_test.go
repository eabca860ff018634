package gateway

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/testcert"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// loopback6Zone is the name of the interface that holds ::1 (lo on Linux), the zone
// a link-local upstream's URL names as [fe80::1%25eth0]; Linux takes a zone on ::1
// too, so the loopback stands in for a link-local upstream.
func loopback6Zone(t *testing.T) string {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagLoopback == 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(net.IPv6loopback) {
				return ifc.Name
			}
		}
	}
	t.Fatal("no interface holds ::1, which these tests need")
	return ""
}

// listenLoopback6 listens on ::1, failing the test where there is no IPv6 loopback.
func listenLoopback6(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Fatalf("no IPv6 loopback (::1), which these tests need: %v", err)
	}
	return ln
}

// zonedURL is the base URL of the upstream at addr ([::1]:port) with its zone written
// as RFC 6874 has it in a URL: http://[::1%25lo]:port/v1.
func zonedURL(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return "http://[::1%25" + loopback6Zone(t) + "]:" + port + "/v1"
}

// A backend at a link-local vLLM written as RFC 6874 has it (base_url
// "http://[fe80::1%25eth0]:8000/v1") loads and is dialled, but every request gets 400:
// the gateway sends the zone in Host ("[::1%lo]:port"), which fasthttp upstreams
// (mockllm too) refuse. RFC 6874 section 4: a client MUST remove the ZoneID (Go's
// net/http does). Expected 200.
func TestIPv6ZoneTargetHostHeader(t *testing.T) {
	t.Parallel()
	srv, err := mockllm.New(mockllm.Options{Model: "up-model", MaxTokens: 2})
	if err != nil {
		t.Fatal(err)
	}
	ln := listenLoopback6(t)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown() })
	base := zonedURL(t, ln.Addr().String())
	g := startGateway(t, `
server: {listen: "[::1]:0", admin_listen: "[::1]:0"}
backends:
  zoned: {provider: openai, base_url: "`+base+`", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: zoned}]}
logging: {level: error, access_log: false}
`)
	resp, body := postRaw(t, http.DefaultClient, g.url+"/v1/chat/completions",
		`{"model":"chat","messages":[{"role":"user","content":"hi"}]}`, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("base_url %s: observed %d %q (the upstream refused the Host header the gateway sent, which carries the zone); expected 200 with the zone left out of Host (RFC 6874)",
			base, resp.StatusCode, body)
	}
}

// A link-local backend ("http://[fe80::1%25eth0]:8000/v1") with health.path /health is
// checked with GET / instead (the check URL is rebuilt from the decoded host, which no
// longer parses; balance vllm_queue reads / for /metrics alike): vLLM answers / 404, the
// target is found down and /readyz stays 503. README: checks are GET health.path.
func TestIPv6ZoneTargetHealthPath(t *testing.T) {
	t.Parallel()
	ln := listenLoopback6(t)
	paths := make(chan string, 64)
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			select {
			case paths <- r.URL.Path:
			default:
			}
		}
		// As vLLM (FastAPI) does: /health answers, an unknown path is 404.
		if r.URL.Path != "/health" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(200)
	})}
	go up.Serve(ln)
	t.Cleanup(func() { up.Close() })
	base := zonedURL(t, ln.Addr().String())
	g := startGateway(t, `
server: {listen: "[::1]:0", admin_listen: "[::1]:0"}
backends:
  zoned: {provider: openai, base_url: "`+base+`", model: up-model, health: {path: /health, interval: 100ms, timeout: 1s}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: zoned}]}
logging: {level: error, access_log: false}
`)
	var first string
	select {
	case first = <-paths:
	case <-time.After(5 * time.Second):
		t.Fatalf("base_url %s: no health check reached the upstream in 5s; expected GET /health", base)
	}
	if first != "/health" {
		ready := "?"
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+g.AdminAddr()+"/readyz", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			ready = strings.TrimSpace(string(b))
		}
		t.Fatalf("base_url %s with health.path /health: observed the check GET %s (readyz: %s); expected GET /health", base, first, ready)
	}
}

// TestIPv6ZoneHTTPSTargetVerifiesItsAddress: an https upstream on a link-local address
// written as RFC 6874 has it (base_url "https://[fe80::1%25eth0]:8443/v1", ca_file its
// CA, the certificate for the address fe80::1) is verified against its address: the
// zone is how to dial, not part of the name (which no certificate could carry); it got
// 502 upstream_unreachable while the same upstream without the zone answered.
func TestIPv6ZoneHTTPSTargetVerifiesItsAddress(t *testing.T) {
	t.Parallel()
	pair := testcert.SelfSigned(t)
	certFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pair.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := mockllm.New(mockllm.Options{Model: "up-model", MaxTokens: 2})
	if err != nil {
		t.Fatal(err)
	}
	ln := listenLoopback6(t)
	go srv.Serve(tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}))
	t.Cleanup(func() { srv.Shutdown() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	zoned := "https://[::1%25" + loopback6Zone(t) + "]:" + port + "/v1"
	plain := "https://[::1]:" + port + "/v1"
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  zoned: {provider: openai, base_url: "`+zoned+`", model: up-model, tls: {ca_file: "`+certFile+`"}}
  plain: {provider: openai, base_url: "`+plain+`", model: up-model, tls: {ca_file: "`+certFile+`"}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: zoned}]}
  - {name: chat-plain, type: chat, routes: [{backend: plain}]}
logging: {level: error, access_log: false}
`)
	resp, body := postRaw(t, http.DefaultClient, g.url+"/v1/chat/completions",
		`{"model":"chat-plain","messages":[{"role":"user","content":"hi"}]}`, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("the same upstream without a zone (%s): %d %q; the test's certificate is wrong", plain, resp.StatusCode, body)
	}
	resp, body = postRaw(t, http.DefaultClient, g.url+"/v1/chat/completions",
		`{"model":"chat","messages":[{"role":"user","content":"hi"}]}`, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("base_url %s with a certificate for ::1: observed %d %q; expected 200 (the zone is how to dial, not part of the name verified)",
			zoned, resp.StatusCode, body)
	}
}
