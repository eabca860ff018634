package gateway

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
)

// trustedProxies are the load balancers and proxies in front of the gateway
// (server.trusted_proxies) whose X-Forwarded-For is believed.
type trustedProxies []netip.Prefix

// parseTrustedProxies reads CIDRs and single addresses; the first bad one is returned.
func parseTrustedProxies(list []string) (trustedProxies, string) {
	var out trustedProxies
	for _, s := range list {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
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
// the client's (HAProxy's option forwardfor) has the rightmost say. An element that is
// not an address ends the walk at the last trusted hop. IPv4 is always in its 4-byte
// form, so one client has one bucket however it connects. The result may view buf.
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
			hop, err := netip.ParseAddr(b2s(elem))
			if err != nil || hop.Zone() != "" {
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
