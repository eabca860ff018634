package gateway

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
)

// FuzzClientIP: whatever X-Forwarded-For a client or its proxies send, the client's
// address is the peer or one the header names, never one to the left of an address
// that is not a trusted proxy, and from an untrusted peer always the peer.
func FuzzClientIP(f *testing.F) {
	for _, s := range []string{
		"203.0.113.5", "203.0.113.5, 10.0.0.9", "6.6.6.6, 203.0.113.5:4711",
		"[2001:db8::1]:443", " , ,203.0.113.5,,", "unknown, 10.0.0.9", "[fe80::1%eth0]:443",
		"::ffff:203.0.113.5", "[203.0.113.5]", "203.0.113.5:70000", "[2001:db8::1",
	} {
		f.Add(s, true)
	}
	trusted, _ := parseTrustedProxies([]string{"10.0.0.0/8", "::ffff:192.168.0.0/112", "2001:db8:ffff::/48"})
	f.Fuzz(func(t *testing.T, xff string, fromProxy bool) {
		peer := net.ParseIP("198.51.100.7")
		if fromProxy {
			peer = net.ParseIP("10.1.2.3")
		}
		var buf [16]byte
		got := net.IP(clientIP(peer, [][]byte{[]byte(xff)}, trusted, &buf))
		if got.Equal(peer) {
			return
		}
		if !fromProxy {
			t.Fatalf("untrusted peer: got %v from X-Forwarded-For %q", got, xff)
		}
		a, ok := netip.AddrFromSlice(got)
		if !ok {
			t.Fatalf("got %v, not an address", got)
		}
		// Walking the header from the right, every hop before the one returned is a
		// trusted proxy: the client's address cannot come from further left.
		a = a.Unmap()
		elems := bytes.Split([]byte(xff), []byte(","))
		for i := len(elems) - 1; ; i-- {
			if i < 0 {
				t.Fatalf("got %v, which X-Forwarded-For %q does not name", a, xff)
			}
			elem := bytes.TrimSpace(elems[i])
			if len(elem) == 0 {
				continue
			}
			h, ok := parseHop(string(elem))
			if ok && h.Unmap() == a {
				break
			}
			if !ok || !trusted.has(h.Unmap()) {
				t.Fatalf("got %v from X-Forwarded-For %q, left of %q, which is no trusted proxy", a, xff, elem)
			}
		}
	})
}
