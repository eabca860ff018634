package freeport

import (
	"net"
	"strconv"
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
