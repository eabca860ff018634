package limiter

import "testing"

// BenchmarkJoined is the gateway's lookup of a key's and an endpoint's policy on each
// limited request of the key.
func BenchmarkJoined(b *testing.B) {
	ep := mustPolicy(b, "endpoint:chat", Limit{Per: "endpoint", Requests: 5, Window: "hour"})
	key := mustPolicy(b, "key:team-a", Limit{Per: "api_key", Requests: 3, Window: "hour"})
	// A key calling many endpoints: the lookup among their pairs.
	for i := range 200 {
		_, _ = key.Joined(mustPolicy(b, "endpoint:other-"+string(rune('a'+i%26))+string(rune('a'+i/26)), Limit{Per: "endpoint", Requests: 5, Window: "hour"}))
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := key.Joined(ep); err != nil {
			b.Fatal(err)
		}
	}
}
