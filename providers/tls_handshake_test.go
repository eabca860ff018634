package providers

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// tlsReplica is a replica served over TLS with a self-signed certificate for
// upstream.test and 127.0.0.1, written to caFile; hellos are the ClientHellos of its
// handshakes.
type tlsReplica struct {
	*replica
	caFile string
	mu     sync.Mutex
	hellos []tls.ClientHelloInfo
}

func startTLSReplica(t *testing.T) *tlsReplica {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "upstream.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"upstream.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	r := &tlsReplica{caFile: filepath.Join(t.TempDir(), "ca.pem")}
	if err := os.WriteFile(r.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		MinVersion:   tls.VersionTLS12,
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			r.mu.Lock()
			r.hellos = append(r.hellos, tls.ClientHelloInfo{ServerName: h.ServerName, SupportedProtos: h.SupportedProtos})
			r.mu.Unlock()
			return nil, nil
		},
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.replica = &replica{tb: t, addr: ln.Addr().String(), quit: make(chan struct{})}
	r.serve(tls.NewListener(ln, cfg))
	t.Cleanup(func() {
		close(r.quit)
		r.kill()
	})
	return r
}

func (r *tlsReplica) url(host string) string {
	_, port, _ := net.SplitHostPort(r.addr)
	return "https://" + net.JoinHostPort(host, port) + "/v1"
}

func (r *tlsReplica) handshakes() []tls.ClientHelloInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]tls.ClientHelloInfo(nil), r.hellos...)
}

// An https target's handshake is made when its connection is dialled, with the
// backend's tls settings applied as fasthttp applied them: the name sent (SNI) and
// verified is tls.server_name, else the target's host (none sent for an IP, whose
// certificate is verified by its IP), no ALPN protocol is offered (the connection
// speaks HTTP/1.1), and a kept-alive connection serves later requests, plain or
// streamed, without another handshake.
func TestTLSTargetHandshake(t *testing.T) {
	r := startTLSReplica(t)
	cases := []struct {
		name    string
		host    string
		tls     TLSConfig
		wantSNI string
		wantErr error
	}{
		{"by IP", "127.0.0.1", TLSConfig{CAFile: r.caFile}, "", nil},
		{"server_name", "localhost", TLSConfig{CAFile: r.caFile, ServerName: "upstream.test"}, "upstream.test", nil},
		{"host not in the certificate", "localhost", TLSConfig{CAFile: r.caFile}, "localhost", ErrConnect},
		{"insecure_skip_verify", "localhost", TLSConfig{InsecureSkipVerify: true}, "localhost", nil},
		{"system roots", "127.0.0.1", TLSConfig{}, "", ErrConnect},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(r.handshakes())
			b := newPoolBackend(t, Config{BaseURL: r.url(tc.host), TLS: tc.tls}, nil)
			for _, stream := range []bool{false, true, false} {
				_, err := sendOnce(b, promptCall("x", stream))
				if !errors.Is(err, tc.wantErr) || (err != nil) != (tc.wantErr != nil) {
					t.Fatalf("stream %v: %v, want %v", stream, err, tc.wantErr)
				}
			}
			hellos := r.handshakes()[before:]
			if tc.wantErr == nil && len(hellos) != 1 {
				t.Errorf("%d handshakes for three requests in a row, want one connection kept alive", len(hellos))
			}
			for _, h := range hellos {
				if h.ServerName != tc.wantSNI || len(h.SupportedProtos) != 0 {
					t.Fatalf("ClientHello with server name %q and ALPN %q, want %q and none", h.ServerName, h.SupportedProtos, tc.wantSNI)
				}
			}
		})
	}
}

// deafListener accepts connections and never reads or writes them: a target that
// takes the TCP connection and never answers the TLS handshake.
func deafListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
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

// A target that accepts the connection and never answers the TLS handshake costs a
// request connect_timeout, or what is left of its deadline when that comes first (a
// timeout), and an active check or a /metrics read its own timeout (a failure): the
// handshake is part of connecting, never left without a bound.
func TestStalledTLSHandshakeIsBounded(t *testing.T) {
	base := "https://" + deafListener(t) + "/v1"
	skip := TLSConfig{InsecureSkipVerify: true}
	// within runs f, and fails the test when f has not returned within limit, or
	// returned an error.
	within := func(t *testing.T, limit time.Duration, what string, f func() error) bool {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- f() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s against a stalled handshake: %v", what, err)
			}
			return err == nil
		case <-time.After(limit):
			t.Errorf("%s against a stalled handshake still runs after %v", what, limit)
			return false
		}
	}
	t.Run("request, connect_timeout", func(t *testing.T) {
		b := newPoolBackend(t, Config{BaseURL: base, TLS: skip, ConnectTimeout: 300 * time.Millisecond}, nil)
		for _, stream := range []bool{false, true} {
			within(t, 2*time.Second, "a request", func() error { return wantTimeout(sendOnce(b, promptCall("x", stream))) })
		}
	})
	t.Run("request, deadline", func(t *testing.T) {
		b := newPoolBackend(t, Config{BaseURL: base, TLS: skip, ConnectTimeout: 10 * time.Second}, nil)
		within(t, 2*time.Second, "a request", func() error { return wantTimeout(sendOnce(b, promptCallDeadline("x", 300*time.Millisecond))) })
	})
	t.Run("health check", func(t *testing.T) {
		b := newPoolBackend(t, Config{BaseURL: base, TLS: skip, ConnectTimeout: 10 * time.Second,
			Health: HealthConfig{Path: "/health", Timeout: 300 * time.Millisecond}}, nil)
		if within(t, 2*time.Second, "a health check", func() error { b.check(0); return nil }) && b.Healthy() {
			t.Error("a check that timed out in the handshake left the target up")
		}
	})
	t.Run("metrics read", func(t *testing.T) {
		b := newPoolBackend(t, Config{BaseURL: base, TLS: skip, ConnectTimeout: 10 * time.Second, Balance: "vllm_queue"}, nil)
		b.pool.states[0].load.ok.Store(true)
		// A read is bounded by metrics_interval, at least a second.
		if within(t, 3*time.Second, "a /metrics read", func() error { b.readLoad(0, nil); return nil }) && b.pool.states[0].load.ok.Load() {
			t.Error("a /metrics read that timed out in the handshake counts as read")
		}
	})
}

func wantTimeout(_ string, err error) error {
	if !errors.Is(err, ErrTimeout) {
		return fmt.Errorf("%v, want ErrTimeout", err)
	}
	return nil
}
