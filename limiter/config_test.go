package limiter

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// problems flattens a Validate error into "key: problem" strings.
func problems(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var out []string
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("not a *FieldError: %T %v", e, e)
		}
		out = append(out, fe.Key()+": "+fe.Problem())
	}
	walk(err)
	return out
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{name: "empty means memory", yaml: `{}`},
		{name: "memory", yaml: `{store: memory}`},
		{name: "redis url", yaml: `{store: redis, redis: {url: "redis://127.0.0.1:6379/0"}, on_redis_error: deny, timeout: 20ms}`},
		{name: "redis cluster", yaml: `{store: redis, redis: {addrs: ["127.0.0.1:7000", "127.0.0.1:7001"]}}`},
		{name: "redis sentinel", yaml: `{store: redis, redis: {sentinel: {master: mymaster, addrs: ["127.0.0.1:26379"]}}}`},
		{name: "unknown store", yaml: `{store: etcd}`, want: []string{"store: must be memory or redis"}},
		{name: "redis without address", yaml: `{store: redis}`,
			want: []string{"redis: needs one of url, addrs (cluster) or sentinel"}},
		{name: "redis two addresses", yaml: `{store: redis, redis: {url: "redis://127.0.0.1:6379", addrs: ["127.0.0.1:7000"]}}`,
			want: []string{"redis: url, addrs and sentinel exclude each other"}},
		{name: "bad url", yaml: `{store: redis, redis: {url: "http://x"}}`,
			want: []string{"redis.url: not a redis:// or rediss:// URL: its scheme is not redis or rediss"}},
		{name: "url port out of range", yaml: `{store: redis, redis: {url: "redis://:pw@127.0.0.1:99999/0"}}`,
			want: []string{"redis.url: has a port out of range: it must be 1 to 65535"}},
		{name: "url port 0", yaml: `{store: redis, redis: {url: "rediss://127.0.0.1:0"}}`,
			want: []string{"redis.url: has a port out of range: it must be 1 to 65535"}},
		{name: "url without port", yaml: `{store: redis, redis: {url: "redis://[::1]/0"}}`},
		{name: "unix socket url", yaml: `{store: redis, redis: {url: "unix:///run/redis.sock"}}`},
		{name: "bad cluster addr", yaml: `{store: redis, redis: {addrs: ["127.0.0.1:7000", "nope"]}}`,
			want: []string{"redis.addrs[1]: must be host:port"}},
		{name: "sentinel without master", yaml: `{store: redis, redis: {sentinel: {addrs: ["127.0.0.1:26379"]}}}`,
			want: []string{"redis.sentinel.master: is required with sentinel.addrs"}},
		{name: "cluster db", yaml: `{store: redis, redis: {addrs: ["127.0.0.1:7000"], db: 2}}`,
			want: []string{"redis.db: Redis Cluster has only database 0"}},
		{name: "on_redis_error", yaml: `{on_redis_error: retry}`, want: []string{"on_redis_error: must be allow or deny"}},
		{name: "negative timeout", yaml: `{timeout: -1s}`, want: []string{"timeout: must not be negative"}},
		{name: "huge timeout", yaml: `{timeout: 1m}`,
			want: []string{"timeout: must be at most 10s: it is added to every request while Redis is slow"}},
		{name: "replicas", yaml: `{replicas: -2}`, want: []string{"replicas: must not be negative"}},
		{name: "ipv6_prefix 64", yaml: `{ipv6_prefix: 64}`},
		{name: "ipv6_prefix 128", yaml: `{ipv6_prefix: 128}`},
		{name: "ipv6_prefix too short", yaml: `{ipv6_prefix: 16}`,
			want: []string{"ipv6_prefix: must be between 32 and 128 (leave it out for 128, each address on its own)"}},
		{name: "ipv6_prefix too long", yaml: `{ipv6_prefix: 129}`,
			want: []string{"ipv6_prefix: must be between 32 and 128 (leave it out for 128, each address on its own)"}},
		{name: "short lease", yaml: `{concurrency_lease: 10ms}`, want: []string{"concurrency_lease: must be at least 1s"}},
		{name: "long lease", yaml: `{concurrency_lease: 25h}`, want: []string{"concurrency_lease: must be at most 24h"}},
		{name: "prefetch off", yaml: `{store: redis, redis: {url: "redis://127.0.0.1:6379/0"}, prefetch: 0s}`},
		{name: "negative prefetch", yaml: `{prefetch: -1s}`, want: []string{"prefetch: must be between 0s (off) and 10s"}},
		{name: "huge prefetch", yaml: `{prefetch: 1m}`, want: []string{"prefetch: must be between 0s (off) and 10s"}},
		{name: "every problem at once", yaml: `{store: x, on_redis_error: y, replicas: -1}`, want: []string{
			"store: must be memory or redis", "on_redis_error: must be allow or deny", "replicas: must not be negative"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			dec := yaml.NewDecoder(strings.NewReader(tc.yaml))
			dec.KnownFields(true)
			if err := dec.Decode(&c); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if got := problems(t, c.Validate()); !slices.Equal(got, tc.want) {
				t.Errorf("Validate() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLimitValidate(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{name: "requests", yaml: `{per: api_key, requests: 600, window: minute, burst: 60}`},
		{name: "tokens", yaml: `{per: user, tokens: 100000, window: hour}`},
		{name: "concurrency", yaml: `{per: ip, concurrency: 4}`},
		{name: "unknown per", yaml: `{per: team, requests: 1, window: second}`,
			want: []string{"per: must be one of api_key, user, endpoint (or model), ip"}},
		{name: "no amount", yaml: `{per: user, window: day}`,
			want: []string{": needs exactly one of requests, tokens, usd or concurrency"}},
		{name: "two amounts", yaml: `{per: user, requests: 1, tokens: 5, window: day}`,
			want: []string{": needs exactly one of requests, tokens, usd or concurrency"}},
		{name: "negative", yaml: `{per: user, requests: -1, window: day}`,
			want: []string{"requests: must be positive"}},
		{name: "missing window", yaml: `{per: user, requests: 5}`,
			want: []string{"window: is required: second, minute, hour, day, week or month"}},
		{name: "bad window", yaml: `{per: user, requests: 5, window: 1m}`,
			want: []string{"window: must be one of second, minute, hour, day, week, month"}},
		{name: "window on concurrency", yaml: `{per: user, concurrency: 5, window: minute, burst: 2}`,
			want: []string{"window: is not used with concurrency", "burst: is not used with concurrency"}},
		{name: "negative burst", yaml: `{per: user, tokens: 5, window: minute, burst: -5}`,
			want: []string{"burst: must not be negative"}},
		{name: "too large", yaml: `{per: user, tokens: 9999999999999999, window: minute}`,
			want: []string{"tokens: must be at most 1099511627776"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var l Limit
			dec := yaml.NewDecoder(strings.NewReader(tc.yaml))
			dec.KnownFields(true)
			if err := dec.Decode(&l); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if got := problems(t, l.Validate()); !slices.Equal(got, tc.want) {
				t.Errorf("Validate() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestValidateLimits(t *testing.T) {
	tests := []struct {
		name   string
		limits []Limit
		want   []string
	}{
		{name: "none"},
		{name: "request and token limits", limits: []Limit{
			{Per: "api_key", Requests: 600, Window: "minute"},
			{Per: "api_key", Tokens: 1000, Window: "minute"},
			{Per: "api_key", Requests: 20, Window: "second"},
		}},
		{name: "keys carry the index", limits: []Limit{
			{Per: "api_key", Requests: 600, Window: "minute"},
			{Per: "api_key", Requests: 600, Window: "fortnight"},
		}, want: []string{"limits[1].window: must be one of second, minute, hour, day, week, month"}},
		{name: "entry-level problem", limits: []Limit{{Per: "user", Window: "minute"}},
			want: []string{"limits[0]: needs exactly one of requests, tokens, usd or concurrency"}},
		{name: "same bucket twice", limits: []Limit{
			{Per: "user", Tokens: 10, Window: "minute"},
			{Per: "user", Tokens: 99, Window: "minute", Burst: 5},
		}, want: []string{"limits[1]: counts the same as limits[0] (same per, kind and window)"}},
		{name: "model is the endpoint", limits: []Limit{
			{Per: "endpoint", Requests: 10, Window: "minute"},
			{Per: "model", Requests: 20, Window: "minute"},
		}, want: []string{"limits[1]: counts the same as limits[0] (same per, kind and window)"}},
		{name: "too many", limits: func() []Limit {
			var ls []Limit
			for _, per := range []string{"api_key", "user", "endpoint", "ip"} {
				for _, w := range []string{"second", "minute"} {
					ls = append(ls, Limit{Per: per, Requests: 10, Window: w})
				}
			}
			return append(ls, Limit{Per: "ip", Concurrency: 1})
		}(), want: []string{"limits: at most 8 limits apply to one request"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := problems(t, ValidateLimits(tc.limits)); !slices.Equal(got, tc.want) {
				t.Errorf("ValidateLimits() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestMLflowLimit(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want Limit
		errs []string
	}{
		{name: "per endpoint", yaml: `{renewal_period: minute, calls: 10}`,
			want: Limit{Per: "endpoint", Requests: 10, Window: "minute"}},
		{name: "per user", yaml: `{renewal_period: day, calls: 1000, key: user}`,
			want: Limit{Per: "user", Requests: 1000, Window: "day"}},
		// MLflow reads the period as the limits library does: any case, singular or
		// plural, an optional count, month and year too.
		{name: "plural", yaml: `{renewal_period: minutes, calls: 10}`,
			want: Limit{Per: "endpoint", Requests: 10, Window: "minute"}},
		{name: "capitalised", yaml: `{renewal_period: Hour, calls: 10}`,
			want: Limit{Per: "endpoint", Requests: 10, Window: "hour"}},
		{name: "month", yaml: `{renewal_period: month, calls: 1000}`,
			want: Limit{Per: "endpoint", Requests: 1000, Window: "month"}},
		{name: "years", yaml: `{renewal_period: YEARS, calls: 1000}`,
			want: Limit{Per: "endpoint", Requests: 1000, Window: "year", period: 360 * 24 * time.Hour}},
		{name: "with a count", yaml: `{renewal_period: 5 minutes, calls: 10}`,
			want: Limit{Per: "endpoint", Requests: 10, Window: "5 minutes", period: 5 * time.Minute}},
		{name: "key route", yaml: `{renewal_period: minute, calls: 10, key: route}`,
			want: Limit{Per: "endpoint", Requests: 10, Window: "minute"}},
		{name: "bad period", yaml: `{renewal_period: fortnight, calls: 10}`,
			want: Limit{Per: "endpoint", Requests: 10},
			errs: []string{"renewal_period: must be second, minute, hour, day, month or year (in any case, plural too, or with a count: 5 minutes)"}},
		{name: "period too long", yaml: `{renewal_period: 11 years, calls: 10}`,
			want: Limit{Per: "endpoint", Requests: 10, Window: "11 years", period: maxRenewalPeriod + 1},
			errs: []string{"renewal_period: must be at most 10 years"}},
		{name: "unknown key", yaml: `{renewal_period: minute, calls: 10, key: team}`,
			want: Limit{Per: "team", Requests: 10, Window: "minute"},
			errs: []string{"key: must be route or user, or left out (the whole endpoint); api_key, endpoint and ip are taken too"}},
		{name: "no calls", yaml: `{renewal_period: minute}`,
			want: Limit{Per: "endpoint", Window: "minute"},
			errs: []string{"calls: must be positive"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m MLflowLimit
			dec := yaml.NewDecoder(strings.NewReader(tc.yaml))
			dec.KnownFields(true)
			if err := dec.Decode(&m); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if got := problems(t, m.Validate()); !slices.Equal(got, tc.errs) {
				t.Errorf("Validate() = %q, want %q", got, tc.errs)
			}
			got := m.Limit()
			if got != tc.want {
				t.Errorf("Limit() = %+v, want %+v", got, tc.want)
			}
			if tc.errs == nil {
				if err := got.Validate(); err != nil {
					t.Errorf("converted limit invalid: %v", err)
				}
			}
		})
	}
}

// TestMLflowLimitPeriod checks that a limit whose MLflow period no window name holds
// refills over that period: 1000 calls a month are one call each 43.2 minutes.
func TestMLflowLimitPeriod(t *testing.T) {
	m := MLflowLimit{Calls: 1000, RenewalPeriod: "month"}
	p, err := NewPolicy("endpoint:chat", []Limit{m.Limit()})
	if err != nil {
		t.Fatal(err)
	}
	r := p.rules[0]
	if want := float64(30*24*time.Hour) / 1000; r.interval != want || r.burst != 1000 {
		t.Fatalf("interval %v ns, burst %v; want %v ns, 1000", r.interval, r.burst, want)
	}
	if want := "rate limit exceeded: 1000 requests per month per endpoint (endpoint:chat)"; r.msg != want {
		t.Fatalf("refusal message %q, want %q", r.msg, want)
	}
}

func TestParseWindow(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"second", time.Second, true},
		{"minute", time.Minute, true},
		{"hour", time.Hour, true},
		{"day", 24 * time.Hour, true},
		{"Minute", 0, false},
		{"1m", 0, false},
		{"", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := ParseWindow(tc.in)
			if got != tc.want || ok != tc.ok {
				t.Errorf("ParseWindow(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

// FuzzLimitValidate checks that any limit Validate accepts compiles into a policy whose
// buckets have a positive refill interval and capacity, and that Validate never panics.
func FuzzLimitValidate(f *testing.F) {
	f.Add([]byte(`{per: api_key, requests: 600, window: minute, burst: 60}`))
	f.Add([]byte(`{per: user, tokens: 100000, window: day}`))
	f.Add([]byte(`{per: ip, concurrency: 3}`))
	f.Add([]byte(`{per: endpoint, requests: 1099511627776, window: second, burst: 1}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		var l Limit
		if yaml.Unmarshal(in, &l) != nil {
			return
		}
		if l.Validate() != nil {
			return
		}
		p, err := NewPolicy("fuzz", []Limit{l})
		if err != nil {
			t.Fatalf("valid limit %+v did not compile: %v", l, err)
		}
		r := &p.rules[0]
		if r.burst < 1 || (r.kind != kindConcurrency && !(r.interval > 0)) {
			t.Fatalf("limit %+v compiled to burst %v interval %v", l, r.burst, r.interval)
		}
	})
}

// FuzzConfigValidate checks that Validate never panics and that every problem it
// reports is a FieldError with a key.
func FuzzConfigValidate(f *testing.F) {
	f.Add([]byte(`{store: redis, redis: {url: "redis://127.0.0.1:6379/0"}, on_redis_error: allow}`))
	f.Add([]byte(`{store: redis, redis: {addrs: ["127.0.0.1:7000"], db: 1}, timeout: 5s}`))
	f.Add([]byte(`{store: redis, redis: {sentinel: {master: m, addrs: [":1"]}}, replicas: 3}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		var c Config
		if yaml.Unmarshal(in, &c) != nil {
			return
		}
		for _, p := range problems(t, c.Validate()) {
			if strings.HasPrefix(p, ": ") {
				t.Fatalf("problem without a key: %q", p)
			}
		}
	})
}

func TestPrefetchSetting(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want time.Duration
	}{
		{`{}`, DefaultPrefetch},
		{`{prefetch: 0s}`, 0},
		{`{prefetch: 250ms}`, 250 * time.Millisecond},
	} {
		var c Config
		if err := yaml.Unmarshal([]byte(tc.yaml), &c); err != nil {
			t.Fatal(err)
		}
		if got := c.prefetch(); got != tc.want {
			t.Errorf("%s: prefetch %v, want %v", tc.yaml, got, tc.want)
		}
	}
}

// A redis.url usually carries the password (often from ${REDIS_URL}), and a problem
// with it is printed by `tollgate validate`, the reload log and the admin API: the
// message says what is wrong without quoting the URL or any piece of it, also when an
// unescaped '/', '?' or '#' in the password splits the URL inside it.
func TestRedisURLProblemHidesPassword(t *testing.T) {
	const hint = "; a password must percent-encode characters such as / ? # @ %"
	tests := []struct {
		name, url, secret, want string
	}{
		{name: "bad port", url: "redis://:s3cret-pw@redis.internal:port/0", secret: "s3cret-pw",
			want: "does not parse (invalid port after host)" + hint},
		{name: "space in host", url: "rediss://default:s3cret-pw@redis internal:6379/0", secret: "s3cret-pw",
			want: "does not parse (invalid character in host name)" + hint},
		{name: "bad escape", url: "redis://:s3%zzcret@redis.internal:6379/0", secret: "%zz",
			want: "does not parse (invalid URL escape)" + hint},
		{name: "slash in password", url: "redis://:Zm9v/YmFy@redis.internal:6379/0", secret: "Zm9v",
			want: "does not parse (invalid port after host)" + hint},
		{name: "slash after digits", url: "redis://:123/YmFy@redis.internal:6379/0", secret: "YmFy",
			want: "invalid URL path"},
		{name: "slash in database", url: "redis://:123/YmFy@redis.internal:6379", secret: "YmFy",
			want: "invalid database number"},
		{name: "question mark", url: "redis://:123?YmFy@redis.internal:6379/0", secret: "YmFy",
			want: "unexpected option"},
		{name: "bad option value", url: "redis://:s3cret-pw@redis.internal:6379/0?pool_size=s3cret-pw", secret: "s3cret-pw",
			want: "invalid pool_size number"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{Store: "redis", Redis: RedisConfig{URL: tc.url}}
			got := problems(t, c.Validate())
			want := []string{"redis.url: not a redis:// or rediss:// URL: " + tc.want}
			if !slices.Equal(got, want) {
				t.Errorf("Validate() = %q, want %q", got, want)
			}
			// Client is called without Validate by other packages.
			_, err := c.Redis.Client(time.Second)
			if err == nil {
				t.Fatal("Client accepted the URL")
			}
			if msg := err.Error(); strings.Contains(msg, tc.secret) || !strings.HasSuffix(msg, tc.want) {
				t.Errorf("Client error %q, want it to end %q and not show the password", msg, tc.want)
			}
		})
	}
}
