package limiter

import (
	"errors"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults applied to zero values of Config.
const (
	DefaultTimeout          = 50 * time.Millisecond
	DefaultConcurrencyLease = 10 * time.Minute
)

// Config is the top-level limiter section of the gateway's YAML.
type Config struct {
	// Store is memory (the default: buckets per process) or redis (shared by replicas).
	Store string `yaml:"store"`
	// Redis says how to reach Redis when Store is redis.
	Redis RedisConfig `yaml:"redis"`
	// OnRedisError is allow (fall back to this replica's share of each limit, the
	// default) or deny (refuse with ErrUnavailable) while Redis fails or is slow.
	OnRedisError string `yaml:"on_redis_error"`
	// Timeout bounds one check against Redis; zero means DefaultTimeout.
	Timeout time.Duration `yaml:"timeout"`
	// Replicas is the number of gateway replicas sharing the limits, used to size the
	// local fallback share; zero counts live replicas from their heartbeats in Redis.
	Replicas int `yaml:"replicas"`
	// ConcurrencyLease is how long a concurrency slot taken in Redis outlives its
	// replica's last heartbeat: the replica renews the slots of its requests in flight
	// with every heartbeat (each second), so a request may run longer than the lease,
	// and the slots of a replica that dies or loses Redis free this long after. It is
	// at least three heartbeats (3s) whatever is set; zero means
	// DefaultConcurrencyLease.
	ConcurrencyLease time.Duration `yaml:"concurrency_lease"`
	// Prefetch is how much of a limit's rate, in time, a replica may take from Redis
	// ahead of its requests and answer them from without a round trip (redis store,
	// rate limits far from their limit only); nil means DefaultPrefetch, 0s turns it
	// off.
	Prefetch *time.Duration `yaml:"prefetch"`
	// IPv6Prefix is how many leading bits of an IPv6 client's address name it in per:
	// ip limits: 64 counts each /64 (a host's whole subnet, which one client may hold
	// and rotate through) as one client; zero means 128, each address on its own.
	// IPv4 clients are counted by their address whatever it says.
	IPv6Prefix int `yaml:"ipv6_prefix"`
}

// IPv6Bits is the prefix length per: ip limits count an IPv6 client by.
func (c *Config) IPv6Bits() int {
	if c.IPv6Prefix == 0 {
		return 128
	}
	return c.IPv6Prefix
}

func (c *Config) prefetch() time.Duration {
	if c.Prefetch == nil {
		return DefaultPrefetch
	}
	return *c.Prefetch
}

// RedisConfig selects a single server (URL), a Cluster (Addrs) or a Sentinel-managed
// master (Sentinel); exactly one of them.
type RedisConfig struct {
	URL      string         `yaml:"url"`
	Addrs    []string       `yaml:"addrs"`
	Sentinel SentinelConfig `yaml:"sentinel"`
	Password string         `yaml:"password"`
	DB       int            `yaml:"db"`
	PoolSize int            `yaml:"pool_size"`
}

// SentinelConfig names the master and the sentinels that know it.
type SentinelConfig struct {
	Master string   `yaml:"master"`
	Addrs  []string `yaml:"addrs"`
}

// Limit is one entry of a limits list: a token bucket of Requests, Tokens or USD
// refilled per Window with capacity Burst, or a cap of Concurrency requests in flight.
type Limit struct {
	// Per is what the bucket is counted for: api_key, user, endpoint (also spelled model)
	// or ip.
	Per         string `yaml:"per"`
	Requests    int64  `yaml:"requests"`
	Tokens      int64  `yaml:"tokens"`
	Concurrency int64  `yaml:"concurrency"`
	// USD is a spend budget in US dollars per Window (decimals allowed): the bucket
	// counts the cost of the requests, in nano-dollars inside, so that both stores
	// count it exactly.
	USD float64 `yaml:"usd"`
	// Window is second, minute, hour, day, week or month (30 days): Requests, Tokens
	// or USD refill per Window.
	Window string `yaml:"window"`
	// Burst is the bucket's capacity, in the limit's unit (dollars for USD, where it
	// may have decimals; a whole number otherwise); zero means the per-window amount.
	Burst float64 `yaml:"burst"`

	// period is the window's length when an MLflow renewal_period gives one the
	// window names do not (month, 5 minutes); Window then only names it.
	period time.Duration
}

// windowLength is the length of the limit's window.
func (l *Limit) windowLength() (time.Duration, bool) {
	if l.period > 0 {
		return l.period, true
	}
	return ParseWindow(l.Window)
}

// MLflowLimit is the limit block of an MLflow AI Gateway endpoint:
// calls per renewal_period, for the whole endpoint unless key names a subject.
type MLflowLimit struct {
	Calls         int64  `yaml:"calls"`
	RenewalPeriod string `yaml:"renewal_period"`
	Key           string `yaml:"key"`
}

// FieldError is one invalid configuration key.
type FieldError struct{ key, problem string }

// Key is the dotted path of the key relative to the struct validated, such as
// "redis.url" or "limits[2].window".
func (e *FieldError) Key() string { return e.key }

// Problem says what is wrong with the key's value.
func (e *FieldError) Problem() string { return e.problem }

// Error is Key and Problem together.
func (e *FieldError) Error() string { return e.key + ": " + e.problem }

func fieldErr(key, problem string) error { return &FieldError{key: key, problem: problem} }

// prefixed moves every FieldError in err under prefix; it keeps validation messages
// composable the same way the gateway composes them.
func prefixed(prefix string, err error) []error {
	if err == nil {
		return nil
	}
	var out []error
	var fe *FieldError
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, prefixed(prefix, e)...)
		}
		return out
	}
	if errors.As(err, &fe) {
		k := prefix
		if fe.key != "" {
			if fe.key[0] == '[' {
				k += fe.key
			} else {
				k += "." + fe.key
			}
		}
		return []error{&FieldError{key: k, problem: fe.problem}}
	}
	return []error{fieldErr(prefix, err.Error())}
}

// Validate reports every invalid key of the limiter section.
func (c *Config) Validate() error {
	var errs []error
	switch c.Store {
	case "", "memory":
		if c.Redis.Given() {
			errs = append(errs, fieldErr("redis", "is set but store is memory, so no replica would use it: set store: redis, or remove it"))
		}
	case "redis":
		errs = append(errs, prefixed("redis", c.Redis.Validate())...)
	default:
		errs = append(errs, fieldErr("store", "must be memory or redis"))
	}
	switch c.OnRedisError {
	case "", "allow", "deny":
	default:
		errs = append(errs, fieldErr("on_redis_error", "must be allow or deny"))
	}
	if c.Timeout < 0 {
		errs = append(errs, fieldErr("timeout", "must not be negative"))
	} else if c.Timeout > 10*time.Second {
		errs = append(errs, fieldErr("timeout", "must be at most 10s: it is added to every request while Redis is slow"))
	}
	if c.Replicas < 0 {
		errs = append(errs, fieldErr("replicas", "must not be negative"))
	}
	if c.IPv6Prefix < 0 || c.IPv6Prefix > 128 || (c.IPv6Prefix != 0 && c.IPv6Prefix < 32) {
		errs = append(errs, fieldErr("ipv6_prefix", "must be between 32 and 128 (leave it out for 128, each address on its own)"))
	}
	if c.Prefetch != nil && (*c.Prefetch < 0 || *c.Prefetch > 10*time.Second) {
		errs = append(errs, fieldErr("prefetch", "must be between 0s (off) and 10s"))
	}
	if c.ConcurrencyLease < 0 {
		errs = append(errs, fieldErr("concurrency_lease", "must not be negative"))
	} else if c.ConcurrencyLease > 0 && c.ConcurrencyLease < time.Second {
		errs = append(errs, fieldErr("concurrency_lease", "must be at least 1s"))
	} else if c.ConcurrencyLease > 24*time.Hour {
		// Leases are renewed while their requests run: a longer one only keeps a dead
		// replica's slots taken longer (and overflows Redis's millisecond expiries).
		errs = append(errs, fieldErr("concurrency_lease", "must be at most 24h"))
	}
	return errors.Join(errs...)
}

// Given reports whether the redis block names a server (url, addrs or sentinel).
func (r *RedisConfig) Given() bool {
	return r.URL != "" || len(r.Addrs) > 0 || r.Sentinel.Master != "" || len(r.Sentinel.Addrs) > 0
}

// Validate reports every invalid key of the redis block; it is only consulted when
// the store is redis.
func (r *RedisConfig) Validate() error {
	var errs []error
	n := 0
	if r.URL != "" {
		n++
		if opt, err := redis.ParseURL(r.URL); err != nil {
			errs = append(errs, fieldErr("url", "not a redis:// or rediss:// URL: "+redisURLProblem(err)))
		} else if opt.Network == "tcp" && !validHostPort(opt.Addr) {
			// go-redis takes any run of digits as the port: one over 65535 (or 0)
			// fails only at the dial, and the store would stay degraded for good.
			// Not quoted: a password with an unescaped '/' puts part of it there.
			errs = append(errs, fieldErr("url", "has a port out of range: it must be 1 to 65535"))
		}
	}
	if len(r.Addrs) > 0 {
		n++
		for i, a := range r.Addrs {
			if !validHostPort(a) {
				errs = append(errs, fieldErr("addrs["+strconv.Itoa(i)+"]", "must be host:port"))
			}
		}
	}
	if r.Sentinel.Master != "" || len(r.Sentinel.Addrs) > 0 {
		n++
		if r.Sentinel.Master == "" {
			errs = append(errs, fieldErr("sentinel.master", "is required with sentinel.addrs"))
		}
		if len(r.Sentinel.Addrs) == 0 {
			errs = append(errs, fieldErr("sentinel.addrs", "is required with sentinel.master"))
		}
		for i, a := range r.Sentinel.Addrs {
			if !validHostPort(a) {
				errs = append(errs, fieldErr("sentinel.addrs["+strconv.Itoa(i)+"]", "must be host:port"))
			}
		}
	}
	switch {
	case n == 0:
		errs = append(errs, fieldErr("", "needs one of url, addrs (cluster) or sentinel"))
	case n > 1:
		errs = append(errs, fieldErr("", "url, addrs and sentinel exclude each other"))
	}
	if r.DB < 0 {
		errs = append(errs, fieldErr("db", "must not be negative"))
	} else if r.DB > 0 && len(r.Addrs) > 0 {
		errs = append(errs, fieldErr("db", "Redis Cluster has only database 0"))
	}
	if r.PoolSize < 0 {
		errs = append(errs, fieldErr("pool_size", "must not be negative"))
	}
	return errors.Join(errs...)
}

// redisURLProblem says what is wrong with a Redis URL without quoting any of it: the
// message reaches `tollgate validate`, the reload log and the admin API, and the URL
// usually carries the password. url.Parse's error repeats the whole URL, and the
// pieces that it and go-redis quote (a port, a path, a query parameter) hold part of
// the password when the password has an unescaped '/', '?' or '#' (base64 ones do),
// since the URL then splits inside it.
func redisURLProblem(err error) string {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return "does not parse (" + withoutQuoted(ue.Err.Error()) +
			"); a password must percent-encode characters such as / ? # @ %"
	}
	msg := strings.TrimPrefix(err.Error(), "redis: ")
	if strings.HasPrefix(msg, "invalid URL scheme") {
		// Without its scheme, a URL whose password holds a colon parses with the
		// password's start as the scheme: go-redis would quote it.
		return "its scheme is not redis or rediss"
	}
	msg, _, _ = strings.Cut(msg, ": ")
	return msg
}

// withoutQuoted removes the Go-quoted values from an error message, with the space
// before each: `invalid port ":pw" after host` becomes `invalid port after host`.
func withoutQuoted(msg string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(msg, '"')
		if i < 0 {
			b.WriteString(msg)
			return b.String()
		}
		b.WriteString(strings.TrimSuffix(msg[:i], " "))
		j := i + 1
		for j < len(msg) && msg[j] != '"' {
			if msg[j] == '\\' {
				j++
			}
			j++
		}
		msg = msg[min(j+1, len(msg)):]
	}
}

func validHostPort(a string) bool {
	h, p, err := net.SplitHostPort(a)
	if err != nil || h == "" {
		return false
	}
	n, err := strconv.Atoi(p)
	return err == nil && n > 0 && n < 65536
}

// ParseWindow returns the length of a window name: second, minute, hour, day, week
// (7 days) or month (30 days: a monthly spend budget refills a thirtieth a day).
func ParseWindow(s string) (time.Duration, bool) {
	switch s {
	case "second":
		return time.Second, true
	case "minute":
		return time.Minute, true
	case "hour":
		return time.Hour, true
	case "day":
		return 24 * time.Hour, true
	case "week":
		return 7 * 24 * time.Hour, true
	case "month":
		return 30 * 24 * time.Hour, true
	}
	return 0, false
}

// maxAmount keeps every bucket's arithmetic exact in float64 (Lua's only number type):
// amounts times microseconds per unit stay far below 2^53.
const maxAmount = 1 << 40

// NanoPerUSD is how many of a usd bucket's units make a dollar: buckets count
// nano-dollars, whole numbers, which float64 holds exactly up to maxUSD.
const NanoPerUSD = 1e9

// maxUSD is the largest usd amount or burst, in dollars: 10^15 nano-dollars, below
// 2^53, so every amount is an exact whole number of units in float64.
const maxUSD = 1e6

// Validate reports every invalid key of one limit.
func (l *Limit) Validate() error {
	var errs []error
	if _, ok := parsePer(l.Per); !ok {
		errs = append(errs, fieldErr("per", "must be one of api_key, user, endpoint (or model), ip"))
	}
	set := 0
	for _, f := range [...]struct {
		key string
		v   int64
	}{{"requests", l.Requests}, {"tokens", l.Tokens}, {"concurrency", l.Concurrency}} {
		switch {
		case f.v < 0:
			errs = append(errs, fieldErr(f.key, "must be positive"))
		case f.v > maxAmount:
			errs = append(errs, fieldErr(f.key, "must be at most "+strconv.FormatInt(maxAmount, 10)))
		}
		if f.v != 0 {
			set++
		}
	}
	if l.USD != 0 {
		set++
		if p := dollarsProblem(l.USD); p != "" {
			errs = append(errs, fieldErr("usd", p))
		}
	}
	if set != 1 {
		errs = append(errs, fieldErr("", "needs exactly one of requests, tokens, usd or concurrency"))
	}
	if l.Concurrency != 0 {
		if l.Window != "" {
			errs = append(errs, fieldErr("window", "is not used with concurrency"))
		}
		if l.Burst != 0 {
			errs = append(errs, fieldErr("burst", "is not used with concurrency"))
		}
		return errors.Join(errs...)
	}
	if _, ok := l.windowLength(); !ok {
		if l.Window == "" {
			errs = append(errs, fieldErr("window", "is required: second, minute, hour, day, week or month"))
		} else {
			errs = append(errs, fieldErr("window", "must be one of second, minute, hour, day, week, month"))
		}
	}
	switch {
	case l.USD != 0:
		// In dollars, as usd: decimals are fine.
		if l.Burst != 0 {
			if p := dollarsProblem(l.Burst); p != "" {
				errs = append(errs, fieldErr("burst", p))
			}
		}
	case math.IsNaN(l.Burst) || l.Burst != math.Trunc(l.Burst):
		// A fraction of a request or a token (a burst in dollars belongs with usd).
		errs = append(errs, fieldErr("burst", "must be a whole number, not "+strconv.FormatFloat(l.Burst, 'g', -1, 64)))
	case l.Burst < 0:
		errs = append(errs, fieldErr("burst", "must not be negative"))
	case l.Burst > maxAmount:
		errs = append(errs, fieldErr("burst", "must be at most "+strconv.FormatInt(maxAmount, 10)))
	}
	return errors.Join(errs...)
}

// dollarsProblem is what is wrong with an amount in dollars (a usd limit's amount or
// burst), "" when nothing: it must be finite, more than 0, at least a nano-dollar (the
// buckets' unit) and at most maxUSD. Written so that NaN (.nan in YAML) fails too.
func dollarsProblem(v float64) string {
	switch {
	case !(v > 0) || math.IsInf(v, 1):
		return "must be a finite number of dollars, more than 0"
	case v > maxUSD:
		return "must be at most " + strconv.FormatFloat(maxUSD, 'f', -1, 64) + " (dollars)"
	case NanoUSD(v) < 1:
		return "must be at least 0.000000001 (a nano-dollar, what the buckets count in)"
	}
	return ""
}

// ValidateLimits validates a limits list, keys named limits[i].key, and rejects two
// entries counting the same thing (same per, kind and window), whose buckets would be
// one and the same.
func ValidateLimits(limits []Limit) error {
	var errs []error
	for i := range limits {
		p := "limits[" + strconv.Itoa(i) + "]"
		if err := limits[i].Validate(); err != nil {
			errs = append(errs, prefixed(p, err)...)
			continue
		}
		for j := range i {
			if sameBucket(&limits[i], &limits[j]) {
				errs = append(errs, fieldErr(p, "counts the same as limits["+strconv.Itoa(j)+"] (same per, kind and window)"))
				break
			}
		}
	}
	if len(limits) > MaxLimits {
		errs = append(errs, fieldErr("limits", "at most "+strconv.Itoa(MaxLimits)+" limits apply to one request"))
	}
	return errors.Join(errs...)
}

func sameBucket(a, b *Limit) bool {
	pa, _ := parsePer(a.Per)
	pb, _ := parsePer(b.Per)
	return pa == pb && a.Window == b.Window &&
		(a.Requests != 0) == (b.Requests != 0) &&
		(a.Tokens != 0) == (b.Tokens != 0) &&
		(a.USD != 0) == (b.USD != 0) &&
		(a.Concurrency != 0) == (b.Concurrency != 0)
}

// Validate reports every invalid key of an MLflow limit block.
func (m *MLflowLimit) Validate() error {
	var errs []error
	if m.Calls <= 0 {
		errs = append(errs, fieldErr("calls", "must be positive"))
	} else if m.Calls > maxAmount {
		errs = append(errs, fieldErr("calls", "must be at most "+strconv.FormatInt(maxAmount, 10)))
	}
	if d, _, ok := parseRenewalPeriod(m.RenewalPeriod); !ok {
		errs = append(errs, fieldErr("renewal_period", "must be second, minute, hour, day, month or year (in any case, plural too, or with a count: 5 minutes)"))
	} else if d > maxRenewalPeriod {
		errs = append(errs, fieldErr("renewal_period", "must be at most 10 years"))
	}
	if _, ok := mlflowPer(m.Key); !ok {
		errs = append(errs, fieldErr("key", "must be route or user, or left out (the whole endpoint); api_key, endpoint and ip are taken too"))
	}
	return errors.Join(errs...)
}

// Limit is the equivalent Tollgate limit: Calls requests per RenewalPeriod with a
// burst of Calls, counted for the whole endpoint unless Key names another subject.
// A period no window name holds (month, 5 minutes) keeps its length, and its
// canonical name as the window.
func (m *MLflowLimit) Limit() Limit {
	per, _ := mlflowPer(m.Key)
	d, window, _ := parseRenewalPeriod(m.RenewalPeriod)
	l := Limit{Per: per, Requests: m.Calls, Window: window}
	if _, named := ParseWindow(window); !named {
		l.period = d
	}
	return l
}

// mlflowPer is what an MLflow limit's key counts per: MLflow's client documents
// "route" (the endpoint, as a limit without a key) and "user"; Tollgate's own per
// values are taken too.
func mlflowPer(key string) (string, bool) {
	switch key {
	case "", "route":
		return "endpoint", true
	}
	_, ok := parsePer(key)
	return key, ok
}

// maxRenewalPeriod bounds an MLflow limit's period, so that a bucket's times stay
// exact in Lua's float64 microseconds.
const maxRenewalPeriod = 10 * 360 * 24 * time.Hour

// parseRenewalPeriod reads an MLflow limit's renewal_period as MLflow does (the limits
// library's parse of "calls/renewal_period"): an optional count, then second, minute,
// hour, day, month (30 days) or year (360 days), in any case, with or without a
// plural s. window is its canonical name: the unit alone, lower case, for a count of
// 1 ("Minutes" is minute), else count and unit ("5 minutes").
func parseRenewalPeriod(s string) (d time.Duration, window string, ok bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	unit := strings.TrimSuffix(strings.TrimSpace(s[i:]), "s")
	var u time.Duration
	switch unit {
	case "second", "minute", "hour", "day":
		u, _ = ParseWindow(unit)
	case "month":
		u = 30 * 24 * time.Hour
	case "year":
		u = 12 * 30 * 24 * time.Hour
	default:
		return 0, "", false
	}
	n := int64(1)
	if i > 0 {
		v, err := strconv.ParseInt(s[:i], 10, 64)
		if err != nil || v > int64(maxRenewalPeriod/u) {
			// Too long a period to be taken (and to fit a Duration).
			return maxRenewalPeriod + 1, s, true
		}
		// limits takes a count of 0 as 1.
		n = max(v, 1)
	}
	if n == 1 {
		return u, unit, true
	}
	return time.Duration(n) * u, strconv.FormatInt(n, 10) + " " + unit + "s", true
}
