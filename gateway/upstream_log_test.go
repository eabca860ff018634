package gateway

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A backend's "upstream failed" warnings: the first goes out, then at most one a
// second, each saying how many were left out since the one before.
func TestUpstreamLogAllow(t *testing.T) {
	var f upstreamLog
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	steps := []struct {
		at         time.Duration
		logged     bool
		suppressed int64
	}{
		{0, true, 0},
		{time.Millisecond, false, 0},
		{500 * time.Millisecond, false, 0},
		{999 * time.Millisecond, false, 0},
		{time.Second, true, 3},
		{1500 * time.Millisecond, false, 0},
		{10 * time.Second, true, 1},
		{11 * time.Second, true, 0},
	}
	for i, s := range steps {
		logged, n := f.allow(t0 + int64(s.at))
		if logged != s.logged || n != s.suppressed {
			t.Fatalf("failure %d at +%v: logged %v suppressed %d, want %v %d", i, s.at, logged, n, s.logged, s.suppressed)
		}
	}
}

// Failures of a backend's requests on every core at once: one line goes out in the
// interval, and the lines' counts of those left out account for every other failure.
func TestUpstreamLogAllowConcurrent(t *testing.T) {
	var f upstreamLog
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	var logged, reported atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range 1000 {
				if ok, n := f.allow(t0 + int64(i)*int64(time.Millisecond)); ok {
					logged.Add(1)
					reported.Add(n)
				}
			}
		})
	}
	wg.Wait()
	if logged.Load() != 1 {
		t.Fatalf("%d lines within one interval, want 1", logged.Load())
	}
	ok, n := f.allow(t0 + int64(time.Hour))
	if !ok || reported.Load()+n != 8000-1 {
		t.Fatalf("the next line (%v) says %d left out, after %d said before; want the 7999 failures not logged", ok, n, reported.Load())
	}
}
