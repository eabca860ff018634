package gateway

import (
	"bytes"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"
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

const (
	hdrForwardedFor = "X-Forwarded-For"
	hdrForwarded    = "Forwarded"
)

// readsForwarded is whether server.forwarded_header picks the standard Forwarded
// header (RFC 7239) over X-Forwarded-For. Exactly one of the two is read: a proxy sets
// one of them and passes the other on from the client as it came, so reading both
// would let a client write its own address into the one its proxies leave alone.
func (s *ServerConfig) readsForwarded() bool {
	return strings.EqualFold(s.ForwardedHeader, forwardedRFC7239)
}

// The values server.forwarded_header takes; header names, so in any case.
const (
	forwardedXFF     = "x-forwarded-for"
	forwardedRFC7239 = "forwarded"
)

// requestClient is the client's address of the request ctx holds under rt (nil: none
// loaded yet): the peer, or behind rt's trusted proxies the one the header
// server.forwarded_header picks names (clientIP). The result may view buf.
func requestClient(ctx *fasthttp.RequestCtx, rt *runtime, buf *[16]byte) []byte {
	if rt == nil || len(rt.trusted) == 0 {
		return clientIP(ctx.RemoteIP(), nil, nil, buf)
	}
	if rt.cfg.Server.readsForwarded() {
		return clientIPForwarded(ctx.RemoteIP(), ctx.Request.Header.PeekAll(hdrForwarded), rt.trusted, buf)
	}
	return clientIP(ctx.RemoteIP(), ctx.Request.Header.PeekAll(hdrForwardedFor), rt.trusted, buf)
}

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
	return walkHops(peer, xff, trusted, buf, lastXFFHop)
}

// clientIPForwarded is clientIP read from Forwarded (RFC 7239) lines: each element's
// for= parameter is its hop, walked from the right as X-Forwarded-For's are. An
// element that names no address (for=unknown, an obfuscated for=_hidden, none or two
// for=, a pair without =, an unclosed quoted-string) ends the walk at the last trusted
// hop, as garbage does in X-Forwarded-For: what that proxy was sent from cannot be
// told, and an address further left is only what the client says.
func clientIPForwarded(peer net.IP, fwd [][]byte, trusted trustedProxies, buf *[16]byte) []byte {
	return walkHops(peer, fwd, trusted, buf, lastForwardedHop)
}

// hopKind is what a list element names: an address, nothing (an empty element,
// skipped) or something else (the walk ends).
type hopKind uint8

const (
	hopAddr hopKind = iota
	hopEmpty
	hopOther
)

// walkHops walks lines, a header's lines in order, from the right with last, which
// splits a line's last element off and reads it, while the hops are trusted proxies.
func walkHops(peer net.IP, lines [][]byte, trusted trustedProxies, buf *[16]byte, last func([]byte) ([]byte, netip.Addr, hopKind)) []byte {
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
	for n := len(lines) - 1; n >= 0; n-- {
		line := lines[n]
		for len(line) > 0 {
			var hop netip.Addr
			var kind hopKind
			line, hop, kind = last(line)
			switch kind {
			case hopEmpty:
				// RFC 9110 5.6.1: empty list elements are ignored.
				continue
			case hopOther:
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

// lastXFFHop splits X-Forwarded-For line's last element off and reads it (parseHop).
func lastXFFHop(line []byte) ([]byte, netip.Addr, hopKind) {
	var elem []byte
	if i := bytes.LastIndexByte(line, ','); i >= 0 {
		elem, line = line[i+1:], line[:i]
	} else {
		elem, line = line, nil
	}
	elem = bytes.TrimSpace(elem)
	if len(elem) == 0 {
		return line, netip.Addr{}, hopEmpty
	}
	hop, ok := parseHop(b2s(elem))
	if !ok {
		return line, netip.Addr{}, hopOther
	}
	return line, hop, hopAddr
}

// lastForwardedHop splits Forwarded line's last element off and reads its for=
// parameter (forwardedFor). The line is cut from the right, so a quote a client left
// open on the left cannot swallow the elements its proxies appended.
func lastForwardedHop(line []byte) ([]byte, netip.Addr, hopKind) {
	rest, elem, ok := cutLast(line, ',')
	if !ok {
		return nil, netip.Addr{}, hopOther
	}
	elem = trimOWS(elem)
	if len(elem) == 0 {
		return rest, netip.Addr{}, hopEmpty
	}
	hop, ok := forwardedFor(elem)
	if !ok {
		return rest, netip.Addr{}, hopOther
	}
	return rest, hop, hopAddr
}

// cutLast splits s at its last sep outside a quoted-string (RFC 9110 5.6.4), read
// from the right: a quote closes a string there unless an odd run of backslashes
// escapes it. With no such sep, rest is nil and last all of s; ok is false when a
// quoted-string is left open (a lone quote).
func cutLast(s []byte, sep byte) (rest, last []byte, ok bool) {
	quoted := false
	for i := len(s) - 1; i >= 0; i-- {
		switch c := s[i]; {
		case quoted && c == '"':
			j := i
			for j > 0 && s[j-1] == '\\' {
				j--
			}
			if (i-j)%2 == 0 {
				quoted = false
			}
		case quoted:
		case c == '"':
			quoted = true
		case c == sep:
			return s[:i], s[i+1:], true
		}
	}
	return nil, s, !quoted
}

// trimOWS drops the spaces and tabs around s (RFC 9110 5.6.3's OWS).
func trimOWS(s []byte) []byte {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// forwardedFor is the address of elem's for= parameter, elem one Forwarded element
// of ;-separated name=value pairs (names in any case, spaces around ; and = allowed,
// empty pairs skipped). The value is a token or a quoted-string, holding a node
// (RFC 7239 6): an IPv4 address, an IPv6 one in brackets (or bare, as nginx's
// "for=$remote_addr" writes it), either with a port or an obfuscated one
// (192.0.2.43:4711, "[2001:db8::17]:_p1"). ok is false for unknown, an obfuscated
// identifier (_hidden), anything else that is not an address, a quoted-string with
// an escape, and an element that is malformed (a pair without =) or has no or two
// for= (RFC 7239 4: a parameter occurs once an element).
func forwardedFor(elem []byte) (netip.Addr, bool) {
	var value []byte
	found := false
	for rest := elem; rest != nil; {
		var pair []byte
		var ok bool
		if rest, pair, ok = cutLast(rest, ';'); !ok {
			return netip.Addr{}, false
		}
		pair = trimOWS(pair)
		if len(pair) == 0 {
			continue
		}
		i := bytes.IndexByte(pair, '=')
		if i < 0 {
			return netip.Addr{}, false
		}
		name := trimOWS(pair[:i])
		if len(name) == 0 {
			return netip.Addr{}, false
		}
		if !bytes.EqualFold(name, strFor) {
			continue
		}
		if found {
			return netip.Addr{}, false
		}
		found, value = true, trimOWS(pair[i+1:])
	}
	if !found {
		return netip.Addr{}, false
	}
	if len(value) > 0 && value[0] == '"' {
		// An address needs no escape and holds no quote.
		if len(value) < 2 || value[len(value)-1] != '"' || bytes.IndexByte(value[1:len(value)-1], '"') >= 0 || bytes.IndexByte(value, '\\') >= 0 {
			return netip.Addr{}, false
		}
		value = value[1 : len(value)-1]
	}
	// An obfuscated port (RFC 7239 6.3: "_" and letters, digits, ".", "_", "-")
	// says nothing of the address before it. Anything else after ":_" is no port, and
	// the value no node.
	if i := bytes.LastIndexByte(value, ':'); i > 0 && obfPort(value[i+1:]) &&
		(value[i-1] == ']' || bytes.IndexByte(value[:i], ':') < 0) {
		value = value[:i]
	}
	return parseHop(b2s(value))
}

// obfPort reports whether s is an obfuscated port (RFC 7239 6.3's obfport): "_" and
// one or more letters, digits, ".", "_" or "-".
func obfPort(s []byte) bool {
	if len(s) < 2 || s[0] != '_' {
		return false
	}
	for _, c := range s[1:] {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

var strFor = []byte("for")

// parseHop reads one X-Forwarded-For element: an address, one with a port
// (203.0.113.5:4711 and [2001:db8::1]:443, as Azure Application Gateway writes them) or
// a bracketed IPv6 one. The form picks the parser: a failed parse allocates its error,
// so what cannot begin an address (unknown, an obfuscated _hidden: proxies write them
// on every request) is refused before it.
func parseHop(s string) (netip.Addr, bool) {
	if s == "" || !addrStart(s[0]) {
		return netip.Addr{}, false
	}
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

// addrStart reports whether c can begin an address as parseHop reads it: a digit, a
// hex letter or a colon of IPv6, or a bracket.
func addrStart(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' || c == ':' || c == '['
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
