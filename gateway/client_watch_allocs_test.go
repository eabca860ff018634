//go:build !race

package gateway

import (
	"net"
	"testing"
)

// A client watch joins and leaves its server's list, for the shutdown to cut its wait,
// without allocating: every request that waits on its upstream longer than a check
// interval starts one. (The watch of the socket itself, internal/hangup, costs what
// it costs either way.)
func TestClientWatchListAllocs(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	s := &Server{}
	other := &clientWatch{conn: conn, s: s}
	other.Watch()
	defer other.Unwatch()
	alone := &clientWatch{conn: conn}
	listed := &clientWatch{conn: conn, s: s}
	for _, c := range []*clientWatch{alone, listed} {
		c.Watch()
		c.Unwatch()
	}
	base := allocsPerRun(200, func() { alone.Watch(); alone.Unwatch() })
	if n := allocsPerRun(200, func() { listed.Watch(); listed.Unwatch() }); n > base {
		t.Fatalf("%.1f allocations per listed watch, %.1f unlisted: the list allocates", n, base)
	}
	if other.shard().head != other || other.next != nil || other.prev != nil {
		t.Fatal("the list does not hold the one watch left running")
	}
}
