//go:build !race

package limiter

import "testing"

// A spend budget adds no allocation to a check and its settlement, in either store,
// nor do the usd headers' values.
func TestUSDAllocs(t *testing.T) {
	pol := mustPolicy(t, "usd-allocs",
		Limit{Per: "api_key", Requests: 1_000_000_000, Window: "second"},
		Limit{Per: "api_key", USD: 1_000_000, Window: "second"},
		Limit{Per: "user", Tokens: 1_000_000_000, Window: "second"})
	var tk Ticket
	buf := make([]byte, 0, 32)
	for name, l := range usdStores(t) {
		take := func() {
			if err := l.TakeAmounts(bg, pol, alice, Amounts{Tokens: 100, NanoUSD: 123_456}, &tk); err != nil {
				t.Fatal(err)
			}
			l.SettleAmounts(&tk, Amounts{Tokens: 80, NanoUSD: 98_765})
			buf = AppendUSD(buf[:0], tk.USD.Remaining)
		}
		take() // the first use creates the buckets
		// The redis store's round trip allocates in go-redis (TestRedisTakeAllocs);
		// the request's own path, as the memory store's, nothing.
		budget := 0.0
		if name == "redis" {
			budget = 20
		}
		if n := testing.AllocsPerRun(200, take); n > budget {
			t.Errorf("%s: %v allocations per take and settle with a usd limit, budget %v", name, n, budget)
		}
	}
}
