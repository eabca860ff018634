package providers

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// attemptDelay is RFC 8305's Connection Attempt Delay (section 5, its recommended
// value): how long a dial waits on one address before trying the next alongside.
const attemptDelay = 250 * time.Millisecond

// dialer makes a target's TCP connections with Happy Eyeballs (RFC 8305) over every
// address its name has, not only across families: net.Dialer races the two
// families but tries the addresses of one after another, giving the first at least
// 2 s or the whole timeout, so that a load balancer's name with one address per
// zone, one of which black-holes, failed every new connection that started there.
type dialer struct {
	// resolver looks up the target's name; nil is the system's.
	resolver *net.Resolver
	// turn rotates the address a dial tries first, so that new connections spread
	// over the addresses of a name whose DNS answer keeps one order (a headless
	// Service's pods behind a resolver that does not shuffle), as fasthttp's
	// TCPDialer, which this replaced, spread them.
	turn atomic.Uint32
}

// dial connects to addr (host:port) by end (zero: no bound), or until ctx ends. An IP
// literal is dialled as it is; a name is looked up for each dial, its addresses
// ordered as RFC 8305 section 4 says (families interleaved, the one the resolver
// sorted first leading), each family's addresses rotated by one from the previous
// dial's.
func (d *dialer) dial(ctx context.Context, addr string, end time.Time) (net.Conn, error) {
	if !end.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, end)
		defer cancel()
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || !isName(host) {
		// An IP literal, or an address net.Dialer finds fault with.
		var nd net.Dialer
		return nd.DialContext(ctx, "tcp", addr)
	}
	ips, err := d.resolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: err}
	}
	p, err := d.resolver.LookupPort(ctx, "tcp", port)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: err}
	}
	addrs := attemptOrder(ips, uint16(p), d.turn.Add(1)-1)
	if len(addrs) == 0 {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: &net.AddrError{Err: "no suitable address found", Addr: host}}
	}
	return dialAddrs(ctx, host, addrs, attemptDelay, dialAddr)
}

// isName reports whether host is a name to look up, not an IP address.
func isName(host string) bool {
	_, err := netip.ParseAddr(host)
	return host != "" && err != nil
}

// dialAddr connects to one address, no name to look up.
func dialAddr(ctx context.Context, a netip.AddrPort) (net.Conn, error) {
	var nd net.Dialer
	return nd.DialContext(ctx, "tcp", a.String())
}

// attemptOrder is the order in which a dial tries ips (the resolver's order, RFC 6724
// sorted) at port: each family's addresses rotated to start at their turn-th, then
// the families interleaved, starting with the first address's (RFC 8305 section 4, a
// First Address Family Count of 1). Rotating the interleaved list as a whole instead
// would on some turns put a family's addresses side by side: three IPv4 addresses that
// black-hole and one IPv6 address that serves came to [4 4 4 6], the IPv6 one tried
// 750 ms in, past many a connect_timeout, where interleaving promises it at 250 ms.
func attemptOrder(ips []net.IPAddr, port uint16, turn uint32) []netip.AddrPort {
	var first, other []netip.Addr
	for _, ip := range ips {
		a, ok := netip.AddrFromSlice(ip.IP)
		if !ok {
			continue
		}
		// The resolver gives IPv4 addresses in 16 bytes.
		a = a.Unmap()
		if a.Is6() {
			a = a.WithZone(ip.Zone)
		}
		if len(first) == 0 || a.Is4() == first[0].Is4() {
			first = append(first, a)
		} else {
			other = append(other, a)
		}
	}
	n := len(first) + len(other)
	if n == 0 {
		return nil
	}
	order := make([]netip.AddrPort, 0, n)
	for k := range max(len(first), len(other)) {
		if k < len(first) {
			order = append(order, netip.AddrPortFrom(nth(first, turn, k), port))
		}
		if k < len(other) {
			order = append(order, netip.AddrPortFrom(nth(other, turn, k), port))
		}
	}
	return order
}

// nth is the k-th of addrs (k < len(addrs)) once they are rotated to start at their
// turn-th.
func nth(addrs []netip.Addr, turn uint32, k int) netip.Addr {
	return addrs[(int(turn%uint32(len(addrs)))+k)%len(addrs)]
}

// dialEnd is one address's connection attempt's end.
type dialEnd struct {
	i    int
	conn net.Conn
	err  error
}

// dialAddrs tries addrs in their order (RFC 8305 section 5): each attempt starts delay
// after the one before it, or at once when an attempt fails (a refused connection),
// the earlier ones left running; the first to connect wins, and every other attempt
// is cancelled and any connection it made closed before dialAddrs returns, which
// leaves no goroutine behind. ctx bounds them all; no attempt starts past its
// deadline. When none connects, the error is the address tried first's, with what
// became of the others (dialError).
func dialAddrs(ctx context.Context, host string, addrs []netip.AddrPort, delay time.Duration, connect func(context.Context, netip.AddrPort) (net.Conn, error)) (net.Conn, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ends := make(chan dialEnd, len(addrs))
	errs := make([]error, len(addrs))
	timer := time.NewTimer(delay)
	defer timer.Stop()
	var won net.Conn
	next, pending := 0, 0
	launch := true
	for {
		// The first address is tried whatever is left of ctx, for its error.
		if launch && won == nil && next < len(addrs) && (next == 0 || live(ctx)) {
			go func(i int) {
				c, err := connect(ctx, addrs[i])
				ends <- dialEnd{i, c, err}
			}(next)
			next++
			pending++
			timer.Reset(delay)
		}
		launch = false
		if pending == 0 {
			break
		}
		select {
		case a := <-ends:
			pending--
			switch {
			case a.err != nil:
				errs[a.i] = a.err
				launch = true
			case won == nil:
				won = a.conn
				cancel()
			default:
				_ = a.conn.Close()
			}
		case <-timer.C:
			launch = true
		}
	}
	if won != nil {
		return won, nil
	}
	if len(addrs) == 1 {
		return nil, errs[0]
	}
	e := &dialError{first: errs[0], host: host, untried: len(addrs) - next}
	for _, err := range errs[1:next] {
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			e.timedOut++
		case errors.Is(err, syscall.ECONNREFUSED):
			e.refused++
		default:
			e.failed++
		}
	}
	return nil, e
}

// live reports whether ctx is neither cancelled nor past its deadline, which
// ctx.Err() reports only once the timer behind it has run.
func live(ctx context.Context) bool {
	end, ok := ctx.Deadline()
	return ctx.Err() == nil && (!ok || time.Now().Before(end))
}

// dialError is a dial of a name none of whose addresses connected: the error of the
// address tried first, which classify reads (a timeout stays ErrTimeout, anything else
// ErrConnect), and what became of the name's other addresses.
type dialError struct {
	first                              error
	host                               string
	timedOut, refused, failed, untried int
}

func (e *dialError) Error() string {
	b := append([]byte(e.first.Error()), " ("...)
	b = append(b, e.host...)
	b = append(b, "'s other addresses:"...)
	sep := " "
	for _, p := range [...]struct {
		n    int
		what string
	}{{e.timedOut, " timed out"}, {e.refused, " refused"}, {e.failed, " failed"}, {e.untried, " not tried in time"}} {
		if p.n > 0 {
			b = append(b, sep...)
			b = strconv.AppendInt(b, int64(p.n), 10)
			b = append(b, p.what...)
			sep = ", "
		}
	}
	return string(append(b, ')'))
}

func (e *dialError) Unwrap() error { return e.first }
