package limiter

import (
	"reflect"
	"sync"
	"testing"
)

// Joined is Combine made on first use and kept: a key's policy paired with each
// endpoint's costs memory only for the pairs requests make, and every request of a
// pair checks the same policy, in the same buckets as Combine's.
func TestJoined(t *testing.T) {
	ep := mustPolicy(t, "endpoint:chat", Limit{Per: "endpoint", Requests: 5, Window: "hour"})
	key := mustPolicy(t, "key:team-a", Limit{Per: "api_key", Requests: 3, Window: "hour"})
	none := mustPolicy(t, "endpoint:free")
	noKeyLimits := mustPolicy(t, "key:team-b")

	t.Run("both with limits: their combination, kept", func(t *testing.T) {
		both, err := key.Joined(ep)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := Combine(ep, key)
		if both.Name() != want.Name() || !reflect.DeepEqual(both.rules, want.rules) {
			t.Fatalf("joined %q %+v, want Combine's %q %+v", both.Name(), both.rules, want.Name(), want.rules)
		}
		if again, _ := key.Joined(ep); again != both {
			t.Error("a second request of the pair got another policy")
		}
	})
	t.Run("one side without limits: the other itself", func(t *testing.T) {
		if p, _ := key.Joined(none); p != key {
			t.Errorf("key with an endpoint without limits got %q, want the key's own", p.Name())
		}
		if p, _ := noKeyLimits.Joined(ep); p != ep {
			t.Errorf("key without limits got %q, want the endpoint's own", p.Name())
		}
		if p, _ := noKeyLimits.Joined(nil); p != nil {
			t.Errorf("no limits at all got %q, want nil", p.Name())
		}
	})
	t.Run("the same buckets as Combine", func(t *testing.T) {
		l := newMemLimiter(t, newTestClock())
		both, _ := key.Joined(ep)
		if got := admitN(t, l, both, alice, 0, 4); got != 3 {
			t.Fatalf("joined admitted %d, want the key's 3", got)
		}
		combined, _ := Combine(ep, key)
		if got := admitN(t, l, combined, alice, 0, 1); got != 0 {
			t.Errorf("Combine's policy admitted %d after the joined one spent the key's bucket, want 0", got)
		}
		if got := admitN(t, l, ep, bob, 0, 4); got != 2 {
			t.Errorf("endpoint policy admitted %d, want the 2 the joined one left", got)
		}
	})
	t.Run("requests pairing them at once get one policy", func(t *testing.T) {
		k := mustPolicy(t, "key:team-c", Limit{Per: "api_key", Requests: 3, Window: "hour"})
		got := make([]*Policy, 8)
		var wg sync.WaitGroup
		for i := range got {
			wg.Go(func() { got[i], _ = k.Joined(ep) })
		}
		wg.Wait()
		for i, p := range got {
			if p != got[0] {
				t.Fatalf("request %d got another policy than request 0", i)
			}
		}
	})
	t.Run("too many limits fail as Combine does", func(t *testing.T) {
		var limits []Limit
		for _, per := range []string{"api_key", "user", "ip", "endpoint"} {
			for _, w := range []string{"second", "minute"} {
				limits = append(limits, Limit{Per: per, Requests: 10, Window: w})
			}
		}
		full := mustPolicy(t, "key:full", limits...)
		_, err := full.Joined(ep)
		_, want := Combine(ep, full)
		if err == nil || want == nil || err.Error() != want.Error() {
			t.Fatalf("Joined: %v, want Combine's %v", err, want)
		}
		if err := CheckCombined(ep, full); err == nil || err.Error() != want.Error() {
			t.Errorf("CheckCombined: %v, want Combine's %v", err, want)
		}
		if err := CheckCombined(ep, key); err != nil {
			t.Errorf("CheckCombined of two limits: %v", err)
		}
	})
}
