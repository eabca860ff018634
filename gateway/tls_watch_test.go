package gateway

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serverTLSConfig is a config serving HTTPS with the pair crt, key (none when both are
// empty) and one endpoint named endpoint.
func serverTLSConfig(crt, key, endpoint string) string {
	tls := ""
	if crt != "" || key != "" {
		tls = `, tls: {cert_file: "` + crt + `", key_file: "` + key + `"}`
	}
	return `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"` + tls + `}
backends:
  demo: {provider: mock, model: mock-1}
endpoints:
  - {name: ` + endpoint + `, type: chat, routes: [{backend: demo}]}
`
}

// watchedTLS writes p's server pair as crt and key, and a config serving endpoint "a"
// over it beside them, and serves that config with its file watch on, after the watch
// has settled; it returns the server, the config's path and its log.
func watchedTLS(t *testing.T, p *testPKI, crt, key string) (*Server, string, *syncBuffer) {
	t.Helper()
	putFile(t, crt, mustRead(t, p.serverCert))
	putFile(t, key, mustRead(t, p.serverKey))
	path := filepath.Join(filepath.Dir(crt), "tollgate.yaml")
	putFile(t, path, []byte(serverTLSConfig(crt, key, "a")))
	logs := &syncBuffer{}
	s := newWatched(t, path, Options{Logger: slogTo(logs)})
	time.Sleep(300 * time.Millisecond)
	return s, path, logs
}

// A config saved while the serving certificate is renewed file by file (tls.crt
// written, tls.key not yet) fails its reload, the pair not loading; once the key
// lands every file loads, and the saved config is applied and the failure cleared
// (README: "the reload waits for the rest"), not only the renewed pair served.
func TestWatchServerTLSRenewalAppliesConfigSavedMidway(t *testing.T) {
	t.Parallel()
	p1, p2 := newTestPKI(t), newTestPKI(t)
	dir := t.TempDir()
	crt, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	s, path, logs := watchedTLS(t, p1, crt, key)

	copyAtomic(t, p2.serverCert, crt)
	writeAtomic(t, path, serverTLSConfig(crt, key, "b"))
	if !waitWithin(3*time.Second, func() bool { return watchReloadFailing(s) }) {
		t.Fatalf("the config saved with the pair half written did not fail its reload:\n%s", logs)
	}
	copyAtomic(t, p2.serverKey, key)
	if !waitWithin(3*time.Second, func() bool { return hasEndpoint(s, "b") && !watchReloadFailing(s) }) {
		t.Errorf("3s after the pair completed: endpoint b live %v, reload failing %v; want the saved config applied\nlogs:\n%s",
			hasEndpoint(s, "b"), watchReloadFailing(s), logLinesWith(logs.String(), "reload")+"\n"+logLinesWith(logs.String(), "certificate"))
	}
	if !bytes.Equal(s.cert.Load().Certificate[0], leafCert(t, p2)) {
		t.Error("the renewed certificate is not served")
	}
}

// A reload that drops server.tls leaves HTTPS on until the restart (README: "Turning
// TLS on or off takes a restart"); until then the files of the certificate served are
// followed still, and a renewal is served.
func TestWatchServerTLSAfterReloadTurnsTLSOff(t *testing.T) {
	t.Parallel()
	p1, p2 := newTestPKI(t), newTestPKI(t)
	dir := t.TempDir()
	crt, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	s, path, logs := watchedTLS(t, p1, crt, key)

	writeAtomic(t, path, serverTLSConfig("", "", "b"))
	waitFor(t, func() bool { return hasEndpoint(s, "b") })
	if !strings.Contains(logs.String(), "server.tls (turning TLS on or off)") {
		t.Fatalf("the reload did not warn that turning TLS off takes a restart:\n%s", logs)
	}
	time.Sleep(300 * time.Millisecond)
	copyAtomic(t, p2.serverKey, key)
	copyAtomic(t, p2.serverCert, crt)
	renewed := leafCert(t, p2)
	if !waitWithin(3*time.Second, func() bool { return bytes.Equal(s.cert.Load().Certificate[0], renewed) }) {
		t.Errorf("renewal of the certificate served after a reload turned TLS off: not served within 3s\nlogs:\n%s",
			logLinesWith(logs.String(), "certificate"))
	}
}

// A config saved with server.tls naming a new pair (a renewal written under new names,
// a move to another Secret) while that pair is half written fails its reload; the
// files of the config that failed are followed, and the key landing applies it.
func TestWatchServerTLSNewPairAppliesConfigSavedMidway(t *testing.T) {
	t.Parallel()
	p1, p2 := newTestPKI(t), newTestPKI(t)
	dir := t.TempDir()
	crtB, keyB := filepath.Join(dir, "b.crt"), filepath.Join(dir, "b.key")
	s, path, logs := watchedTLS(t, p1, filepath.Join(dir, "a.crt"), filepath.Join(dir, "a.key"))

	copyAtomic(t, p2.serverCert, crtB)
	writeAtomic(t, path, serverTLSConfig(crtB, keyB, "b"))
	if !waitWithin(3*time.Second, func() bool { return watchReloadFailing(s) }) {
		t.Fatalf("the config saved with its new pair half written did not fail its reload:\n%s", logs)
	}
	copyAtomic(t, p2.serverKey, keyB)
	if !waitWithin(3*time.Second, func() bool { return hasEndpoint(s, "b") && !watchReloadFailing(s) }) {
		t.Errorf("3s after the new pair completed: endpoint b live %v, reload failing %v; want the saved config applied\nlogs:\n%s",
			hasEndpoint(s, "b"), watchReloadFailing(s), logLinesWith(logs.String(), "reload"))
	}
	if !bytes.Equal(s.cert.Load().Certificate[0], leafCert(t, p2)) {
		t.Error("the new pair is not served")
	}
}
