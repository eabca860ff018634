//go:build !race

package limiter

import "testing"

// A request of a pair its policies were joined for before allocates nothing: the
// gateway asks Joined on every limited request of a key.
func TestJoinedAllocs(t *testing.T) {
	ep := mustPolicy(t, "endpoint:chat", Limit{Per: "endpoint", Requests: 5, Window: "hour"})
	key := mustPolicy(t, "key:team-a", Limit{Per: "api_key", Requests: 3, Window: "hour"})
	if _, err := key.Joined(ep); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = key.Joined(ep) }); n != 0 {
		t.Fatalf("%.1f allocations per joined request, want 0", n)
	}
}
