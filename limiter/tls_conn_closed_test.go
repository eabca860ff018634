package limiter

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/freeport"
	"github.com/tollgate/tollgate/internal/redistest"
)

// tlsPort has srv listen for TLS too, on a port it returns, with a self-signed
// certificate (clients connect with skip_verify); its plain port stays for the test's
// own commands.
func tlsPort(t *testing.T, srv *redistest.Server) int {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IsCA:         true,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	port, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := redistest.Command(srv.Addr(), "CONFIG", "SET", "tls-cert-file", cert, "tls-key-file", keyFile,
		"tls-ca-cert-file", cert, "tls-auth-clients", "no", "tls-port", strconv.Itoa(port)); err != nil {
		t.Fatal(err)
	}
	return port
}

// TestRedisTLSConnClosedWhileIdle closes every connection of a limiter that reaches
// Redis over TLS (Redis's idle timeout, CLIENT KILL, a restart, as while the gateway
// sits idle): go-redis cannot check a TLS connection it takes from the pool, so the
// first call on each found it closed. A check, a read (Peek) and the heartbeats are
// answered from Redis all the same, on new connections: the limiter never degrades.
func TestRedisTLSConnClosedWhileIdle(t *testing.T) {
	srv := redistest.Start(t)
	port := tlsPort(t, srv)
	url := "rediss://127.0.0.1:" + strconv.Itoa(port) + "/0?skip_verify=true"
	var lb logBuffer
	log := slog.New(slog.NewTextHandler(&lb, nil))
	l := newRedisLimiterLog(t, Config{Redis: RedisConfig{URL: url}, Timeout: 500 * time.Millisecond, Prefetch: durationPtr(0)}, log)
	chat := mustPolicy(t, "chat", Limit{Per: "api_key", Requests: 1000, Window: "day"})
	pol := mustPolicy(t, "key:team-a", peekLimits...)
	if rs := l.Peek(bg, probesOf(pol, alice)); rs[0].Source != FromRedis {
		t.Fatalf("Redis up: %+v", rs)
	}
	for i := range 5 {
		killClients(t, srv.Addr())
		for j, r := range l.Peek(bg, probesOf(pol, alice)) {
			if r.Source != FromRedis {
				t.Fatalf("round %d: limit %d after the connections closed: %+v", i, j, r)
			}
		}
		killClients(t, srv.Addr())
		var tk Ticket
		if err := l.Take(bg, chat, alice, 0, &tk); err != nil || tk.src != srcRedis {
			t.Fatalf("round %d: Take = %v from %d after the connections closed, want admitted by Redis", i, err, tk.src)
		}
		l.Settle(&tk, 0)
		time.Sleep(250 * time.Millisecond) // heartbeats on the connections left
	}
	if l.Degraded() || strings.Contains(lb.String(), "unavailable") {
		t.Errorf("limiter degraded by closed connections:\n%s", lb.String())
	}
}

// killClients closes every client connection of Redis at addr (CLIENT KILL TYPE
// normal) and waits until Redis has closed them: it frees them in its next event loop,
// after answering the kill, so a busy machine can hand one out from the pool before
// its close is sent. Connections made since (a heartbeat's) are left alone.
func killClients(t *testing.T, addr string) {
	t.Helper()
	before, err := redistest.Command(addr, "CLIENT", "LIST", "TYPE", "normal")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := redistest.Command(addr, "CLIENT", "KILL", "TYPE", "normal"); err != nil {
		t.Fatal(err)
	}
	var killed []string
	for line := range strings.SplitSeq(strings.TrimSpace(before), "\n") {
		if id, _, ok := strings.Cut(line, " "); ok && strings.HasPrefix(id, "id=") {
			killed = append(killed, id+" ")
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		list, err := redistest.Command(addr, "CLIENT", "LIST", "TYPE", "normal")
		if err != nil {
			t.Fatal(err)
		}
		open := false
		for _, id := range killed {
			if strings.HasPrefix(list, id) || strings.Contains(list, "\n"+id) {
				open = true
			}
		}
		if !open {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("connections still open 5 s after CLIENT KILL:\n%s", list)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
