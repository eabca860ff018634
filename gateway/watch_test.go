package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/providers/mockllm"
)

func waitWithin(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

func swapLink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link+".tmp"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(link+".tmp", link); err != nil {
		t.Fatal(err)
	}
}

// A deploy-style "current" directory link: --config base/current/tollgate.yaml, and a
// release repoints current from releases/v1 to releases/v2.
func TestReloadOnDirectoryLinkSwap(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	for _, v := range []string{"v1", "v2"} {
		if err := os.MkdirAll(filepath.Join(base, "releases", v), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(base, "releases/v1/tollgate.yaml"), []byte(reviewCfg("127.0.0.1:0", "a")), 0o644)
	os.WriteFile(filepath.Join(base, "releases/v2/tollgate.yaml"), []byte(reviewCfg("127.0.0.1:0", "b")), 0o644)
	if err := os.Symlink("releases/v1", filepath.Join(base, "current")); err != nil {
		t.Fatal(err)
	}
	s := newWatched(t, filepath.Join(base, "current", "tollgate.yaml"), Options{Logger: discardLogger()})
	time.Sleep(200 * time.Millisecond)
	swapLink(t, "releases/v2", filepath.Join(base, "current"))
	if !waitWithin(3*time.Second, func() bool { return hasEndpoint(s, "b") }) {
		t.Fatal("directory link repointed to a new release: config not reloaded within 3s")
	}
}

// The NixOS layout: /etc/tollgate.yaml -> /etc/static/tollgate.yaml, where /etc/static
// is a directory link that a switch repoints to a new store path.
func TestReloadOnIntermediateDirectoryLinkSwap(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	for _, d := range []string{"etc", "store1", "store2"} {
		os.MkdirAll(filepath.Join(base, d), 0o755)
	}
	os.WriteFile(filepath.Join(base, "store1/tollgate.yaml"), []byte(reviewCfg("127.0.0.1:0", "a")), 0o644)
	os.WriteFile(filepath.Join(base, "store2/tollgate.yaml"), []byte(reviewCfg("127.0.0.1:0", "b")), 0o644)
	if err := os.Symlink(filepath.Join(base, "store1"), filepath.Join(base, "static")); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "etc", "tollgate.yaml")
	if err := os.Symlink(filepath.Join(base, "static", "tollgate.yaml"), link); err != nil {
		t.Fatal(err)
	}
	s := newWatched(t, link, Options{Logger: discardLogger()})
	time.Sleep(200 * time.Millisecond)
	swapLink(t, filepath.Join(base, "store2"), filepath.Join(base, "static"))
	if !waitWithin(3*time.Second, func() bool { return hasEndpoint(s, "b") }) {
		t.Fatal("intermediate directory link repointed: config not reloaded within 3s")
	}
}

// A reload that moves server.tls to files in another directory: a renewal of those
// files is served, as the watch follows the reloaded paths.
func TestCertWatchFollowsReloadedPaths(t *testing.T) {
	t.Parallel()
	p1, p2 := newTestPKI(t), newTestPKI(t)
	dirA, dirB := t.TempDir(), t.TempDir()
	put := func(p *testPKI, dir string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "cert.pem"), mustRead(t, p.serverCert), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "key.pem"), mustRead(t, p.serverKey), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	put(p1, dirA)
	put(p2, dirB)
	cfg := func(dir string) string {
		return `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", tls: {cert_file: "` + dir + `/cert.pem", key_file: "` + dir + `/key.pem"}}
backends:
  demo: {provider: mock, model: mock-1}
endpoints:
  - {name: chat, type: chat, routes: [{backend: demo}]}
`
	}
	g := startGateway(t, cfg(dirA))
	if err := os.WriteFile(g.path, []byte(cfg(dirB)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	leaf := func(p *testPKI) []byte {
		blk, _ := pem.Decode(mustRead(t, p.serverCert))
		return blk.Bytes
	}
	served := func() []byte {
		conn, err := tls.Dial("tcp", g.Addr(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Raw
	}
	if !bytes.Equal(served(), leaf(p2)) {
		t.Fatal("reload did not serve the files at the new path")
	}
	time.Sleep(300 * time.Millisecond)
	put(p1, dirB) // renewal in place at the new path
	if !waitWithin(3*time.Second, func() bool { return bytes.Equal(served(), leaf(p1)) }) {
		t.Fatal("renewed certificate at the reloaded server.tls path not served within 3s")
	}
}

// A reload under way when the server shuts down does not leave a config installed
// after Serve has returned.
func TestReloadDuringShutdownNotInstalled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tollgate.yaml")
	if err := os.WriteFile(path, []byte(reviewCfg("127.0.0.1:0", "a")), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	// Reload logs the restart-only warning after reading the file and before its swap:
	// the server is stopped there.
	logger := slog.New(hookHandler{Handler: slog.NewJSONHandler(io.Discard, nil), match: "take effect on restart", once: &sync.Once{},
		hook: func() { cancel(); time.Sleep(50 * time.Millisecond) }})
	s, err := New(path, Options{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- s.Serve(ctx) }()
	time.Sleep(100 * time.Millisecond)
	if err := os.WriteFile(path, []byte(reviewCfg("localhost:0", "b")), 0o644); err != nil {
		t.Fatal(err)
	}
	rerr := s.Reload()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if rt := s.rt.Load(); rt != nil {
		t.Fatalf("Serve returned, but a reload (err %v) installed a runtime afterwards (endpoints %v)", rerr, len(rt.endpoints))
	}
}

// /readyz and passive ejection: a target whose ejection has run out counts as up for
// readiness, so a gateway an orchestrator stopped sending traffic to (after /readyz
// failed) becomes ready again without a trial request.
func TestReadyzRecoversWithoutTraffic(t *testing.T) {
	t.Parallel()
	held := holdPort(t)
	m, addr := startMockOn(t, held), held.Addr()
	_, other := startMock(t, mockllm.Options{MaxTokens: 2})
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  solo: {provider: openai, base_url: "http://`+addr+`/v1", model: up-model, connect_timeout: 200ms,
         health: {eject_after: 2, eject_for: 2s}}
  spare: {provider: openai, base_url: "http://`+other+`/v1", model: up-model}
endpoints:
  - {name: chat, type: chat, routes: [{backend: solo}]}
  - {name: other, type: chat, routes: [{backend: spare}]}
logging: {level: error}
`)
	ready := func() int {
		resp, err := http.Get("http://" + g.AdminAddr() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := ready(); code != 200 {
		t.Fatalf("readyz %d at start", code)
	}
	m.Shutdown() // the upstream restarts
	// The ejection (2 s) outlasts the third request and the readiness check below on a
	// loaded machine too; a shorter one could run out before the check.
	for i := 0; i < 3; i++ {
		postChat(t, g, `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`)
	}
	if code := ready(); code != 503 {
		t.Fatalf("readyz %d after the only target was ejected", code)
	}
	startMockOn(t, held) // the upstream is back
	if !waitWithin(20*time.Second, func() bool { return ready() == 200 }) {
		t.Fatal("upstream back and ejection (2s) long over, but /readyz stays 503 with no traffic: an unready pod gets none, so it never recovers")
	}
}
