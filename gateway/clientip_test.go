package gateway

import (
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/providers/mockllm"
)

func TestClientIP(t *testing.T) {
	trusted, bad := parseTrustedProxies([]string{"10.0.0.0/8", "192.168.1.5", "fd00::/8"})
	if bad != "" {
		t.Fatal(bad)
	}
	cases := []struct {
		name, peer, xff string
		trusted         trustedProxies
		want            string
	}{
		{"no trusted proxies: the peer", "10.1.2.3", "203.0.113.5", nil, "10.1.2.3"},
		{"an untrusted peer's header is ignored", "198.51.100.7", "203.0.113.5", trusted, "198.51.100.7"},
		{"a trusted peer: the client it names", "10.1.2.3", "203.0.113.5", trusted, "203.0.113.5"},
		{"the rightmost untrusted hop", "10.1.2.3", "1.1.1.1, 203.0.113.5, 10.9.9.9", trusted, "203.0.113.5"},
		{"a spoofed left part does not count", "10.1.2.3", "6.6.6.6, 198.51.100.20", trusted, "198.51.100.20"},
		{"all hops trusted: the leftmost", "10.1.2.3", "192.168.1.5, 10.0.0.1", trusted, "192.168.1.5"},
		{"garbage ends the walk at the last trusted hop", "10.1.2.3", "203.0.113.5, unknown, 10.0.0.9", trusted, "10.0.0.9"},
		{"garbage next to the proxy: the proxy", "10.1.2.3", "203.0.113.5, unknown", trusted, "10.1.2.3"},
		{"a client with its port", "10.1.2.3", "203.0.113.5:4711", trusted, "203.0.113.5"},
		{"no header: the proxy", "10.1.2.3", "", trusted, "10.1.2.3"},
		{"IPv6 client", "fd00::1", "2001:db8::7", trusted, "2001:db8::7"},
		{"v4-mapped peer is trusted as IPv4", "::ffff:10.1.2.3", "203.0.113.5", trusted, "203.0.113.5"},
		{"v4-mapped hop in the header", "10.1.2.3", "::ffff:203.0.113.5", trusted, "203.0.113.5"},
		{"spaces and empty elements", "10.1.2.3", " 203.0.113.5 ,", trusted, "203.0.113.5"},
		// Several header lines (here split by \n) are one list.
		{"a proxy's own line after the client's", "10.1.2.3", "6.6.6.1\n203.0.113.5", trusted, "203.0.113.5"},
		{"trusted hops across lines", "10.1.2.3", "6.6.6.1, 203.0.113.5\n10.0.0.7\n10.0.0.8, 10.0.0.9", trusted, "203.0.113.5"},
		{"garbage in a later line ends the walk", "10.1.2.3", "203.0.113.5\nunknown", trusted, "10.1.2.3"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var buf [16]byte
			var xff [][]byte
			for line := range strings.SplitSeq(c.xff, "\n") {
				xff = append(xff, []byte(line))
			}
			got := net.IP(clientIP(net.ParseIP(c.peer), xff, c.trusted, &buf))
			want := net.ParseIP(c.want)
			if !got.Equal(want) {
				t.Fatalf("clientIP = %v, want %v", got, want)
			}
			if want.To4() != nil && len(got) != 4 {
				t.Fatalf("IPv4 %v in %d bytes, want 4", got, len(got))
			}
		})
	}
	if _, bad := parseTrustedProxies([]string{"10.0.0.0/8", "not-an-ip"}); bad != "not-an-ip" {
		t.Errorf("bad entry reported as %q", bad)
	}
}

func BenchmarkClientIP(b *testing.B) {
	trusted, _ := parseTrustedProxies([]string{"10.0.0.0/8", "172.16.0.0/12"})
	peer := net.ParseIP("10.1.2.3")
	xff := [][]byte{[]byte("198.51.100.1, 10.0.0.4")}
	var buf [16]byte
	b.ReportAllocs()
	for b.Loop() {
		clientIP(peer, xff, trusted, &buf)
	}
}

// TestPerIPLimitBehindProxy: behind a trusted load balancer, per: ip limits count the
// client X-Forwarded-For names, each client in its own bucket, and the access log's
// client_ip is that client; without trusted_proxies (or from a peer not in them) the
// header is ignored, so it cannot be used to escape a limit.
func TestPerIPLimitBehindProxy(t *testing.T) {
	t.Parallel()
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	limits := `
  - name: limited
    type: chat
    routes: [{backend: up}]
    limits: [{per: ip, requests: 2, window: minute}]
`
	behind := startGateway(t, strings.Replace(mockConfig(up, "", limits), "max_body_bytes: 64KiB,", `max_body_bytes: 64KiB, trusted_proxies: ["127.0.0.0/8"],`, 1))
	direct := startGateway(t, mockConfig(up, "", limits))
	post := func(g *gw, xff string) int {
		t.Helper()
		resp, _ := postRaw(t, http.DefaultClient, g.url+"/v1/chat/completions",
			`{"model":"limited","messages":[{"role":"user","content":"hi"}]}`, map[string]string{"X-Forwarded-For": xff})
		return resp.StatusCode
	}
	for i, want := range []int{200, 200, 429} {
		if got := post(behind, "203.0.113.5"); got != want {
			t.Fatalf("behind a proxy, client A request %d: %d, want %d", i+1, got, want)
		}
	}
	if got := post(behind, "203.0.113.6"); got != 200 {
		t.Fatalf("behind a proxy, client B: %d, want 200 (a bucket of its own)", got)
	}
	if got := post(behind, "6.6.6.6, 203.0.113.5"); got != 429 {
		t.Fatalf("client A with a spoofed address on the left: %d, want 429", got)
	}
	for i, xff := range []string{"203.0.113.5", "203.0.113.6", "203.0.113.7"} {
		want := 200
		if i == 2 {
			want = 429
		}
		if got := post(direct, xff); got != want {
			t.Fatalf("without trusted_proxies, request %d naming %s: %d, want %d (one bucket: the peer's)", i+1, xff, got, want)
		}
	}
	// The access log shows the same address the limits counted.
	if logs := behind.logs.String(); !strings.Contains(logs, `"client_ip":"203.0.113.6"`) || strings.Contains(logs, `"client_ip":"6.6.6.6"`) {
		t.Errorf("access log behind the proxy:\n%s", logs)
	}
	if logs := direct.logs.String(); !strings.Contains(logs, `"client_ip":"127.0.0.1"`) || strings.Contains(logs, `"client_ip":"203.0.113`) {
		t.Errorf("access log without trusted proxies:\n%s", logs)
	}
}

// TestPerIPLimitIPv6Prefix: with limiter.ipv6_prefix: 64, per: ip limits count IPv6
// clients by their /64 (one host's subnet, whose 2^64 addresses one client may rotate
// through to escape a per-address limit); IPv4 clients and IPv4-mapped ones by their
// address; the access log still names the address itself. Without it, each address
// has its own bucket.
func TestPerIPLimitIPv6Prefix(t *testing.T) {
	t.Parallel()
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	limits := `
  - name: limited
    type: chat
    routes: [{backend: up}]
    limits: [{per: ip, requests: 1, window: minute}]
`
	cfg := strings.Replace(mockConfig(up, "", limits), "max_body_bytes: 64KiB,", `max_body_bytes: 64KiB, trusted_proxies: ["127.0.0.0/8"],`, 1)
	grouped := startGateway(t, cfg+"limiter: {ipv6_prefix: 64}\n")
	single := startGateway(t, cfg)
	post := func(g *gw, xff string) int {
		t.Helper()
		resp, _ := postRaw(t, http.DefaultClient, g.url+"/v1/chat/completions",
			`{"model":"limited","messages":[{"role":"user","content":"hi"}]}`, map[string]string{"X-Forwarded-For": xff})
		return resp.StatusCode
	}
	for _, c := range []struct {
		xff            string
		grouped, alone int
	}{
		{"2001:db8:1:2::1", 200, 200},
		{"2001:db8:1:2:ffff:ffff:ffff:fffe", 429, 200}, // the same /64
		{"2001:db8:1:3::1", 200, 200},                  // the next /64
		{"203.0.113.5", 200, 200},
		{"203.0.113.6", 200, 200}, // IPv4: by address
		{"::ffff:198.51.100.1", 200, 200},
		{"::ffff:198.51.100.2", 200, 200}, // IPv4-mapped: by address
	} {
		if got := post(grouped, c.xff); got != c.grouped {
			t.Errorf("ipv6_prefix 64, client %s: observed %d; expected %d", c.xff, got, c.grouped)
		}
		if got := post(single, c.xff); got != c.alone {
			t.Errorf("no ipv6_prefix, client %s: observed %d; expected %d", c.xff, got, c.alone)
		}
	}
	if logs := grouped.logs.String(); !strings.Contains(logs, `"client_ip":"2001:db8:1:2:ffff:ffff:ffff:fffe"`) {
		t.Errorf("the access log does not name the client's own address:\n%s", logs)
	}
}

// subjectIP cuts an IPv6 address to its prefix at any bit, leaves IPv4 and
// IPv4-mapped addresses whole, and allocates nothing.
func TestSubjectIP(t *testing.T) {
	var buf [16]byte
	for _, c := range []struct {
		ip   string
		bits int
		want string
	}{
		{"2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::"},
		{"2001:db8:1:2:3:4:5:6", 128, "2001:db8:1:2:3:4:5:6"},
		{"2001:db8:1:2:3:4:5:6", 56, "2001:db8:1::"},
		{"2001:db8:1:2ff:3:4:5:6", 60, "2001:db8:1:2f0::"},
		{"2001:db8:ffff:ffff::1", 33, "2001:db8:8000::"},
		{"203.0.113.5", 64, "203.0.113.5"},
		{"::ffff:203.0.113.5", 64, "203.0.113.5"},
	} {
		ip := net.ParseIP(c.ip)
		if v4 := ip.To4(); v4 != nil && !strings.HasPrefix(c.ip, "::ffff:") {
			ip = v4
		}
		got := net.IP(subjectIP(ip, c.bits, &buf))
		if !got.Equal(net.ParseIP(c.want)) {
			t.Errorf("subjectIP(%s, %d) = %v, want %s", c.ip, c.bits, got, c.want)
		}
	}
	ip := net.ParseIP("2001:db8:1:2:3:4:5:6")
	if n := allocsPerRun(100, func() { subjectIP(ip, 64, &buf) }); n != 0 {
		t.Errorf("subjectIP allocates %v times", n)
	}
}
