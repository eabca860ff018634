//go:build !race

package gateway

import (
	"testing"

	"github.com/tollgate/tollgate/providers"
)

// A failure whose warning the throttle leaves out costs no allocation: in an outage
// (or an overload) every failed request of a backend goes through it.
func TestUpstreamFailedWarningLeftOutAllocs(t *testing.T) {
	s := newTestServer(t, benchConfig(deadAddr(t)))
	r := s.acquireRequest()
	// The runtime is only borrowed: the request holds no reference to give back.
	defer func() { r.rt = nil; r.release() }()
	r.rt, r.backend = s.rt.Load(), "up"
	r.reqID = append(r.reqID[:0], "req-1"...)
	for _, c := range []struct {
		name string
		w    upstreamWarning
		warn func()
	}{
		{"upstream failed", warnFailed, func() { r.warnUpstreamFailed("chat", 1, providers.ErrConnect) }},
		{"upstream stream failed", warnStreamFailed, func() { r.warnStreamFailed(providers.ErrStreamCut) }},
		{"upstream answer refused", warnAnswerRefused, r.warnAnswerRefused},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := r.rt.upstreamLogOf("up", c.w)
			f.next.Store(1 << 62)
			if n := testing.AllocsPerRun(100, c.warn); n != 0 {
				t.Fatalf("%v allocations per failure left out of the log, want 0", n)
			}
			if f.left.Load() == 0 {
				t.Fatal("the failures were not counted as left out")
			}
		})
	}
}
