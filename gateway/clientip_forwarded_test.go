package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/tollgate/tollgate/providers/mockllm"
)

// TestClientIPForwarded: Forwarded (RFC 7239) is walked from the right as
// X-Forwarded-For is: each element's for= is its hop, in the forms proxies write it
// (a token or a quoted-string, IPv6 in brackets, a port or an obfuscated one), with
// parameter names in any case, other parameters around it and spaces about ; and ,.
// Whatever names no address (unknown, an obfuscated identifier, a malformed element)
// ends the walk at the last trusted hop; a quote a client leaves open cannot swallow
// the elements its proxy appends.
func TestClientIPForwarded(t *testing.T) {
	trusted, _ := parseTrustedProxies([]string{"10.0.0.0/8", "fd00::/8"})
	const proxy = "10.1.2.3"
	cases := []struct {
		name, peer, fwd string
		trusted         trustedProxies
		want            string
	}{
		{"RFC 7239's example: the rightmost element", proxy, `for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711"`, trusted, "2001:db8:cafe::17"},
		{"a trusted hop is walked past", proxy, `for=192.0.2.60;proto=http;by=203.0.113.43, for=10.0.0.7`, trusted, "192.0.2.60"},
		{"a spoofed left part does not count", proxy, `for=6.6.6.6, for=198.51.100.20`, trusted, "198.51.100.20"},
		{"all hops trusted: the leftmost", proxy, `for=10.0.0.5, for=10.0.0.6`, trusted, "10.0.0.5"},
		{"IPv4 with a port, quoted", proxy, `for="192.0.2.43:47011"`, trusted, "192.0.2.43"},
		{"IPv4 with a port, unquoted", proxy, `for=192.0.2.43:47011`, trusted, "192.0.2.43"},
		{"IPv6 in brackets, quoted", proxy, `for="[2001:db8:cafe::17]"`, trusted, "2001:db8:cafe::17"},
		{"IPv6 bare, as nginx's for=$remote_addr writes it", proxy, `for=2001:db8::17`, trusted, "2001:db8::17"},
		{"IPv6 bare, quoted", proxy, `for="2001:db8::17"`, trusted, "2001:db8::17"},
		{"IPv4-mapped in brackets", proxy, `for="[::ffff:192.0.2.60]:443"`, trusted, "192.0.2.60"},
		{"obfuscated port after IPv6", proxy, `for="[2001:db8::17]:_p1"`, trusted, "2001:db8::17"},
		{"obfuscated port after IPv4", proxy, `for="192.0.2.43:_x.y-1"`, trusted, "192.0.2.43"},
		{"parameter names in any case", proxy, `FOR=192.0.2.60;Proto=https, For="[fd00::9]"`, trusted, "192.0.2.60"},
		{"for after other parameters", proxy, `proto=https;by=10.0.0.1;host=api.example;for=192.0.2.60`, trusted, "192.0.2.60"},
		{"spaces around ; , and =", proxy, ` for = 192.0.2.60 ; proto=https ,  for=10.0.0.7 `, trusted, "192.0.2.60"},
		{"tabs around ;", proxy, "for=192.0.2.60\t;\tproto=http", trusted, "192.0.2.60"},
		{"empty pairs", proxy, `;for=192.0.2.60;;proto=https;`, trusted, "192.0.2.60"},
		{"empty elements", proxy, `, ,for=192.0.2.60,, for=10.0.0.7 ,`, trusted, "192.0.2.60"},
		{"a comma and a semicolon quoted in another parameter", proxy, `for=192.0.2.60;ext="a, b; c", for=10.0.0.7`, trusted, "192.0.2.60"},
		{"a for= quoted in another parameter is no hop", proxy, `for=6.6.6.6, for=192.0.2.60;ext="x, for=10.0.0.1"`, trusted, "192.0.2.60"},
		{"an escaped quote in another parameter", proxy, `for=192.0.2.60;ext="a\"b, c", for=10.0.0.7`, trusted, "192.0.2.60"},
		{"an escaped backslash before the closing quote", proxy, `for=192.0.2.60;ext="a\\", for=10.0.0.7`, trusted, "192.0.2.60"},
		{"a client's open quote cannot swallow its proxy's element", proxy, `for="6.6.6.6, for=192.0.2.60`, trusted, "192.0.2.60"},
		// Several header lines (here split by \n) are one list.
		{"a proxy's own line after the client's", proxy, "for=6.6.6.1\nfor=192.0.2.60;proto=https", trusted, "192.0.2.60"},
		{"trusted hops across lines", proxy, "for=6.6.6.1, for=192.0.2.60\nfor=10.0.0.7\nfor=10.0.0.8, for=10.0.0.9", trusted, "192.0.2.60"},
		{"a quote open in an earlier line stays there", proxy, "for=\"6.6.6.1\nfor=192.0.2.60", trusted, "192.0.2.60"},
		// What names no address ends the walk at the last trusted hop.
		{"unknown ends the walk", proxy, `for=192.0.2.60, for=unknown, for=10.0.0.7`, trusted, "10.0.0.7"},
		{"unknown next to the proxy: the proxy", proxy, `for=192.0.2.60, for=unknown`, trusted, proxy},
		{"UNKNOWN in capitals", proxy, `for=UNKNOWN`, trusted, proxy},
		{"an obfuscated identifier ends the walk", proxy, `for=192.0.2.60, for=_hidden, for=10.0.0.7`, trusted, "10.0.0.7"},
		{"an obfuscated identifier quoted, with a port", proxy, `for="_gazonk:4711"`, trusted, proxy},
		{"no for=", proxy, `for=192.0.2.60, proto=https;by=203.0.113.43`, trusted, proxy},
		{"for= twice in one element", proxy, `for=192.0.2.60;for=192.0.2.61`, trusted, proxy},
		{"a pair without =", proxy, `for=192.0.2.60;secure`, trusted, proxy},
		{"a pair without a name", proxy, `for=192.0.2.60;=x`, trusted, proxy},
		{"an unclosed quote", proxy, `for="192.0.2.60`, trusted, proxy},
		{"a quote inside the value", proxy, `for=192.0.2"60"`, trusted, proxy},
		{"an escape in the address", proxy, `for="192.0.2.\60"`, trusted, proxy},
		{"IPv4 in brackets", proxy, `for="[192.0.2.60]"`, trusted, proxy},
		{"a zone", proxy, `for="[fe80::1%eth0]:443"`, trusted, proxy},
		{"a port out of range", proxy, `for="192.0.2.60:70000"`, trusted, proxy},
		{"an obfuscated port with a comma", proxy, `for="192.0.2.60:_p,"`, trusted, proxy},
		{"an obfuscated port of only _", proxy, `for="192.0.2.60:_"`, trusted, proxy},
		{"an obfuscated port with a space", proxy, `for="[2001:db8::17]:_p 1"`, trusted, proxy},
		{"an empty for=", proxy, `for=`, trusted, proxy},
		{"an empty quoted for=", proxy, `for=""`, trusted, proxy},
		{"a name only", proxy, `for`, trusted, proxy},
		{"no header: the proxy", proxy, ``, trusted, proxy},
		{"an untrusted peer's header is ignored", "198.51.100.7", `for=192.0.2.60`, trusted, "198.51.100.7"},
		{"no trusted proxies: the peer", proxy, `for=192.0.2.60`, nil, proxy},
		{"an IPv6 trusted peer", "fd00::1", `for=192.0.2.60`, trusted, "192.0.2.60"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var buf [16]byte
			var fwd [][]byte
			for line := range strings.SplitSeq(c.fwd, "\n") {
				fwd = append(fwd, []byte(line))
			}
			got := net.IP(clientIPForwarded(net.ParseIP(c.peer), fwd, c.trusted, &buf))
			want := net.ParseIP(c.want)
			if !got.Equal(want) {
				t.Fatalf("Forwarded %q from %s: client %v, want %v", c.fwd, c.peer, got, want)
			}
			if want.To4() != nil && len(got) != 4 {
				t.Fatalf("IPv4 %v in %d bytes, want 4", got, len(got))
			}
		})
	}
}

func BenchmarkClientIPForwarded(b *testing.B) {
	trusted, _ := parseTrustedProxies([]string{"10.0.0.0/8", "172.16.0.0/12"})
	peer := net.ParseIP("10.1.2.3")
	fwd := [][]byte{[]byte(`for=198.51.100.1;proto=https;by="[2001:db8::1]", for=10.0.0.4`)}
	var buf [16]byte
	b.ReportAllocs()
	for b.Loop() {
		clientIPForwarded(peer, fwd, trusted, &buf)
	}
}

// forwardedGateway is a gateway behind the trusted proxy 127.0.0.1 reading header
// (server.forwarded_header; "" leaves it out) for the client, whose chat endpoint
// limits each client address to one request a minute.
func forwardedGateway(t *testing.T, up, header string) *gw {
	t.Helper()
	server := `max_body_bytes: 64KiB, trusted_proxies: ["127.0.0.1"],`
	if header != "" {
		server += ` forwarded_header: ` + header + `,`
	}
	return startGateway(t, strings.Replace(mockConfig(up, "", `
  - name: limited
    type: chat
    routes: [{backend: up}]
    limits: [{per: ip, requests: 1, window: minute}]
`), "max_body_bytes: 64KiB,", server, 1))
}

// TestPerIPLimitBehindForwardedProxy: with server.forwarded_header: forwarded, per: ip
// limits and the access log count the client Forwarded names behind a trusted proxy
// (nginx setting Forwarded as its docs show, or the OpenAI SDK playing the proxy with
// the lines proxies send), and X-Forwarded-For, which a proxy that sets only Forwarded
// passes on from the client, is not read; by default Forwarded is not read.
func TestPerIPLimitBehindForwardedProxy(t *testing.T) {
	t.Parallel()
	_, up := startMock(t, mockllm.Options{MaxTokens: 2})
	fwd := forwardedGateway(t, up, "forwarded")
	xff := forwardedGateway(t, up, "")
	params := openai.ChatCompletionNewParams{Model: "limited", Messages: userMsg("hi"), MaxTokens: openai.Int(2)}
	status := func(g *gw, opts ...option.RequestOption) int {
		t.Helper()
		c := g.client()
		_, err := c.Chat.Completions.New(context.Background(), params, opts...)
		var apiErr *openai.Error
		switch {
		case err == nil:
			return 200
		case errors.As(err, &apiErr):
			return apiErr.StatusCode
		}
		t.Fatal(err)
		return 0
	}
	hdr := option.WithHeaderAdd
	for _, c := range []struct {
		name string
		g    *gw
		opts []option.RequestOption
		want []int
	}{
		{"the RFC's example: the rightmost element's client", fwd, []option.RequestOption{
			hdr("Forwarded", `for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711"`),
		}, []int{200, 429}},
		{"another client: a bucket of its own, the left part spoofed", fwd, []option.RequestOption{
			hdr("Forwarded", `for="[2001:db8:cafe::17]:4711"`), hdr("Forwarded", `For="203.0.113.5:4711" ; proto=https`),
		}, []int{200, 429}},
		{"X-Forwarded-For is not read: the proxy's bucket", fwd, []option.RequestOption{
			hdr("X-Forwarded-For", "203.0.113.77"),
		}, []int{200, 429}},
		{"by default Forwarded is not read: X-Forwarded-For's client", xff, []option.RequestOption{
			hdr("Forwarded", "for=203.0.113.5"), hdr("X-Forwarded-For", "203.0.113.6"),
		}, []int{200, 429}},
		{"by default, a client's Forwarded escapes nothing", xff, []option.RequestOption{
			hdr("Forwarded", "for=203.0.113.7"), hdr("X-Forwarded-For", "203.0.113.6"),
		}, []int{429}},
	} {
		t.Run(c.name, func(t *testing.T) {
			for i, want := range c.want {
				if got := status(c.g, c.opts...); got != want {
					t.Fatalf("request %d: %d, want %d", i+1, got, want)
				}
			}
		})
	}
	// clients are the access log's client_ip of g's first n requests.
	clients := func(g *gw, n int) []string {
		t.Helper()
		nextAccessLine(t, g, n-1)
		var out []string
		for _, l := range accessLines(g)[:n] {
			out = append(out, l["client_ip"].(string))
		}
		return out
	}
	if got := clients(fwd, 6); !slices.Equal(got, []string{"2001:db8:cafe::17", "2001:db8:cafe::17", "203.0.113.5", "203.0.113.5", "127.0.0.1", "127.0.0.1"}) {
		t.Errorf("access log client_ip behind a Forwarded proxy: %q", got)
	}
	if got := clients(xff, 3); !slices.Equal(got, []string{"203.0.113.6", "203.0.113.6", "203.0.113.6"}) {
		t.Errorf("access log client_ip behind an X-Forwarded-For proxy: %q", got)
	}

	// nginx in front, appending its client to Forwarded (from 127.0.0.9 and
	// 127.0.0.10; the Forwarded and X-Forwarded-For the clients send name others).
	ng := nginxInFront(t, fwd.Addr(), "", `proxy_set_header Forwarded "$http_forwarded, for=$remote_addr;proto=$scheme";`)
	for _, c := range []struct {
		from string
		want int
	}{{"127.0.0.9", 200}, {"127.0.0.9", 429}, {"127.0.0.10", 200}} {
		local := &net.TCPAddr{IP: net.ParseIP(c.from)}
		hc := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: local}).DialContext}}
		defer hc.CloseIdleConnections()
		got := status(&gw{url: "http://" + ng}, option.WithHTTPClient(hc),
			hdr("Forwarded", "for=192.0.2.1"), hdr("X-Forwarded-For", "192.0.2.2"))
		if got != c.want {
			t.Fatalf("through nginx from %s: %d, want %d", c.from, got, c.want)
		}
	}
	if got := clients(fwd, 9)[6:]; !slices.Equal(got, []string{"127.0.0.9", "127.0.0.9", "127.0.0.10"}) {
		t.Errorf("access log client_ip behind nginx: %q", got)
	}
}

// server.forwarded_header takes x-forwarded-for or forwarded, in any case (header
// names); anything else is refused, naming the key and its line.
func TestConfigForwardedHeader(t *testing.T) {
	const rest = `
backends:
  up: {provider: mock, model: m}
endpoints:
  - {name: chat, type: chat, routes: [{backend: up}]}
`
	for _, v := range []string{"forwarded", "Forwarded", "x-forwarded-for", "X-Forwarded-For"} {
		cfg, problems := parseProblems(t, "server: {trusted_proxies: [10.0.0.0/8], forwarded_header: "+v+"}"+rest, nil)
		if problems != nil {
			t.Errorf("forwarded_header: %s refused: %q", v, problems)
			continue
		}
		if got, want := cfg.Server.readsForwarded(), strings.EqualFold(v, "forwarded"); got != want {
			t.Errorf("forwarded_header: %s reads Forwarded: %v, want %v", v, got, want)
		}
	}
	if cfg, _ := parseProblems(t, "server: {trusted_proxies: [10.0.0.0/8]}"+rest, nil); cfg == nil || cfg.Server.readsForwarded() {
		t.Errorf("without forwarded_header, Forwarded is read")
	}
	for _, v := range []string{"x-real-ip", "both", `""`} {
		_, problems := parseProblems(t, "server:\n  trusted_proxies: [10.0.0.0/8]\n  forwarded_header: "+v+rest, nil)
		want := "t.yaml:3: server.forwarded_header: must be x-forwarded-for or forwarded"
		if v == `""` {
			if problems != nil {
				t.Errorf("an empty forwarded_header (the default) refused: %q", problems)
			}
			continue
		}
		if !slices.Contains(problems, want) {
			t.Errorf("forwarded_header: %s: problems %q, want %q", v, problems, want)
		}
	}
}
