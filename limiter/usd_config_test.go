package limiter

import (
	"math"
	"slices"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// A usd limit is a spend budget in dollars, decimals allowed, amount and burst alike;
// the buckets count whole nano-dollars. Its problems name the key, as the other
// kinds' do.
func TestUSDLimitValidate(t *testing.T) {
	for _, tc := range []struct {
		name, y string
		want    []string
	}{
		{"whole dollars a day", `{per: api_key, usd: 25, window: day}`, nil},
		{"a decimal, burst in dollars too", `{per: user, usd: 0.50, window: hour, burst: 2}`, nil},
		{"a decimal burst", `{per: user, usd: 1, window: hour, burst: 2.75}`, nil},
		{"an exponent", `{per: endpoint, usd: 1e3, window: day}`, nil},
		{"per model", `{per: model, usd: 0.000001, window: minute}`, nil},
		{"a nano-dollar", `{per: ip, usd: 0.000000001, window: second}`, nil},
		{"the largest", `{per: ip, usd: 1000000, window: second, burst: 1000000}`, nil},
		{"negative", `{per: api_key, usd: -5, window: day}`,
			[]string{"usd: must be a finite number of dollars, more than 0"}},
		{"not a number", `{per: api_key, usd: .nan, window: day}`,
			[]string{"usd: must be a finite number of dollars, more than 0"}},
		{"infinite", `{per: api_key, usd: .inf, window: day}`,
			[]string{"usd: must be a finite number of dollars, more than 0"}},
		{"too large", `{per: api_key, usd: 1e7, window: day}`,
			[]string{"usd: must be at most 1000000 (dollars)"}},
		{"below a nano-dollar", `{per: api_key, usd: 1e-10, window: day}`,
			[]string{"usd: must be at least 0.000000001 (a nano-dollar, what the buckets count in)"}},
		{"zero is no amount", `{per: api_key, usd: 0, window: day}`,
			[]string{": needs exactly one of requests, tokens, usd or concurrency"}},
		{"with tokens", `{per: api_key, usd: 5, tokens: 100, window: day}`,
			[]string{": needs exactly one of requests, tokens, usd or concurrency"}},
		{"with concurrency", `{per: api_key, usd: 5, concurrency: 2}`,
			[]string{": needs exactly one of requests, tokens, usd or concurrency"}},
		{"without a window", `{per: api_key, usd: 5}`,
			[]string{"window: is required: second, minute, hour, day, week or month"}},
		{"a year window", `{per: api_key, usd: 5, window: year}`,
			[]string{"window: must be one of second, minute, hour, day, week, month"}},
		{"negative burst", `{per: api_key, usd: 5, window: day, burst: -1}`,
			[]string{"burst: must be a finite number of dollars, more than 0"}},
		{"infinite burst", `{per: api_key, usd: 5, window: day, burst: .inf}`,
			[]string{"burst: must be a finite number of dollars, more than 0"}},
		{"burst below a nano-dollar", `{per: api_key, usd: 5, window: day, burst: 1e-12}`,
			[]string{"burst: must be at least 0.000000001 (a nano-dollar, what the buckets count in)"}},
		{"a decimal burst of tokens", `{per: api_key, tokens: 5, window: day, burst: 2.5}`,
			[]string{"burst: must be a whole number, not 2.5"}},
		{"a decimal burst of requests", `{per: api_key, requests: 5, window: day, burst: 5e-1}`,
			[]string{"burst: must be a whole number, not 0.5"}},
		{"a whole burst of requests written as a float", `{per: api_key, requests: 5, window: day, burst: 1e3}`, nil},
		{"a requests burst too large", `{per: api_key, requests: 5, window: day, burst: 1e30}`,
			[]string{"burst: must be at most 1099511627776"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var l Limit
			if err := yaml.Unmarshal([]byte(tc.y), &l); err != nil {
				t.Fatal(err)
			}
			if got := problems(t, l.Validate()); !slices.Equal(got, tc.want) {
				t.Fatalf("Validate() = %q, want %q", got, tc.want)
			}
			if tc.want != nil {
				return
			}
			if _, err := NewPolicy("p", []Limit{l}); err != nil {
				t.Fatalf("valid limit did not compile: %v", err)
			}
		})
	}
}

// A usd bucket and a tokens bucket of the same per and window count different things;
// two usd limits of one per and window would be one bucket.
func TestUSDLimitsSameBucket(t *testing.T) {
	ok := []Limit{
		{Per: "api_key", USD: 25, Window: "day"},
		{Per: "api_key", Tokens: 1000, Window: "day"},
		{Per: "api_key", USD: 1, Window: "hour"},
	}
	if err := ValidateLimits(ok); err != nil {
		t.Fatalf("ValidateLimits = %v", err)
	}
	dup := append(ok, Limit{Per: "api_key", USD: 2, Window: "day"})
	want := []string{"limits[3]: counts the same as limits[0] (same per, kind and window)"}
	if got := problems(t, ValidateLimits(dup)); !slices.Equal(got, want) {
		t.Fatalf("ValidateLimits = %q, want %q", got, want)
	}
}

// The buckets count nano-dollars: $0.50 an hour with a burst of $2 is 5×10^8 units
// refilled over the hour, 2×10^9 of capacity; its family is not the tokens one's.
func TestUSDPolicyUnits(t *testing.T) {
	p := mustPolicy(t, "endpoint:chat",
		Limit{Per: "user", USD: 0.50, Window: "hour", Burst: 2},
		Limit{Per: "user", Tokens: 500_000_000, Window: "hour", Burst: 2_000_000_000})
	u, tok := &p.rules[0], &p.rules[1]
	if u.kind != kindUSD || u.amount != 500_000_000 || u.burst != 2e9 || u.interval != float64(time.Hour)/5e8 {
		t.Fatalf("usd rule: kind %d amount %d burst %v interval %v", u.kind, u.amount, u.burst, u.interval)
	}
	if u.id == tok.id {
		t.Error("a usd bucket shares its family with a tokens bucket of the same per and window")
	}
	if !p.CountsUSD() {
		t.Error("CountsUSD() = false for a policy with a usd limit")
	}
	plain := mustPolicy(t, "key:a", Limit{Per: "api_key", Tokens: 10, Window: "minute"})
	if plain.CountsUSD() || (*Policy)(nil).CountsUSD() {
		t.Error("CountsUSD() = true without a usd limit")
	}
	if j, err := plain.Joined(p); err != nil || !j.CountsUSD() {
		t.Errorf("a key's policy joined to one with a usd limit: CountsUSD() = false (%v)", err)
	}
	// A decimal nano-dollar amount rounds to the nearest unit, never to 0.
	if r := mustPolicy(t, "x", Limit{Per: "ip", USD: 0.1, Window: "day"}).rules[0]; r.amount != 100_000_000 {
		t.Errorf("usd 0.1 = %d nano-dollars, want 100000000", r.amount)
	}
}

// A refusal by a usd limit names the budget in dollars, never a subject.
func TestUSDRefusalMessage(t *testing.T) {
	p := mustPolicy(t, "key:team-a", Limit{Per: "api_key", USD: 0.5, Window: "hour"})
	if got, want := p.rules[0].msg, "rate limit exceeded: a budget of $0.50 per hour per api_key (key:team-a)"; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
}

func TestAppendUSD(t *testing.T) {
	for _, tc := range []struct {
		nano int64
		want string
	}{
		{0, "0"},
		{1, "0.000000001"},
		{123_000, "0.000123"},
		{500_000_000, "0.5"},
		{25_000_000_000, "25"},
		{24_999_876_544, "24.999876544"},
		{1_000_000_000_000_000, "1000000"},
		{-1_500_000_000, "-1.5"},
	} {
		if got := string(AppendUSD([]byte("x"), tc.nano)); got != "x"+tc.want {
			t.Errorf("AppendUSD(%d) = %q, want %q", tc.nano, got[1:], tc.want)
		}
	}
	for _, tc := range []struct {
		usd  float64
		want string
	}{{25, "25"}, {0.5, "0.50"}, {0.125, "0.125"}, {1e3, "1000"}, {2.1, "2.10"}} {
		if got := string(AppendDollars(nil, tc.usd)); got != tc.want {
			t.Errorf("AppendDollars(%v) = %q, want %q", tc.usd, got, tc.want)
		}
	}
}

// An actual cost is the nearest nano-dollar (a sum of float prices is a hair off its
// decimal value either way); an estimate is rounded up; neither goes below 0 or past
// 2^62.
func TestNanoUSD(t *testing.T) {
	hundredAt37 := 100 * 0.37 / 1e6 // 3.7e-05 and a hair: a price times a count
	for _, tc := range []struct {
		usd      float64
		near, up int64
	}{
		{0, 0, 0},
		{0.000037, 37_000, 37_000},
		{hundredAt37, 37_000, int64(math.Ceil(hundredAt37 * 1e9))},
		{1.0000000004, 1_000_000_000, 1_000_000_001},
		{-1, 0, 0},
		{math.NaN(), 0, 0},
		{math.Inf(1), maxNanoUSD, maxNanoUSD},
	} {
		if got := NanoUSD(tc.usd); got != tc.near {
			t.Errorf("NanoUSD(%v) = %d, want %d", tc.usd, got, tc.near)
		}
		if got := NanoUSDUp(tc.usd); got != tc.up {
			t.Errorf("NanoUSDUp(%v) = %d, want %d", tc.usd, got, tc.up)
		}
	}
}
