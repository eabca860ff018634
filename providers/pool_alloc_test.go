//go:build !race

package providers

import (
	"testing"
	"time"
)

func TestPoolAllocations(t *testing.T) {
	for _, pc := range pickConfigs {
		t.Run("pick "+pc.name, func(t *testing.T) {
			be := newPoolBackend(t, pc.cfg, nil)
			call, res := benchCall(), &Result{}
			if n := testing.AllocsPerRun(1000, func() { pickOnce(be, call, res) }); n != 0 {
				t.Errorf("%v allocations per pick, want 0", n)
			}
		})
	}
	t.Run("stream lease", func(t *testing.T) {
		be := newPoolBackend(t, Config{Targets: benchTargets(4), Balance: "least_loaded"}, nil)
		call, res, ev := benchCall(), &Result{}, &Event{}
		if n := testing.AllocsPerRun(1000, func() { streamOnce(be, call, res, ev) }); n != 0 {
			t.Errorf("%v allocations per stream, want 0", n)
		}
	})
	t.Run("prefix hash", func(t *testing.T) {
		call := benchCall()
		if n := testing.AllocsPerRun(1000, func() { prefixHash(call, 1024) }); n != 0 {
			t.Errorf("%v allocations, want 0", n)
		}
	})
	for _, tc := range []struct {
		name   string
		stream bool
		budget float64
	}{
		{"send", false, 0},
		// fasthttp's client makes four per streamed answer (its body reader and the
		// closures that release the connection), with or without a pool.
		{"send stream", true, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			us := startReplicas(t, 2)
			for _, u := range us {
				u.static.Store(true)
			}
			be := newPoolBackend(t, Config{Targets: replicaURLs(us), Balance: "least_loaded", FirstByteTimeout: time.Minute, StreamIdleTimeout: time.Minute}, nil)
			a := newAttempt(promptCall("hello", tc.stream))
			defer a.release()
			for range 10 { // warm the connections and pools
				if err := a.send(be); err != nil {
					t.Fatal(err)
				}
			}
			if n := testing.AllocsPerRun(200, func() { _ = a.send(be) }); n > tc.budget {
				t.Errorf("%v allocations per attempt, want %v", n, tc.budget)
			}
		})
	}
}
