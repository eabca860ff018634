//go:build !race

package providers

import "testing"

// TestMessagesBridgeLateNamedAllocs pins a stream whose tool calls are named after
// their first pieces to no allocation once its pooled state is warm: the open call's
// id and pieces, and the held call's name, wait in buffers the stream keeps.
func TestMessagesBridgeLateNamedAllocs(t *testing.T) {
	in := benchMsgsLateDeltas()
	runMsgStream(t, in, false)
	if n := testing.AllocsPerRun(200, func() { runMsgStream(t, in, false) }); n != 0 {
		t.Errorf("stream of 16 text deltas and two calls named late: %.1f allocations, budget 0", n)
	}
}
