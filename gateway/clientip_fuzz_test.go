package gateway

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
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

// FuzzClientIPForwarded: whatever Forwarded lines a client sends, the element its
// trusted proxy appends after them (in the same line after a comma, or in a line of
// its own) names the client; from an untrusted peer the client is always the peer;
// and any other answer is an address one of the header's for= names.
func FuzzClientIPForwarded(f *testing.F) {
	for _, s := range []string{
		`for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711"`,
		`for=unknown, for=10.0.0.9`, `for=_hidden`, `FOR = "192.0.2.43:_p1" ; proto=https`,
		`for="6.6.6.6, for=10.0.0.1`, `ext="a\"b, for=10.0.0.1", for=203.0.113.5`,
		`for=2001:db8::1, for="[fe80::1%eth0]:443"`, `, ;, for=10.1.1.1;for=10.1.1.2`,
		`for="\\", for=203.0.113.5`, `for="[::ffff:192.168.0.5]"`,
	} {
		f.Add(s, true)
	}
	trusted, _ := parseTrustedProxies([]string{"10.0.0.0/8", "::ffff:192.168.0.0/112", "2001:db8:ffff::/48"})
	proxy := net.ParseIP("10.1.2.3")
	f.Fuzz(func(t *testing.T, fwd string, fromProxy bool) {
		peer := net.ParseIP("198.51.100.7")
		if fromProxy {
			peer = proxy
		}
		var buf [16]byte
		got := net.IP(clientIPForwarded(peer, [][]byte{[]byte(fwd)}, trusted, &buf))
		switch {
		case got.Equal(peer):
		case !fromProxy:
			t.Fatalf("untrusted peer: got %v from Forwarded %q", got, fwd)
		default:
			a, ok := netip.AddrFromSlice(got)
			if !ok {
				t.Fatalf("got %v, not an address", got)
			}
			named := false
			for _, piece := range strings.FieldsFunc(fwd, func(r rune) bool { return r == ',' || r == ';' }) {
				if h, ok := forwardedFor([]byte(piece)); ok && h.Unmap() == a.Unmap() {
					named = true
				}
			}
			if !named {
				t.Fatalf("got %v, which no for= of Forwarded %q names", a, fwd)
			}
		}
		for _, c := range []struct {
			lines [][]byte
			want  string
		}{
			{[][]byte{[]byte(fwd + `, for="[2001:db8:5::9]:443"`)}, "2001:db8:5::9"},
			{[][]byte{[]byte(fwd), []byte(`for=203.0.113.9;proto=https`)}, "203.0.113.9"},
		} {
			if got := net.IP(clientIPForwarded(proxy, c.lines, trusted, &buf)); !got.Equal(net.ParseIP(c.want)) {
				t.Fatalf("Forwarded %q: got %v, want %s, the client the proxy's own element names", c.lines, got, c.want)
			}
		}
	})
}
