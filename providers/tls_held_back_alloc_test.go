//go:build !race

package providers

import (
	"crypto/tls"
	"io"
	"testing"
)

// At the end of an answer that came in records of its own, on every TLS answer's
// path, the records settle the look into the TLS client, which allocates nothing.
func TestTLSHeldBackAllocations(t *testing.T) {
	u, srv, _ := tlsLoopbackPair(t, tls.VersionTLS13)
	buf := make([]byte, 64)
	// The first answer's reads take the session tickets that come ahead of it.
	for range 2 {
		_, _ = io.WriteString(srv, "answer")
		if n, err := u.Read(buf); err != nil || string(buf[:n]) != "answer" {
			t.Fatalf("read %q, %v", buf[:n], err)
		}
		if u.heldBack() {
			t.Fatal("heldBack found bytes behind an answer that came alone")
		}
	}
	if u.records.beyond || !u.drained {
		t.Fatalf("records beyond the answer's: %v, its plaintext drained: %v; want the records to settle the look", u.records.beyond, u.drained)
	}
	if n := testing.AllocsPerRun(1000, func() { u.heldBack() }); n != 0 {
		t.Errorf("%v allocations per look, want 0", n)
	}
}
