//go:build !race

package gateway

import (
	"net"
	"testing"

	"github.com/valyala/fasthttp"
)

// TestClientIPHopFormsAllocs: hops with a port or in brackets, and empty elements, cost
// no allocation: the form picks the parser, no failed parse is retried.
func TestClientIPHopFormsAllocs(t *testing.T) {
	trusted, _ := parseTrustedProxies([]string{"10.0.0.0/8"})
	peer := net.ParseIP("10.1.2.3")
	xff := [][]byte{[]byte("198.51.100.1:4711, [2001:db8::7]:443, , [2001:db8::8]"), []byte("10.0.0.4:80")}
	var buf [16]byte
	if n := allocsPerRun(100, func() { clientIP(peer, xff, trusted, &buf) }); n != 0 {
		t.Fatalf("%.1f allocations per request", n)
	}
}

// TestClientIPForwardedAllocs: reading the client from Forwarded (its forms: quoted,
// bracketed, with ports, parameters around for=, several lines, empty elements and
// pairs, a quoted comma) costs no allocation, nor does noting it at a request's
// arrival with server.forwarded_header: forwarded.
func TestClientIPForwardedAllocs(t *testing.T) {
	trusted, _ := parseTrustedProxies([]string{"10.0.0.0/8"})
	peer := net.ParseIP("10.1.2.3")
	fwd := [][]byte{
		[]byte(`for=192.0.2.60;proto=http;by=203.0.113.43, For="[2001:db8:cafe::17]:4711";ext="a, b"`),
		[]byte(` , for="10.0.0.4:_p1" ;; proto=https, for=10.0.0.5:80`),
	}
	var buf [16]byte
	if n := allocsPerRun(100, func() { clientIPForwarded(peer, fwd, trusted, &buf) }); n != 0 {
		t.Fatalf("%.1f allocations per request", n)
	}

	s := newTestServer(t, `
server: {listen: "127.0.0.1:0", admin_listen: "127.0.0.1:0", trusted_proxies: ["10.0.0.0/8"], forwarded_header: forwarded}
backends:
  demo: {provider: mock, model: mock-1}
endpoints:
  - {name: chat, type: chat, routes: [{backend: demo}]}
`)
	ctx := &fasthttp.RequestCtx{}
	ctx.Init2(&arrivalConn{Conn: &peerConn{sinkConn: sinkConn{wake: make(chan bool, 1)}, peer: &net.TCPAddr{IP: peer, Port: 40000}}}, nopLogger{}, true)
	h := &ctx.Request.Header
	h.SetMethod(fasthttp.MethodPost)
	h.SetRequestURI("/v1/chat/completions")
	h.Add("Forwarded", `for=6.6.6.6`)
	h.Add("Forwarded", `for="[2001:db8::5]:4711";proto=https, for=10.9.9.9`)
	h.Set("X-Forwarded-For", "203.0.113.5")
	arrive := func() {
		s.connState(ctx.Conn(), fasthttp.StateActive)
		s.headerReceived(h)
	}
	arrive()
	if a := arrivalOf(ctx.Conn()); a == nil || net.IP(a.client()).String() != "2001:db8::5" {
		t.Fatalf("arrival %+v, want the client Forwarded names", a)
	}
	if n := allocsPerRun(200, arrive); n != 0 {
		t.Errorf("%.1f allocations per request arrival, budget 0", n)
	}
}

// TestClientIPForwardedObfuscatedAllocs: the identifiers proxies write on every request
// in place of an address (HAProxy's and YARP's obfuscated for=_hex, for="_hex:port",
// nginx's for=unknown) end the walk at the proxy without an allocation: no address
// parse (and its error) is tried on them.
func TestClientIPForwardedObfuscatedAllocs(t *testing.T) {
	trusted, _ := parseTrustedProxies([]string{"10.0.0.0/8"})
	peer := net.ParseIP("10.1.2.3")
	for _, c := range []struct{ name, fwd string }{
		{"HAProxy for-expr rand,hex", `proto=http;for=_000000002B1F4D63`},
		{"HAProxy hashed for with for_port", `host="haproxy.org";for="_000000007F2F367E:60138"`},
		{"YARP's default random for", `for=_gTzW4Zq1;by=_Ab12;host=api.example;proto=https`},
		{"nginx wiki's map for a unix-socket client", `for=unknown`},
	} {
		t.Run(c.name, func(t *testing.T) {
			fwd := [][]byte{[]byte(c.fwd)}
			var buf [16]byte
			if got := net.IP(clientIPForwarded(peer, fwd, trusted, &buf)); !got.Equal(peer) {
				t.Fatalf("Forwarded %q: client %v, want the proxy %v", c.fwd, got, peer)
			}
			if n := allocsPerRun(100, func() { clientIPForwarded(peer, fwd, trusted, &buf) }); n != 0 {
				t.Errorf("Forwarded %q: %.0f allocations per request, want 0", c.fwd, n)
			}
		})
	}
}
