package gateway

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// watchReloadFailing reports whether the last reload failed (the failure gauge is 0).
func watchReloadFailing(s *Server) bool {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	return s.reloadFailing
}

// copyAtomic replaces dst with the contents of src by rename, as cert-manager's
// csi driver, vault agent and editors write.
func copyAtomic(t *testing.T, src, dst string) {
	t.Helper()
	writeAtomic(t, dst, string(mustRead(t, src)))
}

// putFile writes body to path, readable by its owner only, as a mounted Secret's files.
func putFile(t *testing.T, path string, body []byte) {
	t.Helper()
	if err := os.WriteFile(path, body, 0o600); err != nil {
		t.Fatal(err)
	}
}

// A backend tls renewal that lands while another pair the config reads is half
// written (another backend's, or server.tls's: two Certificates renewed together,
// written file by file) waits for the rest instead of making a failed reload (a
// logged failure, the reload-failure gauge and its alert): the reload needs every
// tls file of the config to load. Once the missing key lands, the reload succeeds.
func TestWatchBackendTLSWaitsForEveryPair(t *testing.T) {
	t.Parallel()
	p1, p2 := newTestPKI(t), newTestPKI(t)
	t.Run("another backend's client pair half written", func(t *testing.T) {
		dir := t.TempDir()
		caX := filepath.Join(dir, "x-ca.pem")
		certY, keyY := filepath.Join(dir, "y.pem"), filepath.Join(dir, "y-key.pem")
		putFile(t, caX, mustRead(t, p1.caFile))
		putFile(t, certY, mustRead(t, p1.clientCert))
		putFile(t, keyY, mustRead(t, p1.clientKey))
		cfg := filepath.Join(dir, "tollgate.yaml")
		putFile(t, cfg, []byte(`
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  x: {provider: openai, base_url: "https://127.0.0.1:1/v1", model: m, tls: {ca_file: "`+caX+`"}}
  y: {provider: openai, base_url: "https://127.0.0.1:2/v1", model: m,
      tls: {ca_file: "`+p1.caFile+`", cert_file: "`+certY+`", key_file: "`+keyY+`"}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: x}]}
  - {name: chat2, type: chat, routes: [{backend: y}]}
`))
		logs := &syncBuffer{}
		s := newWatched(t, cfg, Options{Logger: slogTo(logs)})
		time.Sleep(300 * time.Millisecond)
		// x's CA is rotated; y's certificate is renewed, its key not written yet.
		copyAtomic(t, p2.caFile, caX)
		copyAtomic(t, p2.clientCert, certY)
		if waitWithin(1500*time.Millisecond, func() bool { return watchReloadFailing(s) }) {
			t.Errorf("a half-written client pair of backend y (its key not written yet) failed a reload the watch "+
				"started for backend x's renewed ca_file: reload failure logged and counted; logs:\n%s", logLinesWith(logs.String(), "reload"))
		}
		// The key lands: everything loads.
		copyAtomic(t, p2.clientKey, keyY)
		renewed := sha256.Sum256(mustRead(t, p2.clientCert))
		if !waitWithin(3*time.Second, func() bool {
			s.reloadMu.Lock()
			defer s.reloadMu.Unlock()
			return !s.reloadFailing && s.tlsSums[certY] == renewed
		}) {
			t.Error("the completed pair was not loaded within 3s")
		}
	})
	t.Run("server.tls pair half written", func(t *testing.T) {
		dir := t.TempDir()
		srvCert, srvKey := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
		cliCert, cliKey := filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
		putFile(t, srvCert, mustRead(t, p1.serverCert))
		putFile(t, srvKey, mustRead(t, p1.serverKey))
		putFile(t, cliCert, mustRead(t, p1.clientCert))
		putFile(t, cliKey, mustRead(t, p1.clientKey))
		cfg := filepath.Join(dir, "tollgate.yaml")
		putFile(t, cfg, []byte(`
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", tls: {cert_file: "`+srvCert+`", key_file: "`+srvKey+`"}}
backends:
  up: {provider: openai, base_url: "https://127.0.0.1:1/v1", model: m,
       tls: {ca_file: "`+p1.caFile+`", cert_file: "`+cliCert+`", key_file: "`+cliKey+`"}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`))
		logs := &syncBuffer{}
		s := newWatched(t, cfg, Options{Logger: slogTo(logs)})
		time.Sleep(300 * time.Millisecond)
		// Both certificates are renewed together; the client pair is complete, the
		// serving certificate's key is not written yet.
		copyAtomic(t, p2.serverCert, srvCert)
		copyAtomic(t, p2.clientCert, cliCert)
		copyAtomic(t, p2.clientKey, cliKey)
		if waitWithin(1500*time.Millisecond, func() bool { return watchReloadFailing(s) }) {
			t.Errorf("a half-written server.tls pair (its key not written yet) failed the reload the watch started "+
				"for the backend's renewed client certificate; logs:\n%s", logLinesWith(logs.String(), "reload"))
		}
	})
}

func logLinesWith(logs, word string) string {
	var out []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
