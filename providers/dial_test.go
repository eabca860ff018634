//go:build linux

package providers

// A target named by a host with several addresses of one family (an internal load
// balancer's name, one address per zone; a headless Service's pods) is dialled with
// Happy Eyeballs over all of them (RFC 8305 section 5), not only across families: an
// address that black-holes costs a new connection 250 ms, not connect_timeout.

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/providers/mockllm"
	"github.com/valyala/fasthttp"
	"go.uber.org/goleak"
)

// Every new connection reaches the address that serves within connect_timeout,
// rather than every request failing with 504 while an address answers.
func TestDialSecondIPv4AddressServesWhenFirstBlackHoles(t *testing.T) {
	m := startMockReplica(t, mockllm.Options{Model: "m"})
	_, port, _ := net.SplitHostPort(m.addr)
	p, _ := strconv.Atoi(port)
	blackHole4(t, [4]byte{127, 0, 0, 2}, p)
	const name = "lb.tollgate.test"
	cfg := Config{Provider: "openai", BaseURL: "http://" + name + ":" + port + "/v1", Model: "m",
		ConnectTimeout: 2 * time.Second}
	cfg.resolver = fakeDNS(t, name, net.ParseIP("127.0.0.2"), net.ParseIP("127.0.0.1"))
	b := newTestBackend(t, cfg)
	for i := range 3 {
		b.targets[0].client.CloseIdleConnections()
		out := fasthttp.AcquireResponse()
		var res Result
		start := time.Now()
		err := b.Send(promptCall("hello", false), out, &res)
		took := time.Since(start)
		body := string(out.Body())
		fasthttp.ReleaseResponse(out)
		if err != nil {
			t.Fatalf("request %d failed after %v while 127.0.0.1 serves: %v", i, took.Round(time.Millisecond), err)
		}
		if !strings.Contains(body, "chat.completion") {
			t.Fatalf("request %d: answer %q", i, body)
		}
	}
}

// An IPv4 address that black-holes does not hold up the IPv6 one that serves: the
// families are still raced.
func TestDialMixedFamiliesStillRaced(t *testing.T) {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Fatalf("no IPv6 loopback (::1), which this test needs: %v", err)
	}
	defer ln.Close()
	go acceptAll(ln)
	p := ln.Addr().(*net.TCPAddr).Port
	blackHole4(t, [4]byte{127, 0, 0, 2}, p)
	const name = "mixed.tollgate.test"
	d := &dialer{resolver: fakeDNS(t, name, net.ParseIP("127.0.0.2"), net.ParseIP("::1"))}
	const connect = 3 * time.Second
	// Two dials: the rotation starts one at each address.
	for i := range 2 {
		start := time.Now()
		c, err := d.dial(context.Background(), net.JoinHostPort(name, strconv.Itoa(p)), start.Add(connect))
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		took := time.Since(start)
		got := c.RemoteAddr().String()
		_ = c.Close()
		if want := net.JoinHostPort("::1", strconv.Itoa(p)); got != want {
			t.Fatalf("dial %d connected to %s, want %s", i, got, want)
		}
		if took >= connect {
			t.Fatalf("dial %d took %v, the whole connect timeout", i, took.Round(time.Millisecond))
		}
	}
}

// A refused address starts the next attempt at once, without the attempt delay: here
// an hour, which a dial that waited for it would not survive.
func TestDialRefusedAddressTriesNextAtOnce(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go acceptAll(ln)
	p := uint16(ln.Addr().(*net.TCPAddr).Port)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addrs := []netip.AddrPort{
		netip.AddrPortFrom(netip.MustParseAddr("127.0.0.3"), p), // nothing listens: refused
		netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p),
	}
	c, err := dialAddrs(ctx, "refused.tollgate.test", addrs, time.Hour, dialAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.RemoteAddr().String(); got != addrs[1].String() {
		t.Fatalf("connected to %s, want %s", got, addrs[1])
	}
}

// A name none of whose addresses connects fails with the error of the address tried
// first, of the kind the gateway maps: a refusal is ErrConnect at once, black holes
// are ErrTimeout within connect_timeout.
func TestDialEveryAddressFails(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	blackHole4(t, [4]byte{127, 0, 0, 4}, p)
	blackHole4(t, [4]byte{127, 0, 0, 5}, p)
	const connect = time.Second
	for _, tc := range []struct {
		name string
		ips  []net.IP
		kind error
		msg  string
	}{
		{"refused", []net.IP{net.ParseIP("127.0.0.2"), net.ParseIP("127.0.0.3")}, ErrConnect,
			"dial tcp 127.0.0.2:" + strconv.Itoa(p) + ": connect: connection refused (all.tollgate.test's other addresses: 1 refused)"},
		{"black holes", []net.IP{net.ParseIP("127.0.0.4"), net.ParseIP("127.0.0.5")}, ErrTimeout,
			"dial tcp 127.0.0.4:" + strconv.Itoa(p) + ": i/o timeout (all.tollgate.test's other addresses: 1 timed out)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const name = "all.tollgate.test"
			cfg := Config{Provider: "openai", BaseURL: "http://" + name + ":" + strconv.Itoa(p) + "/v1", Model: "m",
				ConnectTimeout: connect}
			cfg.resolver = fakeDNS(t, name, tc.ips...)
			b := newTestBackend(t, cfg)
			out := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseResponse(out)
			var res Result
			start := time.Now()
			err := b.Send(promptCall("hello", false), out, &res)
			took := time.Since(start)
			if !errors.Is(err, tc.kind) {
				t.Fatalf("error %v, want %v", err, tc.kind)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %q does not say %q", err, tc.msg)
			}
			if took > connect+500*time.Millisecond {
				t.Fatalf("failed after %v, connect_timeout is %v", took.Round(time.Millisecond), connect)
			}
		})
	}
}

// With a DNS answer whose order never changes, new connections still spread over the
// addresses: each dial starts one further on.
func TestDialRotatesFirstAddress(t *testing.T) {
	ln1, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln1.Close()
	p := ln1.Addr().(*net.TCPAddr).Port
	ln2, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.2", strconv.Itoa(p)))
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	go acceptAll(ln1)
	go acceptAll(ln2)
	const name = "pods.tollgate.test"
	d := &dialer{resolver: fakeDNS(t, name, net.ParseIP("127.0.0.1"), net.ParseIP("127.0.0.2"))}
	var got []string
	for range 4 {
		c, err := d.dial(context.Background(), net.JoinHostPort(name, strconv.Itoa(p)), time.Now().Add(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		got = append(got, host)
		_ = c.Close()
	}
	if want := []string{"127.0.0.1", "127.0.0.2", "127.0.0.1", "127.0.0.2"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("dials connected to %v, want %v", got, want)
	}
}

// An IP literal is dialled as it is: the resolver is never asked.
func TestDialLiteralNotLookedUp(t *testing.T) {
	for _, tc := range []struct{ name, network, listen string }{
		{"IPv4", "tcp4", "127.0.0.1:0"},
		{"IPv6", "tcp6", "[::1]:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen(tc.network, tc.listen)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go acceptAll(ln)
			asked := false
			d := &dialer{resolver: &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
				asked = true
				return nil, errors.New("no resolver here")
			}}}
			c, err := d.dial(context.Background(), ln.Addr().String(), time.Now().Add(5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			_ = c.Close()
			if asked {
				t.Fatal("the resolver was asked for an IP literal")
			}
		})
	}
}

// Attempts that lose are cancelled and a connection one made anyway is closed before
// the dial returns; no goroutine is left behind, whether an attempt wins or the
// deadline ends them all.
func TestDialCancelLeavesNoConnection(t *testing.T) {
	t.Run("a connection that lost is closed", func(t *testing.T) {
		defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
		lnA, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer lnA.Close()
		lnB, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer lnB.Close()
		a := netip.MustParseAddrPort(lnA.Addr().String())
		b := netip.MustParseAddrPort(lnB.Addr().String())
		// A connects, but only reports once the dial is cancelled: B, started after
		// it, wins.
		connect := func(ctx context.Context, ap netip.AddrPort) (net.Conn, error) {
			c, err := dialAddr(context.Background(), ap)
			if ap == a && err == nil {
				<-ctx.Done()
			}
			return c, err
		}
		c, err := dialAddrs(context.Background(), "race.tollgate.test", []netip.AddrPort{a, b}, 0, connect)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if got := c.RemoteAddr().String(); got != b.String() {
			t.Fatalf("connected to %s, want %s", got, b)
		}
		sa, err := lnA.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer sa.Close()
		_ = sa.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := sa.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("the losing connection is open: read %d, %v", n, err)
		}
		sb, err := lnB.Accept()
		if err != nil {
			t.Fatal(err)
		}
		_ = sb.Close()
	})
	t.Run("the deadline ends every attempt", func(t *testing.T) {
		defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		blackHole4(t, [4]byte{127, 0, 0, 6}, p)
		blackHole4(t, [4]byte{127, 0, 0, 7}, p)
		addrs := []netip.AddrPort{
			netip.AddrPortFrom(netip.MustParseAddr("127.0.0.6"), uint16(p)),
			netip.AddrPortFrom(netip.MustParseAddr("127.0.0.7"), uint16(p)),
			netip.AddrPortFrom(netip.MustParseAddr("127.0.0.8"), uint16(p)),
		}
		ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
		defer cancel()
		// The third address's turn would come after the deadline.
		_, err = dialAddrs(ctx, "holes.tollgate.test", addrs, 400*time.Millisecond, dialAddr)
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("error %v, want a timeout", err)
		}
		want := "dial tcp " + addrs[0].String() + ": i/o timeout (holes.tollgate.test's other addresses: 1 timed out, 1 not tried in time)"
		if err.Error() != want {
			t.Fatalf("error %q, want %q", err, want)
		}
	})
}

func TestAttemptOrder(t *testing.T) {
	v4a, v4b, v4c := net.ParseIP("10.0.0.1"), net.ParseIP("10.0.0.2"), net.ParseIP("10.0.0.3")
	v6a, v6b := net.ParseIP("2001:db8::1"), net.ParseIP("2001:db8::2")
	for _, tc := range []struct {
		name string
		ips  []net.IP
		turn uint32
		want string
	}{
		{"one family keeps the resolver's order", []net.IP{v4a, v4b, v4c}, 0, "10.0.0.1 10.0.0.2 10.0.0.3"},
		{"families interleaved, IPv6 sorted first", []net.IP{v6a, v6b, v4a, v4b}, 0, "[2001:db8::1] 10.0.0.1 [2001:db8::2] 10.0.0.2"},
		{"families interleaved, IPv4 sorted first", []net.IP{v4a, v4b, v4c, v6a}, 0, "10.0.0.1 [2001:db8::1] 10.0.0.2 10.0.0.3"},
		{"the turn rotates the start", []net.IP{v4a, v4b, v4c}, 1, "10.0.0.2 10.0.0.3 10.0.0.1"},
		{"each family's turn wraps round on its own", []net.IP{v6a, v4a, v4b}, 5, "[2001:db8::1] 10.0.0.2 10.0.0.1"},
		{"the turn rotates within each family, the families still interleaved", []net.IP{v4a, v4b, v4c, v6a}, 1, "10.0.0.2 [2001:db8::1] 10.0.0.3 10.0.0.1"},
		{"the resolver's first family leads on every turn", []net.IP{v6a, v6b, v4a}, 1, "[2001:db8::2] 10.0.0.1 [2001:db8::1]"},
		{"IPv4 in 16 bytes is IPv4", []net.IP{v4a.To16(), v6a}, 0, "10.0.0.1 [2001:db8::1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ips := make([]net.IPAddr, len(tc.ips))
			for i, ip := range tc.ips {
				ips[i] = net.IPAddr{IP: ip}
			}
			var got []string
			for _, a := range attemptOrder(ips, 8000, tc.turn) {
				got = append(got, strings.TrimSuffix(a.String(), ":8000"))
			}
			if g := strings.Join(got, " "); g != tc.want {
				t.Fatalf("order %s, want %s", g, tc.want)
			}
		})
	}
}

// acceptAll accepts connections on ln, and closes each, until ln is closed.
func acceptAll(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_ = c.Close()
	}
}

// blackHole4 makes ip:port (an IPv4 loopback address) one that never answers a SYN,
// as blackHole6 does for [::1]: a listener with its accept queue full.
func blackHole4(t *testing.T, ip [4]byte, port int) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: port, Addr: ip}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(net.IP(ip[:]).String(), strconv.Itoa(port))
	for range 16 {
		c, err := net.DialTimeout("tcp4", addr, 300*time.Millisecond)
		if err == nil {
			t.Cleanup(func() { _ = c.Close() })
			continue
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return
		}
		t.Fatalf("filling the accept queue of %s: %v", addr, err)
	}
	t.Fatalf("%s still completes handshakes with its accept queue full", addr)
}
