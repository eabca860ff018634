package freeport

import (
	"errors"
	"net"
	"strconv"
	"syscall"
	"testing"
)

// No port is handed out twice, and each one can be bound once Get returns it.
func TestGetNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	for range 2000 {
		p, err := Get()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
	p, err := Get()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		t.Fatalf("port %d is not free: %v", p, err)
	}
	ln.Close()
}

// A held port refuses connections while nothing listens on it, serves while a listener
// is open, refuses again once it is closed, and cannot be taken by anyone else.
func TestHold(t *testing.T) {
	h, err := Hold()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	refused := func(when string) {
		t.Helper()
		c, err := net.Dial("tcp4", h.Addr())
		if err == nil {
			c.Close()
			t.Fatalf("%s: a connection to the held port was accepted", when)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("%s: dial error %v, want connection refused", when, err)
		}
	}
	refused("held")
	if ln, err := net.Listen("tcp4", h.Addr()); err == nil {
		ln.Close()
		t.Fatal("another listener took the held port")
	}
	for round := range 3 {
		ln, err := h.Listen()
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		go func() {
			if c, err := ln.Accept(); err == nil {
				c.Write([]byte("x"))
				c.Close()
			}
		}()
		c, err := net.Dial("tcp4", h.Addr())
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		b := make([]byte, 1)
		if _, err := c.Read(b); err != nil || b[0] != 'x' {
			t.Fatalf("round %d: read %q, %v", round, b, err)
		}
		c.Close()
		ln.Close()
		refused("listener closed")
	}
	for range 2000 {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		got := ln.Addr().String()
		ln.Close()
		if got == h.Addr() {
			t.Fatal("Listen on port 0 was given the held port")
		}
	}
	h.Close()
	ln, err := net.Listen("tcp4", h.Addr())
	if err != nil {
		t.Fatalf("port not given back: %v", err)
	}
	ln.Close()
}
