package limiter

import "testing"

// BenchmarkMemoryTakeSettleUSD is BenchmarkMemoryTakeSettle with a spend budget
// beside the requests and tokens limits: a check charging a cost estimate and a
// settlement truing it up to the actual cost.
func BenchmarkMemoryTakeSettleUSD(b *testing.B) {
	l, err := newLimiter(Config{}, nil, defaultOptions(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	pol := mustPolicy(b, "bench-usd",
		Limit{Per: "api_key", Requests: 1000, Window: "day", Burst: maxAmount},
		Limit{Per: "api_key", Tokens: 1000, Window: "day", Burst: maxAmount},
		Limit{Per: "api_key", USD: 1, Window: "day", Burst: maxUSD})
	var tk Ticket
	b.ReportAllocs()
	for b.Loop() {
		if err := l.TakeAmounts(bg, pol, alice, Amounts{Tokens: 100, NanoUSD: 123_456}, &tk); err != nil {
			b.Fatal(err)
		}
		l.SettleAmounts(&tk, Amounts{Tokens: 80, NanoUSD: 98_765})
	}
}
