package freeport

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
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

// A port Get gave one process is never given to another while that one lives (two
// test binaries run at once), and is again once it has exited.
func TestGetReservedAcrossProcesses(t *testing.T) {
	if os.Getenv("FREEPORT_CHILD") != "" {
		return
	}
	p, err := Get()
	if err != nil {
		t.Fatal(err)
	}
	child := func() string {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestReserveChild$")
		cmd.Env = append(os.Environ(), "FREEPORT_CHILD="+strconv.Itoa(p))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return string(out)
	}
	out := child()
	if !strings.Contains(out, "reserved: false") {
		t.Fatalf("another process reserved port %d this one was given:\n%s", p, out)
	}
	// A process's reservations end with it.
	_, v, _ := strings.Cut(out, "own: ")
	q, err := strconv.Atoi(strings.Fields(v + " x")[0])
	if err != nil {
		t.Fatalf("child's own port in %q", out)
	}
	if !reserve(q) {
		t.Fatalf("port %d is still reserved after the child that was given it exited", q)
	}
}

// TestReserveChild runs only as TestGetReservedAcrossProcesses's child process: it
// tries to reserve the parent's port, then is given one of its own.
func TestReserveChild(t *testing.T) {
	v := os.Getenv("FREEPORT_CHILD")
	if v == "" {
		return
	}
	p, err := strconv.Atoi(v)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("reserved: %v\n", reserve(p))
	q, err := Get()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("own: %d\n", q)
}
