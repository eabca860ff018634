package limiter

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/redistest"
)

// TestReleaseLostInFailoverFreedAcrossReload: as TestReleaseLostInFailoverFreed, with
// a reload of the limiter section (same Redis) between the release the old primary
// answered and the move. The limiter the reload retired has closed by then (it ran
// no request); the one that replaced it must still send that release again once the
// promoted replica answers its heartbeat, as it sends the settlements the old one
// kept after a failed call.
func TestReleaseLostInFailoverFreedAcrossReload(t *testing.T) {
	t.Parallel()
	r := startReleaseRig(t, Config{Store: "redis", Timeout: 2 * time.Second})
	old, replica, key := r.l, r.replica, r.key
	if _, err := redistest.Command(replica.Addr(), "REPLICAOF", "NO", "ONE"); err != nil {
		t.Fatal(err)
	}
	old.Settle(&r.tk, 0)
	barrier(t, old)
	if n, _ := redistest.Command(replica.Addr(), "ZCARD", key); n != "1" {
		t.Fatalf("the promoted replica holds %s slots, want the one released on the old primary", n)
	}

	o := defaultOptions()
	o.heartbeatEvery, o.probeEvery, o.sweepEvery = 100*time.Millisecond, 50*time.Millisecond, time.Hour
	next, err := newLimiter(r.cfg, nil, o, old)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = next.Close() })
	// The new limiter's heartbeat has found the old primary answering.
	time.Sleep(300 * time.Millisecond)
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	r.proxy.switchTo(replica.Addr())

	deadline := time.Now().Add(5 * time.Second)
	for {
		n, _ := redistest.Command(replica.Addr(), "ZCARD", key)
		if n == "0" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a slot released on the old primary before the reload still holds the cap 5 s after the move (%s in Redis, none in flight)", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
