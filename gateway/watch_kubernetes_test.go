package gateway

import (
	"bytes"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// kubelet reproduces the kubelet's atomic writer for a ConfigMap or Secret
// volume: each update writes a new "..<timestamp>" directory, points a new
// "..data_tmp" link at it, renames that over "..data", creates the user-visible links
// (each top-level path component -> ..data/<component>) that are missing, and then
// deletes the previous timestamped directory.
type kubelet struct {
	t   *testing.T
	vol string
	gen int
}

func (k *kubelet) update(files map[string][]byte) {
	t := k.t
	t.Helper()
	k.gen++
	ts := fmt.Sprintf("..2026_12_02_10_00_%02d.%d", k.gen, 1000+k.gen)
	for rel, body := range files {
		p := filepath.Join(k.vol, ts, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old, _ := os.Readlink(filepath.Join(k.vol, "..data"))
	tmp := filepath.Join(k.vol, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(k.vol, "..data")); err != nil {
		t.Fatal(err)
	}
	for rel := range files {
		top := strings.Split(rel, "/")[0]
		link := filepath.Join(k.vol, top)
		if _, err := os.Lstat(link); err != nil {
			if err := os.Symlink(filepath.Join("..data", top), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(k.vol, old)); err != nil {
			t.Fatal(err)
		}
	}
}

// servedLeaf is the leaf certificate the API listener presents now.
func servedLeaf(t *testing.T, addr string) []byte {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Raw
}

func leafCert(t *testing.T, p *testPKI) []byte {
	blk, _ := pem.Decode(mustRead(t, p.serverCert))
	return blk.Bytes
}

// Operator: the TLS Secret is mounted with items in a sub-directory (a projected volume
// holding tls/tls.crt and tls/tls.key beside other sources). Every renewal must be
// served.
func TestWatchTLSSecretItemPathRepeatedRotation(t *testing.T) {
	t.Parallel()
	rotateTLSSecret(t, "tls/")
}

// rotateTLSSecret mounts a TLS Secret with its files under sub in the volume, renews
// it three times as the kubelet does, and checks each renewal is served.
func rotateTLSSecret(t *testing.T, sub string) {
	pkis := []*testPKI{newTestPKI(t), newTestPKI(t), newTestPKI(t), newTestPKI(t)}
	vol := t.TempDir()
	k := &kubelet{t: t, vol: vol}
	put := func(p *testPKI) {
		k.update(map[string][]byte{sub + "tls.crt": mustRead(t, p.serverCert), sub + "tls.key": mustRead(t, p.serverKey)})
	}
	put(pkis[0])
	g := startGateway(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", tls: {cert_file: "`+vol+"/"+sub+`tls.crt", key_file: "`+vol+"/"+sub+`tls.key"}}
backends:
  up: {provider: mock, model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`)
	for i, p := range pkis[1:] {
		time.Sleep(250 * time.Millisecond)
		put(p)
		if !waitWithin(3*time.Second, func() bool { return bytes.Equal(servedLeaf(t, g.Addr()), leafCert(t, p)) }) {
			t.Fatalf("secret rotation %d (files at %q): renewed certificate not served within 3s (still the old one)", i+1, sub+"tls.crt")
		}
	}
}

// Operator: the config is written in place by a writer that is not instantaneous
// (curl -o from a config service, `cat > tollgate.yaml`, a config agent streaming the
// file): the file is truncated and its bytes arrive in two writes some 400 ms apart.
// The watcher must not install the half-written prefix: here the prefix is a valid
// config without its auth: section, so installing it serves the API without
// authentication until the rest arrives.
// Not t.Parallel: the watch must begin within 250 ms, the writes within a second.
func TestWatchInPlaceWriteNotReadHalfWritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tollgate.yaml")
	head := `server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0"}
backends:
  demo: {provider: mock, model: mock-1}
endpoints:
  - {name: chat, type: chat, routes: [{backend: demo}]}
`
	tail := "auth: {mode: keys, keys: [{name: team, key: sk-ops-1}]}\n"
	if err := os.WriteFile(path, []byte(head+tail), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newWatched(t, path, Options{Logger: slogTo(&syncBuffer{})})
	time.Sleep(250 * time.Millisecond)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(head + "  - {name: chat2, type: chat, routes: [{backend: demo}]}\n"); err != nil {
		t.Fatal(err)
	}
	sawOpen := false
	deadline := time.Now().Add(400 * time.Millisecond)
	for time.Now().Before(deadline) {
		if rt := s.rt.Load(); rt != nil && rt.cfg.Auth.Mode != "keys" {
			sawOpen = true
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := f.WriteString(tail); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if !waitWithin(3*time.Second, func() bool { return hasEndpoint(s, "chat2") && s.rt.Load().cfg.Auth.Mode == "keys" }) {
		t.Fatal("complete file not reloaded within 3s")
	}
	if sawOpen {
		t.Fatal("half-written config installed while the writer was still writing: observed auth.mode none (API open without keys) for a moment; expected the running config (auth.mode keys) until the file was complete")
	}
}
