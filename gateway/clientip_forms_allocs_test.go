//go:build !race

package gateway

import (
	"net"
	"testing"
)

// TestClientIPHopFormsAllocs: hops with a port or in brackets, and empty elements, cost
// no allocation: the form picks the parser, no failed parse is retried.
func TestClientIPHopFormsAllocs(t *testing.T) {
	trusted, _ := parseTrustedProxies([]string{"10.0.0.0/8"})
	peer := net.ParseIP("10.1.2.3")
	xff := [][]byte{[]byte("198.51.100.1:4711, [2001:db8::7]:443, , [2001:db8::8]"), []byte("10.0.0.4:80")}
	var buf [16]byte
	if n := testing.AllocsPerRun(100, func() { clientIP(peer, xff, trusted, &buf) }); n != 0 {
		t.Fatalf("%.1f allocations per request", n)
	}
}
