package pemfile

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/testcert"
)

// A bundle is refused, with the line of the block at fault, when one of its PEM blocks
// is not a certificate that parses: x509's AppendCertsFromPEM would skip that block and
// trust the rest, and the CA left out would show only as upstream TLS failures.
func TestCertPoolRefusesBadBlock(t *testing.T) {
	good := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: testcert.SelfSigned(t).Certificate[0]}))
	lines := strings.Count(good, "\n")
	cut := good[:len(good)/2]
	broken := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")}))
	trusted := strings.ReplaceAll(good, "CERTIFICATE", "TRUSTED CERTIFICATE")
	p := filepath.Join(t.TempDir(), "ca.pem")
	for name, c := range map[string]struct{ body, want string }{
		"unparsable":           {"# root\n" + good + broken, p + ":" + itoa(lines+2) + ": certificate does not parse: "},
		"other type":           {good + "\n" + trusted, p + ":" + itoa(lines+2) + `: PEM block is a "TRUSTED CERTIFICATE", not a CERTIFICATE`},
		"cut short":            {good + cut, p + ":" + itoa(lines+1) + ": PEM block is not complete"},
		"cut, then a good one": {cut + "\n" + good, p + ":1: PEM block is not complete"},
		"first block":          {broken + good, p + ":1: certificate does not parse: "},
	} {
		if err := os.WriteFile(p, []byte(c.body), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := CertPool(p)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want prefix %q", name, err, c.want)
		}
	}
}

// Bundles of good certificates load, with text between the blocks and CRLF line ends,
// and so does the system's bundle where it is installed.
func TestCertPoolLoadsBundles(t *testing.T) {
	a := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: testcert.SelfSigned(t).Certificate[0]}))
	b := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: testcert.SelfSigned(t).Certificate[0]}))
	p := filepath.Join(t.TempDir(), "ca.pem")
	body := "# Issuer: one\n" + a + "\n# Issuer: two\n" + strings.ReplaceAll(b, "\n", "\r\n")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	pool, err := CertPool(p)
	if err != nil {
		t.Fatal(err)
	}
	if !pool.Equal(poolOf(t, a, b)) {
		t.Error("the pool does not hold both certificates")
	}
	const system = "/etc/ssl/certs/ca-certificates.crt"
	if _, err := os.Stat(system); err == nil {
		if _, err := CertPool(system); err != nil {
			t.Errorf("%s: %v", system, err)
		}
	}
}

func poolOf(t *testing.T, certs ...string) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	for _, c := range certs {
		if !pool.AppendCertsFromPEM([]byte(c)) {
			t.Fatal("test certificate does not load")
		}
	}
	return pool
}

func itoa(n int) string { return strconv.Itoa(n) }

// Any bytes as a CA file: CertPool never panics, and a bundle it takes holds at least
// one certificate, each PEM block begun in it one that parses.
func FuzzCertPool(f *testing.F) {
	good := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: testcert.SelfSigned(f).Certificate[0]})
	f.Add(good)
	f.Add(append([]byte("# a\n"), good...))
	f.Add(good[:len(good)/2])
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("-----BEGIN "))
	p := filepath.Join(f.TempDir(), "ca.pem")
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		pool, err := CertPool(p)
		if err != nil {
			if pool != nil {
				t.Error("a pool with an error")
			}
			return
		}
		n := 0
		for rest := b; ; {
			var block *pem.Block
			if block, rest = pem.Decode(rest); block == nil {
				break
			}
			if _, err := x509.ParseCertificate(block.Bytes); err != nil || block.Type != "CERTIFICATE" {
				t.Fatalf("taken with a block that is not a parsable certificate: %q", block.Type)
			}
			n++
		}
		if n == 0 {
			t.Fatal("taken with no certificate")
		}
		if begins := strings.Count(string(b), "-----BEGIN "); begins != n {
			t.Fatalf("taken with %d PEM blocks begun, %d certificates read", begins, n)
		}
	})
}
