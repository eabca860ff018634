//go:build !race

package deadline

import "testing"

// TestHeadsAllocs: following a request's header and body through a read allocates
// nothing.
func TestHeadsAllocs(t *testing.T) {
	c := Wrap(&repeatConn{req: sdkRequest(`{"model":"chat","messages":[]}`)})
	c.heads.on = true
	c.heads.begin()
	buf := make([]byte, 1<<10)
	if n := testing.AllocsPerRun(100, func() { _, _ = c.Read(buf) }); n != 0 {
		t.Fatalf("%.1f allocations per read, want 0", n)
	}
	if c.heads.state != headLead || c.heads.bare != 0 || c.heads.requests < 100 {
		t.Fatalf("requests not followed: state %d, bare %d, %d requests", c.heads.state, c.heads.bare, c.heads.requests)
	}
}
