package gateway

import (
	"bytes"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// trustedProxies are the load balancers and proxies in front of the gateway
// (server.trusted_proxies) whose X-Forwarded-For is believed.
type trustedProxies []netip.Prefix

// mappedV4 is the first IPv4-mapped IPv6 address, ::ffff:0.0.0.0.
var mappedV4 = netip.AddrFrom16([16]byte{10: 0xff, 11: 0xff})

// parseTrustedProxies reads CIDRs and single addresses; the first bad one is returned.
// Peers and hops are matched in their IPv4 form, so an IPv4-mapped CIDR (the form a
// dual-stack listener shows IPv4 peers in, ::ffff:10.0.0.0/104) is kept as its IPv4
// range, and an IPv6 one that covers all of ::ffff:0:0/96 (::/0) also as 0.0.0.0/0.
// An IPv4-mapped address with a prefix under 96 bits (::ffff:10.0.0.0/8) is bad: its
// length counts IPv6 bits, so it covers ::/8, and every IPv4 client with it, where an
// IPv4 range was meant (mappedInstead says what to write).
func parseTrustedProxies(list []string) (trustedProxies, string) {
	var out trustedProxies
	for _, s := range list {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			if p.Addr().Is4In6() && p.Bits() < 96 {
				return nil, s
			}
			p = p.Masked()
			switch {
			case p.Addr().Is4In6() && p.Bits() >= 96:
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			case p.Addr().Is6() && p.Contains(mappedV4):
				out = append(out, netip.PrefixFrom(netip.IPv4Unspecified(), 0))
			}
			out = append(out, p)
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return nil, s
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, ""
}

// mappedInstead is what to write for entry, a trusted_proxies entry parseTrustedProxies
// refused, when it is an IPv4-mapped address with a prefix under 96 bits; "" when it
// is not one.
func mappedInstead(entry string) string {
	p, err := netip.ParsePrefix(entry)
	if err != nil || !p.Addr().Is4In6() || p.Bits() >= 96 {
		return ""
	}
	if p.Bits() > 32 {
		return "an IPv6 range without the ::ffff: form, or an IPv4 range"
	}
	v4 := netip.PrefixFrom(p.Addr().Unmap(), p.Bits()).Masked()
	return v4.String() + " (or ::ffff:" + v4.Addr().String() + "/" + strconv.Itoa(p.Bits()+96) + ")"
}

func (t trustedProxies) has(a netip.Addr) bool {
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

const hdrForwardedFor = "X-Forwarded-For"

// clientIP is the address a request counts against for per: ip limits: the
// connection's peer, or, when that peer is a trusted proxy, the rightmost address of
// X-Forwarded-For that is not itself a trusted proxy (addresses a client put on the
// left cannot move it). xff holds the header's lines in order: several lines are one
// list joined by commas (RFC 9110, 5.3), and a proxy that adds a line of its own after
// the client's (HAProxy's option forwardfor) has the rightmost say. Empty elements are
// skipped; one that is not an address (parseHop) ends the walk at the last trusted hop.
// IPv4 is always in its 4-byte form, so one client has one bucket however it connects.
// The result may view buf.
func clientIP(peer net.IP, xff [][]byte, trusted trustedProxies, buf *[16]byte) []byte {
	if ip4 := peer.To4(); ip4 != nil {
		peer = ip4
	}
	if len(trusted) == 0 {
		return peer
	}
	a, ok := netip.AddrFromSlice(peer)
	if !ok || !trusted.has(a.Unmap()) {
		return peer
	}
	client := a.Unmap()
walk:
	for n := len(xff) - 1; n >= 0; n-- {
		line := xff[n]
		for len(line) > 0 {
			var elem []byte
			if i := bytes.LastIndexByte(line, ','); i >= 0 {
				elem, line = line[i+1:], line[:i]
			} else {
				elem, line = line, nil
			}
			elem = bytes.TrimSpace(elem)
			if len(elem) == 0 {
				// RFC 9110 5.6.1: empty list elements are ignored.
				continue
			}
			hop, ok := parseHop(b2s(elem))
			if !ok {
				break walk
			}
			client = hop.Unmap()
			if !trusted.has(client) {
				break walk
			}
		}
	}
	if client.Is4() {
		*(*[4]byte)(buf[:4]) = client.As4()
		return buf[:4]
	}
	*buf = client.As16()
	return buf[:]
}

// parseHop reads one X-Forwarded-For element: an address, one with a port
// (203.0.113.5:4711 and [2001:db8::1]:443, as Azure Application Gateway writes them) or
// a bracketed IPv6 one. The form picks the parser: a failed parse allocates its error.
func parseHop(s string) (netip.Addr, bool) {
	var a netip.Addr
	var err error
	switch {
	case len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']':
		a, err = netip.ParseAddr(s[1 : len(s)-1])
		if err == nil && !a.Is6() {
			return netip.Addr{}, false
		}
	case strings.HasPrefix(s, "[") || strings.Count(s, ":") == 1:
		var ap netip.AddrPort
		ap, err = netip.ParseAddrPort(s)
		a = ap.Addr()
	default:
		a, err = netip.ParseAddr(s)
	}
	return a, err == nil && a.Zone() == ""
}

// subjectIP is the client's address ip (4 or 16 bytes) as per: ip limits count it: an
// IPv6 address other than an IPv4-mapped one cut to its first bits (limiter.ipv6_prefix)
// in buf, anything else as it is.
func subjectIP(ip []byte, bits int, buf *[16]byte) []byte {
	a, ok := netip.AddrFromSlice(ip)
	if bits >= 128 || !ok || !a.Is6() || a.Is4In6() {
		return ip
	}
	*buf = netip.PrefixFrom(a, bits).Masked().Addr().As16()
	return buf[:]
}
