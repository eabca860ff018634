//go:build !race

package providers

import "testing"

// TestDeveloperAsSystemAllocs pins the rewrite of developer roles, escaped ones
// included, and the search that lets a body without one through, to no allocation.
func TestDeveloperAsSystemAllocs(t *testing.T) {
	for _, body := range []string{
		`{"model":"m","messages":[{"role":"developer","content":"Be brief."},{"role":"user","content":"Hi"},{"r\u006fle":"develop\u0065r","content":"x"}],"temperature":0.2}`,
		`{"model":"m","messages":[{"role":"user","content":"A developer's question"}],"temperature":0.2}`,
		`{"model":"m","messages":[{"role":"user","content":"Hi"}]}`,
	} {
		b := []byte(body)
		buf := make([]byte, 0, len(b))
		if n := testing.AllocsPerRun(100, func() { buf = developerAsSystem(append(buf[:0], b...)) }); n != 0 {
			t.Errorf("%s: %v allocations, want 0", body, n)
		}
	}
}
