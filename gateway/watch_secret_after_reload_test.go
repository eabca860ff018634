package gateway

import (
	"bytes"
	"os"
	"testing"
	"time"
)

// Operator: the TLS Secret is mounted with items in a sub-directory, renewed once, then
// the config is edited (a reload), then the Secret is renewed again. The reload must
// not lose the certificate's watch: after the first renewal the sub-directory is
// reached through another timestamped directory than at start, and a watch rebuilt
// from the path alone sat on the deleted one, so the second renewal went unserved.
func TestWatchTLSSecretItemPathRotationAfterReload(t *testing.T) {
	t.Parallel()
	pkis := []*testPKI{newTestPKI(t), newTestPKI(t), newTestPKI(t)}
	vol := t.TempDir()
	k := &kubelet{t: t, vol: vol}
	put := func(p *testPKI) {
		k.update(map[string][]byte{"tls/tls.crt": mustRead(t, p.serverCert), "tls/tls.key": mustRead(t, p.serverKey)})
	}
	cfg := func(endpoint string) string {
		return `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", tls: {cert_file: "` + vol + `/tls/tls.crt", key_file: "` + vol + `/tls/tls.key"}}
backends:
  up: {provider: mock, model: m}
endpoints:
  - {name: ` + endpoint + `, type: chat, routes: [{backend: up}]}
`
	}
	put(pkis[0])
	g := startGateway(t, cfg("chat"))
	time.Sleep(250 * time.Millisecond)
	put(pkis[1])
	if !waitWithin(10*time.Second, func() bool { return bytes.Equal(servedLeaf(t, g.Addr()), leafCert(t, pkis[1])) }) {
		t.Fatal("first renewal not served within 10s")
	}
	if err := os.WriteFile(g.path, []byte(cfg("chat2")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(250 * time.Millisecond)
	put(pkis[2])
	if !waitWithin(10*time.Second, func() bool { return bytes.Equal(servedLeaf(t, g.Addr()), leafCert(t, pkis[2])) }) {
		t.Fatal("renewal after a reload not served within 10s: the reload lost the certificate's watch")
	}
}
