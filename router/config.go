package router

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Config is the routing part of one endpoint's configuration. The gateway
// embeds it inline in its endpoint struct, so its keys sit next to the
// endpoint's name and type in YAML.
type Config struct {
	Routes    []Route  `yaml:"routes"`
	Sticky    *Sticky  `yaml:"sticky,omitempty"`
	Canary    *Canary  `yaml:"canary,omitempty"`
	Retries   int      `yaml:"retries"`
	Fallbacks []string `yaml:"fallbacks"`
	// ContextFallbacks are the backends, in order, a request goes on to when a
	// backend answers that it does not fit the model's context window (a larger
	// window's model); the gateway recognises that answer.
	ContextFallbacks []string `yaml:"context_fallbacks"`
}

// Route sends a share of an endpoint's traffic to one backend.
type Route struct {
	Backend string `yaml:"backend"`
	// Weight is the configured share in percent; the weights of an
	// endpoint's routes add up to 100.
	Weight int `yaml:"weight"`
	// Variant labels the route in x-tollgate-variant, metrics and spans;
	// empty means the backend's name.
	Variant string `yaml:"variant"`
}

// Sticky says where the key that keeps a user on one variant comes from.
type Sticky struct {
	From StickyFrom `yaml:"from"`
	// Name is the header to read; only with from: header.
	Name string `yaml:"name"`
}

// StickyFrom names the source of the sticky key.
type StickyFrom string

// The sources a sticky key can come from.
const (
	StickyHeader StickyFrom = "header"  // the request header Sticky.Name
	StickyUser   StickyFrom = "user"    // the body's "safety_identifier", else its "user"
	StickyAPIKey StickyFrom = "api_key" // the authenticated API key's name
)

// Canary steps one route's weight up while it stays healthy and sends it
// back to 0 % on the first breach. Every gate is optional; a gate left out
// is not checked.
type Canary struct {
	// Backend is the canary route's backend; it must be one of the routes.
	Backend string `yaml:"backend"`
	// Steps are the weights, in percent, the canary walks through; they
	// increase and end at 100. Empty means 5, 10, 25, 50, 75, 100.
	Steps []int `yaml:"steps"`
	// Interval is how long each step is watched before the next; 0 means 5m.
	Interval time.Duration `yaml:"interval"`
	// MinRequests is how many canary attempts a window needs before its
	// gates are judged or it earns a step, and how many streamed attempts
	// the TTFT gate needs; 0 means 100.
	MinRequests int64 `yaml:"min_requests"`
	// MaxErrorRate is the highest share (0..1) of the canary's attempts that
	// may fail with a 5xx or a timeout. A pointer because 0 is a real gate:
	// no failure at all.
	MaxErrorRate *float64 `yaml:"max_error_rate,omitempty"`
	// MaxP99 is the highest 99th-percentile latency of the canary's attempts.
	MaxP99 time.Duration `yaml:"max_p99"`
	// MaxTTFTP99 is the highest 99th-percentile time to first token of the
	// canary's streamed attempts.
	MaxTTFTP99 time.Duration `yaml:"max_ttft_p99"`
}

// Limits that keep a plan inside fixed-size tables.
const (
	// MaxRoutes is the most routes an endpoint may have.
	MaxRoutes = 16
	// MaxFallbacks is the most fallbacks an endpoint may have, and the most
	// context fallbacks.
	MaxFallbacks = 7
	// MaxRetries is the highest retries value.
	MaxRetries = 10
)

// defaultSteps are the canary steps when the config names none.
var defaultSteps = [...]int{5, 10, 25, 50, 75, 100}

const defaultInterval = 5 * time.Minute

// defaultMinRequests keeps a window's first few attempts from deciding for
// it: the controller ticks every 500ms and each step starts a new window,
// so with a minimum of one a single early failure would read as a 100 %
// error rate.
const defaultMinRequests = 100

// FieldError is one invalid configuration key.
type FieldError struct{ key, problem string }

// Key is the dotted path of the key relative to the struct validated, such
// as "routes[1].weight" or "canary.steps[2]".
func (e *FieldError) Key() string { return e.key }

// Problem says what is wrong with the key's value.
func (e *FieldError) Problem() string { return e.problem }

// Error is Key and Problem joined by ": ".
func (e *FieldError) Error() string { return e.key + ": " + e.problem }

type fieldErrors []error

func (fe *fieldErrors) add(key, problem string) {
	*fe = append(*fe, &FieldError{key: key, problem: problem})
}

func idx(prefix string, i int) string { return prefix + "[" + strconv.Itoa(i) + "]" }

// Validate reports every problem of c that needs no knowledge of the
// backends; NewEndpoint adds the checks that do. It returns nil or an
// errors.Join of *FieldError values.
func (c *Config) Validate() error {
	var fe fieldErrors
	c.validate(&fe)
	return errors.Join(fe...)
}

func (c *Config) validate(fe *fieldErrors) {
	if len(c.Routes) == 0 {
		fe.add("routes", "needs at least one route")
	}
	if len(c.Routes) > MaxRoutes {
		fe.add("routes", "at most "+strconv.Itoa(MaxRoutes)+" routes")
	}
	sum, badWeight := 0, false
	backends := make(map[string]int, len(c.Routes))
	variants := make(map[string]int, len(c.Routes))
	for i, r := range c.Routes {
		p := idx("routes", i)
		if r.Backend == "" {
			fe.add(p+".backend", "is required")
		} else if j, dup := backends[r.Backend]; dup {
			fe.add(p+".backend", "backend "+strconv.Quote(r.Backend)+" is already routes["+strconv.Itoa(j)+"]")
		} else {
			backends[r.Backend] = i
		}
		if r.Weight < 0 || r.Weight > 100 {
			fe.add(p+".weight", "must be 0..100")
			badWeight = true
		} else {
			sum += r.Weight
		}
		v := r.variant()
		if r.Variant != "" && !validLabel(r.Variant) {
			fe.add(p+".variant", "must be 1..64 letters, digits, '.', '_' or '-'")
		} else if j, dup := variants[v]; dup && v != "" {
			fe.add(p+".variant", "variant "+strconv.Quote(v)+" is already used by routes["+strconv.Itoa(j)+"]")
		} else {
			variants[v] = i
		}
	}
	// A weight refused above is the one problem of the routes' weights: their sum,
	// without it, would be another report of the same mistake.
	if len(c.Routes) > 0 && sum != 100 && !badWeight {
		fe.add("routes", "weights add up to "+strconv.Itoa(sum)+", want 100")
	}
	if c.Sticky != nil {
		c.Sticky.validate(fe)
	}
	if c.Retries < 0 || c.Retries > MaxRetries {
		fe.add("retries", "must be 0.."+strconv.Itoa(MaxRetries))
	}
	validateBackendList(fe, "fallbacks", c.Fallbacks)
	validateBackendList(fe, "context_fallbacks", c.ContextFallbacks)
	if c.Canary != nil {
		c.Canary.validate(fe, c.Routes, backends)
	}
}

// validateBackendList checks a list of backend names under key (fallbacks,
// context_fallbacks): at most MaxFallbacks, none empty or repeated.
func validateBackendList(fe *fieldErrors, key string, names []string) {
	if len(names) > MaxFallbacks {
		fe.add(key, "at most "+strconv.Itoa(MaxFallbacks)+" "+strings.ReplaceAll(key, "_", " "))
	}
	seen := make(map[string]int, len(names))
	for i, f := range names {
		p := idx(key, i)
		if f == "" {
			fe.add(p, "is empty")
		} else if j, dup := seen[f]; dup {
			fe.add(p, "backend "+strconv.Quote(f)+" is already "+key+"["+strconv.Itoa(j)+"]")
		} else {
			seen[f] = i
		}
	}
}

func (s *Sticky) validate(fe *fieldErrors) {
	switch s.From {
	case StickyHeader:
		if s.Name == "" {
			fe.add("sticky.name", "is required with from: header")
		} else if !httpguts.ValidHeaderFieldName(s.Name) {
			fe.add("sticky.name", "is not a valid header name")
		}
	case StickyUser, StickyAPIKey:
		if s.Name != "" {
			fe.add("sticky.name", "only goes with from: header")
		}
	case "":
		fe.add("sticky.from", "is required: header, user or api_key")
	default:
		fe.add("sticky.from", "must be one of header, user, api_key")
	}
}

func (c *Canary) validate(fe *fieldErrors, routes []Route, backends map[string]int) {
	if c.Backend == "" {
		fe.add("canary.backend", "is required")
	} else if i, ok := backends[c.Backend]; !ok {
		fe.add("canary.backend", "must be the backend of one of the routes")
	} else {
		if routes[i].Weight >= 100 {
			fe.add("canary.backend", "the canary route already has all the traffic (weight 100)")
		}
		if len(routes) < 2 {
			fe.add("canary.backend", "a canary needs another route to take traffic from")
		}
	}
	prev := 0
	for i, s := range c.Steps {
		p := idx("canary.steps", i)
		switch {
		case s < 1 || s > 100:
			fe.add(p, "must be 1..100")
		case s <= prev:
			fe.add(p, "must be greater than the step before it")
		}
		if s > prev {
			prev = s
		}
	}
	if len(c.Steps) > 0 && c.Steps[len(c.Steps)-1] != 100 {
		fe.add("canary.steps", "must end at 100")
	}
	if c.Interval < 0 {
		fe.add("canary.interval", "must not be negative")
	}
	if c.MinRequests < 0 {
		fe.add("canary.min_requests", "must not be negative")
	}
	if c.MaxErrorRate != nil && (*c.MaxErrorRate < 0 || *c.MaxErrorRate > 1 || *c.MaxErrorRate != *c.MaxErrorRate) {
		fe.add("canary.max_error_rate", "must be 0..1")
	}
	if c.MaxP99 < 0 {
		fe.add("canary.max_p99", "must not be negative")
	}
	if c.MaxTTFTP99 < 0 {
		fe.add("canary.max_ttft_p99", "must not be negative")
	}
}

func (r *Route) variant() string {
	if r.Variant != "" {
		return r.Variant
	}
	return r.Backend
}

// validLabel keeps variants safe as a header value and a metric label.
func validLabel(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
