package limiter

import (
	"math"
	"testing"
)

// NanoUp rounds an estimate made in nano-dollars up: whole products of prices and
// counts stay whole (in dollars, 420 tokens at $1 a million is 0.00042, which times
// 1e9 is a hair above 420000), fractions go up, nothing goes below 0 or past 2^62.
func TestNanoUp(t *testing.T) {
	for _, tc := range []struct {
		nano float64
		want int64
	}{
		{0, 0},
		{420 * 1e3, 420_000},
		{18*12_000 + 20*30_000 + 10*2e7, 200_816_000},
		{0.37 * 100 * 1e3, 37_000},
		{1.5, 2},
		{-3, 0},
		{math.NaN(), 0},
		{math.Inf(1), maxNanoUSD},
	} {
		if got := NanoUp(tc.nano); got != tc.want {
			t.Errorf("NanoUp(%v) = %d, want %d", tc.nano, got, tc.want)
		}
	}
}
