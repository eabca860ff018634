//go:build linux

package providers

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"
)

// A name with one IPv6 address that serves and three IPv4 addresses that black-hole
// (or the mirror image: three AAAA behind an IPv6 route that drops SYNs and one A).
// RFC 8305 section 4 interleaves the families so that a broken family costs a new
// connection one Connection Attempt Delay, whichever address a dial's turn starts at:
// rotating the interleaved list as a whole put the working address last on some turns
// ([4a 4b 4c 6a], tried 750 ms in, past a 600 ms bound). Every one of four new
// connections connects within the bound.
func TestDialRotationKeepsFamiliesInterleaved(t *testing.T) {
	ln6, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer ln6.Close()
	go acceptAll(ln6)
	p := ln6.Addr().(*net.TCPAddr).Port
	blackHole4(t, [4]byte{127, 0, 0, 21}, p)
	blackHole4(t, [4]byte{127, 0, 0, 22}, p)
	blackHole4(t, [4]byte{127, 0, 0, 23}, p)
	const name = "mixed.tollgate.test"
	d := &dialer{resolver: fakeDNS(t, name, net.ParseIP("127.0.0.21"), net.ParseIP("127.0.0.22"),
		net.ParseIP("127.0.0.23"), net.ParseIP("::1"))}
	for i := range 4 {
		c, err := d.dial(context.Background(), net.JoinHostPort(name, strconv.Itoa(p)), time.Now().Add(600*time.Millisecond))
		if err != nil {
			t.Errorf("new connection %d: %v", i, err)
			continue
		}
		if host, _, _ := net.SplitHostPort(c.RemoteAddr().String()); host != "::1" {
			t.Errorf("new connection %d connected to %s", i, host)
		}
		_ = c.Close()
	}
}
