package providers

import (
	"net"
	"testing"
)

// loopbackPair is a connected TCP pair over loopback: the gateway's side wrapped as a
// dialled upstream connection, and the upstream's.
func loopbackPair(tb testing.TB) (*upstreamConn, net.Conn) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	up := <-accepted
	if up == nil {
		tb.Fatal("accept failed")
	}
	u := wrapUpstream(c)
	tb.Cleanup(func() { _ = u.Close(); _ = up.Close() })
	return u, up
}

// BenchmarkIdleReadable is the look at a pooled connection before each request on
// it: one recv(2) with MSG_PEEK|MSG_DONTWAIT.
func BenchmarkIdleReadable(b *testing.B) {
	u, _ := loopbackPair(b)
	u.idleReadable()
	b.ReportAllocs()
	for b.Loop() {
		if u.idleReadable() {
			b.Fatal("an idle connection found readable")
		}
	}
}

// BenchmarkHeadScan follows a vLLM answer's header, as each answer's first read
// brings it.
func BenchmarkHeadScan(b *testing.B) {
	p := []byte("HTTP/1.1 200 OK\r\ndate: Thu, 03 Dec 2026 10:00:00 GMT\r\nserver: uvicorn\r\n" +
		"content-length: 412\r\ncontent-type: application/json\r\n\r\n{\"id\":\"x\"}")
	var s headScan
	b.ReportAllocs()
	for b.Loop() {
		s.begin()
		s.feed(p)
	}
	if s.state != headOff || s.fields != hasLength {
		b.Fatalf("scan ended in state %d with fields %b", s.state, s.fields)
	}
}
