//go:build !race

package logq

import (
	"context"
	"testing"
)

// TestWriteAllocs pins a queued line at no allocation: the access log writes one per
// request.
func TestWriteAllocs(t *testing.T) {
	q := New(discard{})
	defer q.Close(context.Background())
	for range 1000 {
		q.Write(accessLine) // the buffers grow to what this load needs
	}
	if n := testing.AllocsPerRun(1000, func() { q.Write(accessLine) }); n != 0 {
		t.Fatalf("Write: %v allocations, want 0", n)
	}
}
