//go:build !race

package providers

import "testing"

// TestAppendBodyNoModelAllocs pins a NoModel backend's body, its model member left
// out and usage asked for, to no allocation, as any backend's.
func TestAppendBodyNoModelAllocs(t *testing.T) {
	body := []byte(`{"model":"chat","messages":[{"role":"user","content":"hi"}],"stream":true}`)
	call := &Call{Body: body, Model: [2]int{9, 15}, StreamOptions: [2]int{-1, -1}}
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(200, func() { buf = appendBody(buf[:0], call, nil, true) }); n != 0 {
		t.Errorf("%.1f allocations, budget 0", n)
	}
}
