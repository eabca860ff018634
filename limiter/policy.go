package limiter

import (
	"errors"
	"math"
	"strconv"
	"sync"

	"github.com/cespare/xxhash/v2"
)

// MaxLimits is the most limits that apply to one request (one Policy, combined or not).
// It sizes the arrays inside a Ticket, which is what keeps Take allocation-free.
const MaxLimits = 8

type kind uint8

const (
	kindRequests kind = iota
	kindTokens
	kindConcurrency
	// kindUSD is a spend budget: a bucket of nano-dollars, charged and settled as a
	// tokens bucket is, with the request's cost.
	kindUSD
)

// metered reports whether k's buckets are charged an estimate that the settlement
// trues up (tokens, usd) rather than one unit a request.
func (k kind) metered() bool { return k == kindTokens || k == kindUSD }

type subjectKind uint8

const (
	perAPIKey subjectKind = iota
	perUser
	perEndpoint
	perIP
	numSubjectKinds
)

// perNames are the subject kinds' names in bucket ids.
var perNames = [numSubjectKinds]string{perAPIKey: "api_key", perUser: "user", perEndpoint: "endpoint", perIP: "ip"}

func parsePer(s string) (subjectKind, bool) {
	switch s {
	case "api_key":
		return perAPIKey, true
	case "user":
		return perUser, true
	case "endpoint", "model":
		// The endpoint is the model clients name: either word counts in the same
		// buckets, so a config that changes one for the other keeps them.
		return perEndpoint, true
	case "ip":
		return perIP, true
	}
	return 0, false
}

// Subject is who a request counts against, one value per kind of limit. The slices
// are only read during Take and may point into request buffers. An empty value is a
// value like any other: every request without a user shares the one empty-user bucket,
// so leaving a field out never escapes a limit.
type Subject struct {
	APIKey   []byte // the name of the authenticated key, never the secret
	User     []byte
	Endpoint []byte
	IP       []byte
}

func (s *Subject) value(k subjectKind) []byte {
	switch k {
	case perAPIKey:
		return s.APIKey
	case perUser:
		return s.User
	case perEndpoint:
		return s.Endpoint
	default:
		return s.IP
	}
}

// rule is a validated Limit with everything a check needs precomputed.
type rule struct {
	lim   Limit
	scope string
	kind  kind
	per   subjectKind
	// amount is the configured per-window amount (nano-dollars for usd), or the
	// concurrency cap.
	amount int64
	// burst is the bucket's capacity in units (requests, tokens or nano-dollars).
	burst float64
	// interval is the time one unit takes to refill, in nanoseconds.
	interval float64
	// id names the bucket family: scope, per, kind and window. Buckets survive config
	// reloads that keep these, whatever the amounts become, and keep the units they
	// owe, up to the new bucket's capacity (memEntry.at, check.lua's rescale).
	id uint64
	// tagSeed mixed with the subject is the Redis hash tag: the limits of one scope
	// that count the same subject share a Cluster slot, so one script takes them
	// atomically, while different subjects spread over the slots. A key must depend on
	// its bucket alone, which is why the tag cannot be chosen per request.
	tagSeed uint64
	msg     string
}

// Policy is the compiled set of limits that applies to a request. It is built when the
// configuration loads and shared by all requests; it holds no bucket state, so a policy
// rebuilt by a reload keeps counting in the same buckets.
type Policy struct {
	name  string
	rules []rule
	// usd is set when a rule counts cost (kindUSD): only then does a request need a
	// cost estimate (CountsUSD).
	usd bool
	// joined holds the policies Joined made, by the policy joined before this one.
	joined sync.Map // *Policy → *Policy
}

// NewPolicy compiles limits under a scope name (for example "endpoint:chat" or
// "key:team-a"). Buckets are identified by the name and each limit's per, kind and
// window, so two policies with different names never share a bucket.
func NewPolicy(name string, limits []Limit) (*Policy, error) {
	if err := ValidateLimits(limits); err != nil {
		return nil, err
	}
	p := &Policy{name: name, rules: make([]rule, len(limits))}
	scopeHash := xxhash.Sum64String("tollgate/scope\x00" + name)
	for i := range limits {
		l := limits[i]
		r := &p.rules[i]
		r.lim, r.scope = l, name
		r.per, _ = parsePer(l.Per)
		r.tagSeed = mix64(scopeHash, uint64(r.per)+1)
		window, _ := l.windowLength()
		switch {
		case l.Requests > 0:
			r.kind, r.amount = kindRequests, l.Requests
		case l.Tokens > 0:
			r.kind, r.amount = kindTokens, l.Tokens
		case l.USD > 0:
			r.kind, r.amount = kindUSD, NanoUSD(l.USD)
			p.usd = true
		default:
			r.kind, r.amount = kindConcurrency, l.Concurrency
		}
		if r.kind != kindConcurrency {
			r.interval = float64(window) / float64(r.amount)
			r.burst = float64(r.amount)
			switch {
			case l.Burst > 0 && r.kind == kindUSD:
				r.burst = float64(NanoUSD(l.Burst))
			case l.Burst > 0:
				r.burst = l.Burst
			}
		} else {
			r.burst = float64(r.amount)
		}
		r.id = xxhash.Sum64String("tollgate/bucket\x00" + name + "\x00" + perNames[r.per] + "\x00" + kindName(r.kind) + "\x00" + l.Window)
		r.msg = refusalMessage(name, &l, r.kind)
	}
	return p, nil
}

// Combine joins policies into one that applies all their limits at once, all or
// nothing, each limit still counting in its own policy's buckets. The gateway uses it
// when both an endpoint and an API key carry limits.
func Combine(ps ...*Policy) (*Policy, error) {
	var out Policy
	for _, p := range ps {
		if p == nil {
			continue
		}
		if out.name != "" && p.name != "" {
			out.name += "+"
		}
		out.name += p.name
		out.rules = append(out.rules, p.rules...)
		out.usd = out.usd || p.usd
	}
	if len(out.rules) > MaxLimits {
		return nil, errors.New("limiter: combined policy " + strconv.Quote(out.name) + " has " +
			strconv.Itoa(len(out.rules)) + " limits, at most " + strconv.Itoa(MaxLimits) + " apply to one request")
	}
	return &out, nil
}

// Joined is the policy that applies first's limits and p's at once, as Combine(first,
// p) does: first or p itself when the other has none, else their combination, made on
// first use and kept in p, so that every later request gets the same policy without an
// allocation. A gateway with thousands of keys and hundreds of endpoints then holds a
// combined policy only for each key and endpoint that requests actually pair, not for
// every pair its config allows (10,000 keys over 500 endpoints made 5 million, 3 GB,
// built and held by every reload). It fails as Combine does, which CheckCombined tells
// before any request.
func (p *Policy) Joined(first *Policy) (*Policy, error) {
	switch {
	case p.Len() == 0:
		return first, nil
	case first.Len() == 0:
		return p, nil
	}
	if c, ok := p.joined.Load(first); ok {
		return c.(*Policy), nil
	}
	c, err := Combine(first, p)
	if err != nil {
		return nil, err
	}
	// Two requests pairing them at once both combine; one combination is kept, so
	// the pair stays one policy (a refusal Redis vouched for names its policy).
	kept, _ := p.joined.LoadOrStore(first, c)
	return kept.(*Policy), nil
}

// CheckCombined is the error Combine would return for ps, without combining them.
func CheckCombined(ps ...*Policy) error {
	n := 0
	for _, p := range ps {
		n += p.Len()
	}
	if n <= MaxLimits {
		return nil
	}
	_, err := Combine(ps...)
	return err
}

// Name is the policy's scope name, or the joined names of a combined policy.
func (p *Policy) Name() string { return p.name }

// CountsUSD reports whether a limit of the policy is a spend budget (usd), whose
// check needs the request's cost estimate (Amounts.NanoUSD).
func (p *Policy) CountsUSD() bool { return p != nil && p.usd }

// Len is the number of limits in the policy.
func (p *Policy) Len() int {
	if p == nil {
		return 0
	}
	return len(p.rules)
}

func kindName(k kind) string {
	switch k {
	case kindRequests:
		return "requests"
	case kindTokens:
		return "tokens"
	case kindUSD:
		return "usd"
	}
	return "concurrency"
}

func refusalMessage(scope string, l *Limit, k kind) string {
	var b []byte
	b = append(b, "rate limit exceeded: "...)
	switch k {
	case kindConcurrency:
		b = strconv.AppendInt(b, l.Concurrency, 10)
		b = append(b, " concurrent requests"...)
	case kindUSD:
		b = append(b, "a budget of $"...)
		b = AppendDollars(b, l.USD)
		b = append(b, " per "...)
		b = append(b, l.Window...)
	default:
		b = strconv.AppendInt(b, max(l.Requests, l.Tokens), 10)
		b = append(b, ' ')
		b = append(b, kindName(k)...)
		b = append(b, " per "...)
		b = append(b, l.Window...)
	}
	b = append(b, " per "...)
	b = append(b, l.Per...)
	if scope != "" {
		b = append(b, " ("...)
		b = append(b, scope...)
		b = append(b, ')')
	}
	return string(b)
}

// mix64 combines two 64-bit hashes into one with full avalanche (the finalizer of
// MurmurHash3), so bucket keys of different families never line up.
func mix64(a, b uint64) uint64 {
	h := a ^ (b * 0x9e3779b97f4a7c15)
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// locate fills the ticket's bucket identities and costs for subj, a request of
// estTokens and no cost.
func (p *Policy) locate(subj *Subject, estTokens int64, t *Ticket) {
	p.locateAmounts(subj, Amounts{Tokens: estTokens}, t)
}

// locateAmounts fills the ticket's bucket identities and costs for subj, a request
// of the estimates est.
func (p *Policy) locateAmounts(subj *Subject, est Amounts, t *Ticket) {
	var seen uint8
	var sh [numSubjectKinds]uint64
	t.est = Amounts{Tokens: max(est.Tokens, 0), NanoUSD: max(est.NanoUSD, 0)}
	for i := range p.rules {
		r := &p.rules[i]
		bit := uint8(1) << r.per
		if seen&bit == 0 {
			seen |= bit
			sh[r.per] = xxhash.Sum64(subj.value(r.per))
		}
		h := sh[r.per]
		t.bucket[i] = mix64(r.id, h)
		t.tag[i] = mix64(r.tagSeed, h)
		switch r.kind {
		case kindTokens, kindUSD:
			// An estimate above the burst could never fit; charging the whole burst lets
			// the request through once the bucket is full and settlement takes the rest
			// (t.est, also when the usage is unknown: Settle's KeepEstimate).
			c := float64(t.est.of(r.kind))
			t.cost[i] = math.Min(c, r.burst)
		default:
			t.cost[i] = 1
		}
	}
	t.n = uint8(len(p.rules))
}
