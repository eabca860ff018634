package gateway

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestClientIPHopForms: X-Forwarded-For elements a proxy writes with a port
// (Azure Application Gateway: 203.0.113.5:4711, [2001:db8::1]:443) or in brackets name
// their client, and empty list elements are skipped (RFC 9110 5.6.1), rather than
// ending the walk at the trusted proxy and counting every client behind it as one.
// What only looks like those forms still ends the walk.
func TestClientIPHopForms(t *testing.T) {
	trusted, _ := parseTrustedProxies([]string{"10.0.0.0/8"})
	cases := []struct {
		name, xff, want string
	}{
		{"IPv4 with a port", "203.0.113.5:4711", "203.0.113.5"},
		{"IPv6 in brackets with a port", "[2001:db8::1]:443", "2001:db8::1"},
		{"IPv6 in brackets", "[2001:db8::1]", "2001:db8::1"},
		{"v4-mapped in brackets with a port", "[::ffff:203.0.113.5]:443", "203.0.113.5"},
		{"a port does not let the left part count", "6.6.6.6, 203.0.113.5:4711", "203.0.113.5"},
		{"trusted hop with a port is walked past", "203.0.113.5, 10.0.0.9:80", "203.0.113.5"},
		{"empty element between trusted hops", "203.0.113.5, , 10.0.0.9", "203.0.113.5"},
		{"empty elements around the client", ",203.0.113.5,,", "203.0.113.5"},
		{"only empty elements: the proxy", " , ,", "10.1.2.3"},
		{"port without address", ":4711", "10.1.2.3"},
		{"address with an empty port", "203.0.113.5:", "10.1.2.3"},
		{"port out of range", "203.0.113.5:70000", "10.1.2.3"},
		{"IPv4 in brackets", "[203.0.113.5]", "10.1.2.3"},
		{"IPv4 in brackets with a port", "[203.0.113.5]:443", "10.1.2.3"},
		{"unclosed bracket", "[2001:db8::1", "10.1.2.3"},
		{"zone in brackets", "[fe80::1%eth0]:443", "10.1.2.3"},
		{"garbage after a client with a port ends the walk", "203.0.113.5:4711, unknown:80, 10.0.0.9", "10.0.0.9"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var buf [16]byte
			got := net.IP(clientIP(net.ParseIP("10.1.2.3"), [][]byte{[]byte(c.xff)}, trusted, &buf))
			if !got.Equal(net.ParseIP(c.want)) {
				t.Fatalf("X-Forwarded-For %q from a trusted peer: client %v, want %s", c.xff, got, c.want)
			}
		})
	}
}

// TestTrustedProxiesMappedCIDR: trusted_proxies written as IPv4-mapped IPv6 (the form a
// dual-stack listener shows IPv4 peers in) match those peers however they connect, and
// an IPv6 range that covers the whole mapped space (::/0) covers IPv4 peers too.
func TestTrustedProxiesMappedCIDR(t *testing.T) {
	cases := []struct {
		entry   string
		peer    string
		trusted bool
	}{
		{"::ffff:10.1.2.3", "10.1.2.3", true},
		{"::ffff:10.1.2.3", "::ffff:10.1.2.3", true},
		{"::ffff:10.0.0.0/104", "10.1.2.3", true},
		{"::ffff:10.0.0.0/104", "::ffff:10.1.2.3", true},
		{"::ffff:10.0.0.0/104", "11.1.2.3", false},
		{"::ffff:10.1.2.3/128", "10.1.2.3", true},
		{"::ffff:0:0/96", "10.1.2.3", true},
		{"::ffff:0:0/96", "::ffff:198.51.100.7", true},
		{"::ffff:0:0/96", "2001:db8::9", false},
		{"::/0", "10.1.2.3", true},
		{"::/0", "2001:db8::9", true},
		{"::/80", "10.1.2.3", true},
		{"2001:db8::/32", "10.1.2.3", false},
		{"2001:db8::/32", "2001:db8::9", true},
	}
	for _, c := range cases {
		t.Run(c.entry+" peer "+c.peer, func(t *testing.T) {
			trusted, bad := parseTrustedProxies([]string{c.entry})
			if bad != "" {
				t.Fatalf("%s refused", c.entry)
			}
			want := c.peer
			if c.trusted {
				want = "203.0.113.5"
			}
			var buf [16]byte
			got := net.IP(clientIP(net.ParseIP(c.peer), [][]byte{[]byte("203.0.113.5")}, trusted, &buf))
			if !got.Equal(net.ParseIP(want)) {
				t.Fatalf("trusted_proxies [%s], peer %s: client %v, want %s", c.entry, c.peer, got, want)
			}
		})
	}
}

// TestTrustedProxiesMappedShortPrefixRefused: an IPv4-mapped address with an IPv4
// prefix length ("::ffff:10.0.0.0/8") counts IPv6 bits, so it is ::/8, which covers
// every IPv4 client and would trust the X-Forwarded-For each one sends (any client
// then picks its own per: ip bucket). The config is refused, naming the key and what
// to write instead; the forms that say what they mean still load.
func TestTrustedProxiesMappedShortPrefixRefused(t *testing.T) {
	load := func(entry string) error {
		path := filepath.Join(t.TempDir(), "tollgate.yaml")
		yaml := "server: {trusted_proxies: [\"" + entry + "\"]}\nbackends:\n  up: {provider: openai, base_url: \"http://127.0.0.1:1/v1\", model: m}\nendpoints:\n  - {name: chat, type: chat, routes: [{backend: up}]}\n"
		if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadConfig(path)
		return err
	}
	for entry, instead := range map[string]string{
		"::ffff:10.0.0.0/8":    "write 10.0.0.0/8 (or ::ffff:10.0.0.0/104)",
		"::ffff:192.0.2.0/24":  "write 192.0.2.0/24 (or ::ffff:192.0.2.0/120)",
		"::ffff:10.1.0.0/64":   "write an IPv6 range without the ::ffff: form, or an IPv4 range",
		" ::ffff:10.0.0.0/16 ": "write 10.0.0.0/16 (or ::ffff:10.0.0.0/112)",
	} {
		err := load(entry)
		if err == nil || !strings.Contains(err.Error(), "server.trusted_proxies") || !strings.Contains(err.Error(), instead) {
			t.Errorf("trusted_proxies [%q]: observed %v; expected a refusal naming server.trusted_proxies and saying %q", entry, err, instead)
		}
	}
	for _, entry := range []string{"10.0.0.0/8", "::ffff:10.0.0.0/104", "::ffff:0:0/96", "::/0", "2001:db8::/32"} {
		if err := load(entry); err != nil {
			t.Errorf("trusted_proxies [%q] refused: %v", entry, err)
		}
	}
}
