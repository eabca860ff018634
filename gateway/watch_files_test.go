package gateway

// What the gateway reads from files besides its config and watches: the served
// certificate chain, backends' tls files, the config's directory itself, and what
// the watch does when the kernel drops events.

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// A serving Secret first deployed with the leaf alone (clients without the
// intermediate fail to verify) is fixed by putting the chain in tls.crt: same leaf,
// same key. The new chain is served from the next connection, without a reload.
func TestWatchCertChainChangeServed(t *testing.T) {
	t.Parallel()
	p := newTestPKI(t)
	vol := t.TempDir()
	k := &kubelet{t: t, vol: vol}
	leafPEM, keyPEM, caPEM := mustRead(t, p.serverCert), mustRead(t, p.serverKey), mustRead(t, p.caFile)
	k.update(map[string][]byte{"tls.crt": leafPEM, "tls.key": keyPEM})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", tls: {cert_file: "`+vol+`/tls.crt", key_file: "`+vol+`/tls.key"}}
backends:
  up: {provider: mock, model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`)
	chainLen := func() int {
		c, err := tls.Dial("tcp", g.Addr(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return len(c.ConnectionState().PeerCertificates)
	}
	if n := chainLen(); n != 1 {
		t.Fatalf("before the update: %d certificates served, want 1", n)
	}
	time.Sleep(250 * time.Millisecond)
	// Same leaf and key, now followed by the issuing certificate.
	chain := append(append([]byte{}, leafPEM...), caPEM...)
	k.update(map[string][]byte{"tls.crt": chain, "tls.key": keyPEM})
	if !waitWithin(3*time.Second, func() bool { return chainLen() == 2 }) {
		t.Fatalf("intermediate added to tls.crt: %d certificate(s) served after 3s, want 2", chainLen())
	}
}

// A backend's client certificate (tls.cert_file, key_file), issued by cert-manager
// into a mounted Secret, is renewed: new upstream connections present the renewed one
// without a restart, before the old one expires and the upstream refuses it.
func TestWatchBackendClientCertRenewed(t *testing.T) {
	t.Parallel()
	p1, p2 := newTestPKI(t), newTestPKI(t)
	// The upstream trusts both CAs and records the client certificate it is shown.
	clientCAs := x509.NewCertPool()
	clientCAs.AppendCertsFromPEM(mustRead(t, p1.caFile))
	clientCAs.AppendCertsFromPEM(mustRead(t, p2.caFile))
	var mu sync.Mutex
	var seen []byte
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			seen = r.TLS.PeerCertificates[0].Raw
		}
		mu.Unlock()
		// Every request on a new connection: a new handshake each time.
		w.Header().Set("Connection", "close")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":"c1","object":"chat.completion","created":1,"model":"up-model","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`))
	}))
	up.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCAs}
	up.StartTLS()
	t.Cleanup(up.Close)
	upCA := filepath.Join(t.TempDir(), "up-ca.pem")
	if err := os.WriteFile(upCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}

	vol := t.TempDir()
	k := &kubelet{t: t, vol: vol}
	put := func(p *testPKI) {
		k.update(map[string][]byte{"tls.crt": mustRead(t, p.clientCert), "tls.key": mustRead(t, p.clientKey)})
	}
	put(p1)
	addr := strings.TrimPrefix(up.URL, "https://")
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "https://`+addr+`/v1", model: up-model,
       tls: {ca_file: "`+upCA+`", cert_file: "`+vol+`/tls.crt", key_file: "`+vol+`/tls.key"}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
logging: {level: error, access_log: false}
`)
	leaf := func(p *testPKI) []byte {
		blk, _ := pem.Decode(mustRead(t, p.clientCert))
		return blk.Bytes
	}
	presented := func() []byte {
		resp, err := http.Post(g.url+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"chat","messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("chat: status %d", resp.StatusCode)
		}
		mu.Lock()
		defer mu.Unlock()
		return seen
	}
	if !bytes.Equal(presented(), leaf(p1)) {
		t.Fatal("before the renewal: the configured client certificate not presented")
	}
	time.Sleep(250 * time.Millisecond)
	put(p2)
	if !waitWithin(3*time.Second, func() bool { return bytes.Equal(presented(), leaf(p2)) }) {
		t.Fatal("client certificate Secret renewed: new upstream connections still present the old certificate after 3s")
	}
}

// writeConfDir creates dir holding a tollgate.yaml whose one endpoint is named
// endpoint, and returns the file's path.
func writeConfDir(t *testing.T, dir, endpoint string) string {
	t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "tollgate.yaml")
	if err := os.WriteFile(path, []byte(reviewCfg("127.0.0.1:0", endpoint)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// The config directory is removed and written again (a config-management run that
// deletes /etc/tollgate and renders it anew, a volume remounted): the missing file
// fails a reload, and once the directory and the file are back the file is loaded.
func TestWatchConfigDirRecreated(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "conf")
	path := writeConfDir(t, dir, "v1")
	s := newWatched(t, path, Options{Logger: slogTo(&syncBuffer{})})
	time.Sleep(250 * time.Millisecond)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if !waitWithin(3*time.Second, func() bool { return watchReloadFailing(s) }) {
		t.Fatal("config directory removed: no failed reload within 3s")
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, path, reviewCfg("127.0.0.1:0", "v2"))
	if !waitWithin(3*time.Second, func() bool { return hasEndpoint(s, "v2") }) {
		t.Fatal("config directory recreated and the file saved: not reloaded within 3s")
	}
	// Edits after that are seen too: the new directory is watched.
	writeAtomic(t, path, reviewCfg("127.0.0.1:0", "v3"))
	if !waitWithin(3*time.Second, func() bool { return hasEndpoint(s, "v3") }) {
		t.Fatal("file saved in the recreated config directory: not reloaded within 3s")
	}
	if watchReloadFailing(s) {
		t.Fatal("reload still failing once the file is back")
	}
}

// A deploy replaces the config directory as a whole by renaming (mv conf conf.prev &&
// mv conf.next conf), keeping the previous one for rollback: the file at --config is
// loaded, and edits to it after that are seen.
func TestWatchConfigDirRenamedOver(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	dir := filepath.Join(base, "conf")
	path := writeConfDir(t, dir, "v1")
	s := newWatched(t, path, Options{Logger: slogTo(&syncBuffer{})})
	time.Sleep(250 * time.Millisecond)
	next := filepath.Join(base, "conf.next")
	writeConfDir(t, next, "v2")
	if err := os.Rename(dir, filepath.Join(base, "conf.prev")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(next, dir); err != nil {
		t.Fatal(err)
	}
	if !waitWithin(3*time.Second, func() bool { return hasEndpoint(s, "v2") }) {
		t.Fatal("config directory replaced by rename: the new file not loaded within 3s")
	}
	writeAtomic(t, path, reviewCfg("127.0.0.1:0", "v3"))
	if !waitWithin(3*time.Second, func() bool { return hasEndpoint(s, "v3") }) {
		t.Fatal("file saved in the directory renamed in: not reloaded within 3s")
	}
}

// The kernel's inotify queue overflows (a burst of events in the watched directories
// while the watch loop waits on a reload): fsnotify reports ErrEventOverflow, and the
// watch compares every file again, so a save whose events were dropped is loaded.
func TestWatchOverflowRechecksFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "tollgate.yaml")
	if err := os.WriteFile(path, []byte(reviewCfg("127.0.0.1:0", "v1")), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	s := newWatched(t, path, Options{Logger: slogTo(logs)})
	time.Sleep(250 * time.Millisecond)
	// A reload under way elsewhere (POST /admin/reload, SIGHUP) holds the watch loop
	// at its next comparison: a save of the same bytes brings it there.
	s.reloadMu.Lock()
	locked := true
	defer func() {
		if locked {
			s.reloadMu.Unlock()
		}
	}()
	writeAtomic(t, path, reviewCfg("127.0.0.1:0", "v1"))
	time.Sleep(300 * time.Millisecond)
	// Meanwhile more events than the kernel queues (max_queued_events, 16384 by
	// default; a raised limit only makes the loop longer) land
	// in the directory, then the config is saved.
	junk := filepath.Join(dir, "junk")
	max := 16384
	if b, err := os.ReadFile("/proc/sys/fs/inotify/max_queued_events"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 0 {
			max = n
		}
	}
	for _, n := range []string{junk, junk + "2"} {
		if err := os.WriteFile(n, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < max; i++ {
		// Two events per round (attrib on junk, then on junk2: files the watch
		// ignores), 2 x max_queued_events in all: consecutive events differ, so the
		// kernel does not merge them.
		if err := os.Chmod(junk, os.FileMode(0o600|(i%2)*0o44)); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(junk+"2", os.FileMode(0o640|(i%2)*0o4)); err != nil {
			t.Fatal(err)
		}
	}
	writeAtomic(t, path, reviewCfg("127.0.0.1:0", "v2"))
	s.reloadMu.Unlock()
	locked = false
	if !waitWithin(3*time.Second, func() bool { return hasEndpoint(s, "v2") }) {
		t.Fatalf("config saved after the inotify queue overflowed: not reloaded within 3s (overflow logged: %v)",
			strings.Contains(logs.String(), "overflow"))
	}
}

// A client certificate renewed in place, its key not written yet: the pair does not
// load, so the watch leaves the running config (no failed reload) until the key lands.
func TestWatchBackendTLSHalfWrittenWaits(t *testing.T) {
	p1, p2 := newTestPKI(t), newTestPKI(t)
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	putFile(t, cert, mustRead(t, p1.clientCert))
	putFile(t, key, mustRead(t, p1.clientKey))
	cfg := filepath.Join(dir, "tollgate.yaml")
	putFile(t, cfg, []byte(`
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  up: {provider: openai, base_url: "https://127.0.0.1:1/v1", model: m,
       tls: {ca_file: "`+p1.caFile+`", cert_file: "`+cert+`", key_file: "`+key+`"}}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`))
	s, err := New(cfg, Options{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if rt := s.rt.Swap(nil); rt != nil {
			rt.retireNow()
		}
	})
	if f := s.changedBackendTLS(s.tlsSums); f != "" {
		t.Fatalf("nothing written: %s taken for changed", f)
	}
	putFile(t, cert, mustRead(t, p2.clientCert))
	if f := s.changedBackendTLS(s.tlsSums); f != "" {
		t.Fatalf("certificate written without its key: %s taken for a change to load", f)
	}
	putFile(t, key, mustRead(t, p2.clientKey))
	if f := s.changedBackendTLS(s.tlsSums); f != cert {
		t.Fatalf("certificate and key renewed: changed file %q, want %q", f, cert)
	}
}
