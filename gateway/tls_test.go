package gateway

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/tollgate/tollgate/internal/promtest"
	"github.com/tollgate/tollgate/providers/mockllm"
)

// testPKI is a private CA with a server certificate for 127.0.0.1 and upstream.test, and
// a client certificate, written as PEM files.
type testPKI struct {
	caFile, serverCert, serverKey, clientCert, clientKey string
	pool                                                 *x509.CertPool
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := key()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tollgate test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, usage x509.ExtKeyUsage, name string) (string, string) {
		k := key()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		if usage == x509.ExtKeyUsageServerAuth {
			tmpl.DNSNames = []string{"upstream.test"}
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "EC PRIVATE KEY", kder)
	}
	p := &testPKI{caFile: write("ca.pem", "CERTIFICATE", caDER), pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.serverCert, p.serverKey = leaf(2, x509.ExtKeyUsageServerAuth, "server")
	p.clientCert, p.clientKey = leaf(3, x509.ExtKeyUsageClientAuth, "client")
	return p
}

// startTLSMock serves a mockllm over TLS with the PKI's server certificate; with
// clientAuth it requires a client certificate the CA signed.
func startTLSMock(t *testing.T, p *testPKI, clientAuth bool) string {
	t.Helper()
	srv, err := mockllm.New(mockllm.Options{Model: "up-model", MaxTokens: 4})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(p.serverCert, p.serverKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	if clientAuth {
		cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, p.pool
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(tls.NewListener(ln, cfg))
	t.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}

// TestUpstreamTLS: https targets are verified against a private CA (ca_file), by the
// name the certificate must carry (server_name, for targets addressed by IP or by
// another name), with the gateway's client certificate when the target asks for one,
// for chat, streams and active health checks alike; a target whose certificate does
// not verify is unreachable, never silently trusted.
func TestUpstreamTLS(t *testing.T) {
	t.Parallel()
	p := newTestPKI(t)
	plain := startTLSMock(t, p, false)
	mutual := startTLSMock(t, p, true)
	_, port, _ := net.SplitHostPort(plain)
	health := `health: {interval: 100ms, timeout: 1s}`
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  private: {provider: openai, base_url: "https://`+plain+`/v1", model: up-model, tls: {ca_file: "`+p.caFile+`"}, `+health+`}
  named: {provider: openai, base_url: "https://localhost:`+port+`/v1", model: up-model,
          tls: {ca_file: "`+p.caFile+`", server_name: upstream.test}}
  mutual: {provider: openai, base_url: "https://`+mutual+`/v1", model: up-model,
           tls: {ca_file: "`+p.caFile+`", cert_file: "`+p.clientCert+`", key_file: "`+p.clientKey+`"}}
  no-client-cert: {provider: openai, base_url: "https://`+mutual+`/v1", model: up-model, tls: {ca_file: "`+p.caFile+`"}}
  system-roots: {provider: openai, base_url: "https://`+plain+`/v1", model: up-model, connect_timeout: 2s}
  wrong-name: {provider: openai, base_url: "https://`+plain+`/v1", model: up-model, tls: {ca_file: "`+p.caFile+`", server_name: other.test}}
  skip-verify: {provider: openai, base_url: "https://`+plain+`/v1", model: up-model, tls: {insecure_skip_verify: true}}
  untrusted: {provider: openai, base_url: "https://`+plain+`/v1", model: up-model, `+health+`}
endpoints:
  - {name: private, type: chat, routes: [{backend: private}]}
  - {name: named, type: chat, routes: [{backend: named}]}
  - {name: mutual, type: chat, routes: [{backend: mutual}]}
  - {name: no-client-cert, type: chat, routes: [{backend: no-client-cert}]}
  - {name: system-roots, type: chat, routes: [{backend: system-roots}]}
  - {name: wrong-name, type: chat, routes: [{backend: wrong-name}]}
  - {name: skip-verify, type: chat, routes: [{backend: skip-verify}]}
  - {name: untrusted, type: chat, routes: [{backend: untrusted}]}
`)
	c := g.client()
	ctx := context.Background()
	for _, name := range []string{"private", "named", "mutual", "skip-verify"} {
		t.Run(name, func(t *testing.T) {
			res, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: name, Messages: userMsg("hi")})
			if err != nil {
				t.Fatal(err)
			}
			if res.Usage.CompletionTokens == 0 || res.Choices[0].Message.Content == "" {
				t.Fatalf("answer %+v", res)
			}
			stream := c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: name, Messages: userMsg("hi")})
			chunks := 0
			for stream.Next() {
				chunks++
			}
			if err := stream.Err(); err != nil || chunks < 2 {
				t.Fatalf("stream: %d chunks, %v", chunks, err)
			}
		})
	}
	for _, name := range []string{"no-client-cert", "system-roots", "wrong-name"} {
		t.Run(name, func(t *testing.T) {
			_, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: name, Messages: userMsg("hi")})
			if e := apiErr(t, err); e.StatusCode != 502 || e.Code != "upstream_unreachable" {
				t.Fatalf("got %d %q (%s), want 502 upstream_unreachable", e.StatusCode, e.Code, e.Message)
			}
		})
	}
	// The active health checks go over TLS with the backend's settings: the untrusted
	// target fails them and is marked down, while the one verified by its CA stays up.
	up := func(backend string) float64 {
		fams, err := promtest.Scrape("http://" + g.AdminAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		v, ok := promtest.Sum(fams, "tollgate_backend_up", func(l map[string]string) bool { return l["backend"] == backend })
		if !ok {
			t.Fatalf("no tollgate_backend_up for %s", backend)
		}
		return v
	}
	waitFor(t, func() bool { return up("untrusted") == 0 })
	time.Sleep(300 * time.Millisecond)
	if v := up("private"); v != 1 {
		t.Fatalf("tollgate_backend_up{backend=private} = %v: its health checks failed over TLS", v)
	}
	logs := g.logs.String()
	if strings.Contains(logs, "PRIVATE KEY") {
		t.Fatal("the client key reached the logs")
	}
	if !strings.Contains(logs, "tls.insecure_skip_verify accepts any certificate from this backend's targets: tests only\",\"backend\":\"skip-verify\"") {
		t.Errorf("no warning for the backend that skips verification:\n%s", logs)
	}
}

// TestUpstreamTLSConfigErrors: a tls block that cannot work is refused when the config
// loads, naming the key.
func TestUpstreamTLSConfigErrors(t *testing.T) {
	p := newTestPKI(t)
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, backend, want string }{
		{"http target", `{provider: openai, base_url: "http://127.0.0.1:1/v1", model: m, tls: {ca_file: "` + p.caFile + `"}}`, "backends.up.tls: applies only to https targets"},
		{"missing CA file", `{provider: openai, base_url: "https://127.0.0.1:1/v1", model: m, tls: {ca_file: /nonexistent/ca.pem}}`, "backends.up.tls.ca_file: cannot be read: /nonexistent/ca.pem: no such file or directory"},
		{"CA file a device", `{provider: openai, base_url: "https://127.0.0.1:1/v1", model: m, tls: {ca_file: /dev/zero}}`, "backends.up.tls.ca_file: cannot be read: /dev/zero is not a regular file"},
		{"CA file not PEM", `{provider: openai, base_url: "https://127.0.0.1:1/v1", model: m, tls: {ca_file: "` + notPEM + `"}}`, "backends.up.tls.ca_file: holds no PEM certificate"},
		{"cert without key", `{provider: openai, base_url: "https://127.0.0.1:1/v1", model: m, tls: {cert_file: "` + p.clientCert + `"}}`, "backends.up.tls.cert_file: and tls.key_file go together"},
		{"key of another cert", `{provider: openai, base_url: "https://127.0.0.1:1/v1", model: m, tls: {cert_file: "` + p.clientCert + `", key_file: "` + p.serverKey + `"}}`, "backends.up.tls.cert_file: with tls.key_file: private key does not match public key"},
		{"mock", `{provider: mock, model: m, tls: {insecure_skip_verify: true}}`, "backends.up.tls: applies only to https targets"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig("tls.yaml", []byte("backends:\n  up: "+c.backend+"\nendpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n"), env(nil))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}

// TestServeTLS: with server.tls the API is served over HTTPS, streams included (a
// stream hands its TLS connection back and forth like a plain one); a reload serves
// the certificate the files hold then, a reload whose files do not load keeps the
// running one, and files renewed in place are served without any reload.
func TestServeTLS(t *testing.T) {
	t.Parallel()
	p1, p2 := newTestPKI(t), newTestPKI(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	install := func(p *testPKI) {
		t.Helper()
		for from, to := range map[string]string{p.serverCert: certFile, p.serverKey: keyFile} {
			b, err := os.ReadFile(from)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(to, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	install(p1)
	_, up := startMock(t, mockllm.Options{MaxTokens: 4})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", tls: {cert_file: "`+certFile+`", key_file: "`+keyFile+`"}}
backends:
  up: {provider: openai, base_url: "http://`+up+`/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(mustRead(t, p1.caFile))
	roots.AppendCertsFromPEM(mustRead(t, p2.caFile))
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	base := "https://" + g.Addr() + "/v1"
	c := openai.NewClient(option.WithBaseURL(base), option.WithHTTPClient(hc), option.WithAPIKey("unused"), option.WithMaxRetries(0))
	ctx := context.Background()
	for range 2 {
		// A stream, then a request on the same kept-alive TLS connection.
		stream := c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg("hi")})
		chunks := 0
		for stream.Next() {
			chunks++
		}
		if err := stream.Err(); err != nil || chunks < 2 {
			t.Fatalf("stream over TLS: %d chunks, %v", chunks, err)
		}
		if _, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg("hi")}); err != nil {
			t.Fatalf("chat over TLS: %v", err)
		}
	}
	served := func() []byte {
		t.Helper()
		hc.CloseIdleConnections()
		resp, err := hc.Get(base + "/models")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.TLS == nil || resp.StatusCode != 200 {
			t.Fatalf("models: %d, TLS %v", resp.StatusCode, resp.TLS)
		}
		return resp.TLS.PeerCertificates[0].Raw
	}
	leaf := func(p *testPKI) []byte {
		blk, _ := pem.Decode(mustRead(t, p.serverCert))
		return blk.Bytes
	}
	if !bytes.Equal(served(), leaf(p1)) {
		t.Fatal("not serving the configured certificate")
	}
	// A client given http:// for the TLS listener reads a 400 saying so, in the API's
	// error shape, not an empty reply; the SDK reports it as an API error.
	resp, err := http.Get("http://" + g.Addr() + "/v1/models")
	if err != nil {
		t.Fatalf("plain HTTP on the TLS listener: %v, want a 400 saying so", err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(raw), `"code":"https_required"`) {
		t.Fatalf("plain HTTP on the TLS listener: %d %s", resp.StatusCode, raw)
	}
	plain := openai.NewClient(option.WithBaseURL("http://"+g.Addr()+"/v1"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
	_, err = plain.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "chat", Messages: userMsg("hi")})
	if apiErr, ok := errors.AsType[*openai.Error](err); !ok || apiErr.StatusCode != 400 || apiErr.Code != "https_required" {
		t.Fatalf("the SDK over plain HTTP: %v, want a 400 https_required", err)
	}

	install(p2)
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(served(), leaf(p2)) {
		t.Fatal("a reload did not serve the renewed certificate")
	}
	// A key that does not match: the reload fails and the running certificate stays.
	if err := os.WriteFile(keyFile, mustRead(t, p1.serverKey), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err == nil || !strings.Contains(err.Error(), "server.tls") {
		t.Fatalf("reload with a mismatched key: %v", err)
	}
	if !bytes.Equal(served(), leaf(p2)) {
		t.Fatal("a failed reload changed the certificate")
	}
	// The watch saw the mismatched pair too: it warns and keeps serving the old one.
	waitFor(t, func() bool { return strings.Contains(g.logs.String(), "server.tls files changed but do not load") })
	if !bytes.Equal(served(), leaf(p2)) {
		t.Fatal("the watch served a pair that does not load")
	}
	// Renewed files are served without a reload: the gateway watches their directory.
	install(p1)
	waitFor(t, func() bool { return bytes.Equal(served(), leaf(p1)) })
	if !strings.Contains(g.logs.String(), "server certificate reloaded") {
		t.Error("the renewal was not logged")
	}
	// Turning TLS off takes a restart: the reload says so and TLS goes on.
	cfg := strings.Replace(string(mustRead(t, g.path)), `, tls: {cert_file: "`+certFile+`", key_file: "`+keyFile+`"}`, "", 1)
	if err := os.WriteFile(g.path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(g.logs.String(), "server.tls (turning TLS on or off)") {
		t.Error("the reload that turns TLS off did not warn that it takes a restart")
	}
	if !bytes.Equal(served(), leaf(p1)) {
		t.Fatal("TLS stopped before a restart")
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestServeTLSConfigErrors: a server.tls that cannot load is refused with the config.
func TestServeTLSConfigErrors(t *testing.T) {
	p := newTestPKI(t)
	for _, c := range []struct{ tls, want string }{
		{`{cert_file: "` + p.serverCert + `"}`, "server.tls: cert_file and key_file go together"},
		{`{cert_file: /nonexistent/cert.pem, key_file: "` + p.serverKey + `"}`, "server.tls: cannot be read: /nonexistent/cert.pem: no such file or directory"},
		{`{cert_file: "` + p.serverCert + `", key_file: "` + p.clientKey + `"}`, "server.tls: private key does not match public key"},
	} {
		_, err := ParseConfig("tls.yaml", []byte("server: {tls: "+c.tls+"}\nbackends:\n  up: {provider: mock, model: m}\nendpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n"), env(nil))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("err = %v, want %q", err, c.want)
		}
	}
}

// TestServeTLSSecretVolume: a Kubernetes secret volume renews its files by pointing its
// ..data link at a new directory (the files are links through it); the new certificate
// is served without a reload.
func TestServeTLSSecretVolume(t *testing.T) {
	t.Parallel()
	p1, p2 := newTestPKI(t), newTestPKI(t)
	vol := t.TempDir()
	version := func(name string, p *testPKI) {
		t.Helper()
		d := filepath.Join(vol, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "tls.crt"), mustRead(t, p.serverCert), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "tls.key"), mustRead(t, p.serverKey), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	version("..v1", p1)
	for _, l := range [][2]string{{"..v1", "..data"}, {"..data/tls.crt", "tls.crt"}, {"..data/tls.key", "tls.key"}} {
		if err := os.Symlink(l[0], filepath.Join(vol, l[1])); err != nil {
			t.Fatal(err)
		}
	}
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", tls: {cert_file: "`+vol+`/tls.crt", key_file: "`+vol+`/tls.key"}}
backends:
  up: {provider: mock, model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`)
	served := func() []byte {
		c, err := tls.Dial("tcp", g.Addr(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Raw
	}
	leaf := func(p *testPKI) []byte {
		blk, _ := pem.Decode(mustRead(t, p.serverCert))
		return blk.Bytes
	}
	if !bytes.Equal(served(), leaf(p1)) {
		t.Fatal("not serving the volume's certificate")
	}
	// The kubelet's update: a new version directory, a new link, renamed over ..data.
	version("..v2", p2)
	if err := os.Symlink("..v2", filepath.Join(vol, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(vol, "..data_tmp"), filepath.Join(vol, "..data")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return bytes.Equal(served(), leaf(p2)) })
}

// TestServeTLSRenewedBeforeWatch: certificate files renewed after the gateway read them
// at start but before its watch began (no event reaches the watch) are served once
// the watch starts, which compares them as it compares the config.
func TestServeTLSRenewedBeforeWatch(t *testing.T) {
	t.Parallel()
	p1, p2 := newTestPKI(t), newTestPKI(t)
	dir := t.TempDir()
	crt, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	write := func(p *testPKI) {
		t.Helper()
		if err := os.WriteFile(crt, mustRead(t, p.serverCert), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(key, mustRead(t, p.serverKey), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(p1)
	path := filepath.Join(dir, "tollgate.yaml")
	if err := os.WriteFile(path, []byte(`
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", tls: {cert_file: "`+crt+`", key_file: "`+key+`"}}
backends:
  up: {provider: mock, model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := New(path, Options{Logger: slogTo(&syncBuffer{})})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	// Renewed before Serve starts the watch.
	write(p2)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	served := func() []byte {
		c, err := tls.Dial("tcp", s.Addr(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Raw
	}
	blk, _ := pem.Decode(mustRead(t, p2.serverCert))
	waitFor(t, func() bool { return bytes.Equal(served(), blk.Bytes) })
}
