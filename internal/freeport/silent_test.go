package freeport

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"
)

// A connect to a Silent address is neither answered nor refused: it runs until its
// context ends, and is counted as under way meanwhile. Once closed, the address
// refuses.
func TestSilent(t *testing.T) {
	s, err := ListenSilent()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan error, 1)
	go func() {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp4", s.Addr())
		if err == nil {
			_ = c.Close()
		}
		ended <- err
	}()
	give := time.Now().Add(10 * time.Second)
	for {
		if time.Now().After(give) {
			t.Fatal("the connect is never seen under way")
		}
		n, err := s.Connecting()
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		select {
		case err := <-ended:
			t.Fatalf("the connect ended before it was cancelled: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	cancel()
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Fatalf("the cancelled connect ended with %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp4", s.Addr()); !errors.Is(err, syscall.ECONNREFUSED) {
		if c != nil {
			_ = c.Close()
		}
		t.Fatalf("a connect once closed: %v, want it refused", err)
	}
}
