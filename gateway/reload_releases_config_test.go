package gateway

import (
	goruntime "runtime"
	"testing"
	"time"
	"weak"
)

// TestReloadReleasesReplacedConfig: once a reload has swapped a config out and its last
// request has ended, nothing holds that config (its keys, endpoints and line index:
// ~15 MB at 10,000 keys), the one the server started with included. Only what the
// server compares each reload with (server:, limiter:, logging:) stays from the start.
func TestReloadReleasesReplacedConfig(t *testing.T) {
	s := newTestServer(t, sizedConfig(startStaticUpstream(t), 50, 10, 3))
	var replaced []weak.Pointer[Config]
	for range 2 {
		replaced = append(replaced, weak.Make(s.rt.Load().cfg))
		if err := s.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	// The replaced runtimes close in the background (closeInBackground).
	deadline := time.Now().Add(10 * time.Second)
	for i := range replaced {
		for replaced[i].Value() != nil {
			if time.Now().After(deadline) {
				t.Fatalf("the config replaced by reload %d is still held", i+1)
			}
			goruntime.GC()
			time.Sleep(10 * time.Millisecond)
		}
	}
	if s.rt.Load().cfg == nil {
		t.Fatal("the running config is gone")
	}
}
