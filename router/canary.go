package router

import (
	"errors"
	"slices"
	"strconv"
	"time"
)

// CanaryState is where an endpoint's canary stands.
type CanaryState uint8

// The canary states, in the order metrics list them.
const (
	// StateNone: the endpoint has no canary.
	StateNone CanaryState = iota
	// StateStepping: the controller raises the weight after each healthy interval.
	StateStepping
	// StatePaused: an operator holds the weight; a breach still rolls back.
	StatePaused
	// StateRolledBack: a gate was breached (or an operator rolled back); the
	// canary is at 0 % until an operator resumes or promotes it.
	StateRolledBack
	// StatePromoted: the canary has all the traffic.
	StatePromoted
	// NumCanaryStates is the number of canary states.
	NumCanaryStates = int(StatePromoted) + 1
)

var stateNames = [NumCanaryStates]string{"none", "stepping", "paused", "rolled_back", "promoted"}

// String is the state's name as metrics and the admin API show it.
func (s CanaryState) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// MarshalText writes the state's name.
func (s CanaryState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func parseState(s string) (CanaryState, bool) {
	for i, n := range stateNames {
		if n == s {
			return CanaryState(i), true
		}
	}
	return 0, false
}

// Errors of the operator operations.
var (
	// ErrUnknownModel says no endpoint has the name a client or operator gave.
	ErrUnknownModel = errors.New("router: unknown model")
	// ErrNoCanary says the endpoint has no canary to operate on.
	ErrNoCanary = errors.New("router: endpoint has no canary")
	// ErrCanaryState says the operation does not apply in the canary's
	// current state, such as pausing a promoted canary.
	ErrCanaryState = errors.New("router: operation does not apply in the canary's state")
	// ErrInvalidWeights says a weights override was rejected.
	ErrInvalidWeights = errors.New("router: invalid weights")
	// ErrUnavailable says the shared state in Redis could not be read or
	// written; the operation was not applied anywhere. Router.Rollback
	// returns it only when other writers kept winning; with Redis down it
	// rolls the canary back on this replica alone.
	ErrUnavailable = errors.New("router: shared state unavailable")
)

// canaryCfg is a Canary with defaults filled in and weights in buckets.
type canaryCfg struct {
	route       int
	order       []uint8 // the endpoint's routes in identity order (identityOrder)
	steps       []int32 // buckets, increasing, last is Buckets
	interval    time.Duration
	slotLen     time.Duration // see slot
	minRequests uint64
	hasMaxErr   bool
	maxErrRate  float64
	maxP99      time.Duration
	maxTTFTP99  time.Duration
	start       int32 // weight a fresh canary starts at
}

func newCanaryCfg(c *Canary, route int, home int32) *canaryCfg {
	cc := &canaryCfg{
		route:       route,
		interval:    c.Interval,
		minRequests: uint64(c.MinRequests),
		maxP99:      c.MaxP99,
		maxTTFTP99:  c.MaxTTFTP99,
	}
	if cc.interval == 0 {
		cc.interval = defaultInterval
	}
	if cc.minRequests == 0 {
		cc.minRequests = defaultMinRequests
	}
	cc.slotLen = min(max(cc.interval/5, time.Second), time.Minute)
	steps := c.Steps
	if len(steps) == 0 {
		steps = defaultSteps[:]
	}
	for _, s := range steps {
		cc.steps = append(cc.steps, int32(s)*Buckets/100)
	}
	if c.MaxErrorRate != nil {
		cc.hasMaxErr = true
		cc.maxErrRate = *c.MaxErrorRate
	}
	// A canary at 0 % sees no traffic and could never earn its first step,
	// so it starts at the first step instead.
	cc.start = home
	if cc.start == 0 {
		cc.start = cc.steps[0]
	}
	return cc
}

// slot is the index of the slot of the window starting at since that now
// falls in. The gates judge two spans: the whole window, which decides a
// step, and the recent one (the previous slot and the current one), so
// that a canary turning bad late in a long interval is not hidden by the
// healthy minutes before it.
func (c *canaryCfg) slot(since, now time.Time) int64 {
	if now.Before(since) {
		return 0
	}
	return int64(now.Sub(since) / c.slotLen)
}

// next is the first step above w, or Buckets.
func (c *canaryCfg) next(w int32) int32 {
	for _, s := range c.steps {
		if s > w {
			return s
		}
	}
	return Buckets
}

// resumeAt is the weight a canary held at w steps on from: w itself, or
// its first step when w is 0, where it would see no traffic and so never
// earn a step (nor breach a gate). A canary drained to 0 % comes back at the
// least traffic its steps give, not at its configured weight: that may be
// well above the first step, and the operator who drained it expects it to
// start over.
func (c *canaryCfg) resumeAt(w int32) int32 {
	if w == 0 {
		return c.steps[0]
	}
	return w
}

// stepOn sets cur stepping on from w (resumeAt), or promoted when w already
// gives the canary all the traffic: the controller never leaves a canary
// stepping at 100 %, where a gate's breach would take every user off it.
func (c *canaryCfg) stepOn(cur *ctlState, w int32) {
	cur.state, cur.cw = StateStepping, c.resumeAt(w)
	if cur.cw >= Buckets {
		cur.state, cur.cw = StatePromoted, Buckets
	}
}

// stepIndex is the index of the highest step at or below w, -1 below the first.
func (c *canaryCfg) stepIndex(w int32) int {
	i := -1
	for j, s := range c.steps {
		if s <= w {
			i = j
		}
	}
	return i
}

// breach names the first gate the window breaks, or "" when it holds them
// all or has too few requests to judge. The TTFT gate counts only streamed
// attempts, so it needs min_requests of those: with mostly non-streamed
// traffic a handful of streams would otherwise make the whole p99.
func (c *canaryCfg) breach(w *window) string {
	if w.requests < c.minRequests {
		return ""
	}
	if c.hasMaxErr {
		if r := w.errorRate(); r > c.maxErrRate {
			return "error rate " + strconv.FormatFloat(r, 'f', 4, 64) + " above " +
				strconv.FormatFloat(c.maxErrRate, 'f', -1, 64) + " (" +
				strconv.FormatUint(w.errors, 10) + " of " + strconv.FormatUint(w.requests, 10) + ")"
		}
	}
	if c.maxP99 > 0 {
		if p := w.lat.quantileFloor(0.99); p > c.maxP99 {
			return "p99 " + p.String() + " or more, above " + c.maxP99.String()
		}
	}
	if c.maxTTFTP99 > 0 && w.ttft.total() >= c.minRequests {
		if p := w.ttft.quantileFloor(0.99); p > c.maxTTFTP99 {
			return "ttft p99 " + p.String() + " or more, above " + c.maxTTFTP99.String()
		}
	}
	return ""
}

// ctlState is the part of an endpoint's routing state that replicas share.
type ctlState struct {
	state CanaryState
	cw    int32 // canary weight in buckets
	// since is when the current window began; a new step, a resume or a
	// rollback starts a new one.
	since time.Time
	// override holds operator weights in buckets until it ends (ClearWeights,
	// a resume); nil means the weights follow the canary (or the config).
	override []int32
	reason   string // why the last change happened, for logs and the admin API
	// prior and priorCW are the state and canary weight an override interrupted
	// (StateNone when no override holds the canary); the end of the override
	// by a reload brings them back.
	prior   CanaryState
	priorCW int32
}

// clone returns a copy of s that shares no slice with it.
func (s *ctlState) clone() ctlState {
	c := *s
	c.override = slices.Clone(s.override)
	return c
}

func (s *ctlState) equal(o *ctlState) bool {
	if s.state != o.state || s.cw != o.cw || !s.since.Equal(o.since) || s.reason != o.reason ||
		s.prior != o.prior || s.priorCW != o.priorCW ||
		(s.override == nil) != (o.override == nil) || len(s.override) != len(o.override) {
		return false
	}
	for i := range s.override {
		if s.override[i] != o.override[i] {
			return false
		}
	}
	return true
}

// Event names, as logged and counted.
const (
	evStep        = "step"
	evPromote     = "promote"
	evRollback    = "rollback"
	evPause       = "pause"
	evResume      = "resume"
	evOverride    = "override"
	evOverrideEnd = "override_ended"
)

// decide is the controller: given the canary's traffic over the whole
// window and over its recent part (since from), it returns the next state
// and the event, or "" for no change.
func decide(c *canaryCfg, cur ctlState, whole, recent *window, from, now time.Time) (ctlState, string) {
	if cur.state != StateStepping && cur.state != StatePaused {
		return cur, ""
	}
	why := c.breach(whole)
	if why == "" && recent.requests < whole.requests {
		if why = c.breach(recent); why != "" {
			why += " over the last " + now.Sub(from).Round(time.Second).String()
		}
	}
	if why != "" {
		next := ctlState{state: StateRolledBack, cw: 0, since: now, reason: why}
		if cur.override != nil {
			// An operator's override holds until it ends: the rollback
			// takes the canary's share away from it, not the operator's
			// weights of the other routes (a route drained stays drained).
			next.override = overrideWithout(cur.override, c.order, c.route)
		}
		return next, evRollback
	}
	if cur.state != StateStepping || now.Sub(cur.since) < c.interval || whole.requests < c.minRequests {
		return cur, ""
	}
	next := ctlState{state: StateStepping, cw: c.next(cur.cw), since: now, reason: "healthy interval"}
	if next.cw >= Buckets {
		next.state = StatePromoted
		return next, evPromote
	}
	return next, evStep
}

// overrideWithout is override with route c's share given to the other routes in
// proportion to their own weights there; nil when they have none (the override gave
// the canary everything), and the configured weights apply again.
func overrideWithout(override []int32, order []uint8, c int) []int32 {
	var rest int32
	for i, w := range override {
		if i != c {
			rest += w
		}
	}
	if rest == 0 {
		return nil
	}
	out := make([]int32, len(override))
	canaryWeights(override, order, c, 0, out)
	return out
}

// The operator operations change cur in place or return an error.

func opPause(c *canaryCfg, cur *ctlState, now time.Time) (string, error) {
	if c == nil {
		return "", ErrNoCanary
	}
	switch cur.state {
	case StatePaused:
		return "", nil
	case StateStepping:
		cur.state, cur.reason = StatePaused, "paused by operator"
		return evPause, nil
	}
	return "", ErrCanaryState
}

func opResume(c *canaryCfg, cur *ctlState, now time.Time) (string, error) {
	if c == nil {
		return "", ErrNoCanary
	}
	switch cur.state {
	case StateStepping:
		return "", nil
	case StatePaused:
		// A weights override may have paused the canary at 0 %.
		c.stepOn(cur, cur.cw)
		cur.override = nil
		cur.since, cur.reason, cur.prior, cur.priorCW = now, "resumed by operator", StateNone, 0
		return evResume, nil
	case StateRolledBack:
		cur.state, cur.cw, cur.override, cur.since, cur.reason = StateStepping, c.resumeAt(0), nil, now, "resumed by operator"
		cur.prior, cur.priorCW = StateNone, 0
		return evResume, nil
	}
	return "", ErrCanaryState
}

// holdForOverride pauses the canary at the weight w an operator's override gives
// it, remembering the state the first override interrupted.
func holdForOverride(cur *ctlState, w int32, now time.Time) {
	if cur.prior == StateNone {
		cur.prior, cur.priorCW = cur.state, cur.cw
	}
	cur.state, cur.cw, cur.since = StatePaused, w, now
}

// endOverride ends an operator's weights override (ClearWeights): the weights
// follow the canary again, and the canary goes back to the state the override
// interrupted. One that was stepping steps on from the override's
// weight, or from its first step if the override held it at 0 %; one that an
// operator had paused, or that was rolled back or promoted, is so again, at the
// weight it had. A canary a gate rolled back during the override stays rolled
// back, keeping the gate's reason and window.
func endOverride(c *canaryCfg, cur *ctlState, now time.Time) {
	const reason = "override ended by operator"
	cur.override = nil
	switch {
	case c == nil:
		cur.reason = reason
	case cur.state == StatePaused:
		switch cur.prior {
		case StatePaused, StateRolledBack, StatePromoted:
			cur.state, cur.cw = cur.prior, cur.priorCW
		default:
			// Stepping, or a state written by a version that kept no prior.
			c.stepOn(cur, cur.cw)
		}
		cur.since, cur.reason = now, reason
	}
	cur.prior, cur.priorCW = StateNone, 0
}

// opPromote gives the canary all the traffic. A canary already promoted is left as it
// is, keeping the reason and window of the promotion (the controller's last healthy
// interval, or the first operator's), as a rollback of a rolled-back canary does.
func opPromote(c *canaryCfg, cur *ctlState, now time.Time) (string, error) {
	if c == nil {
		return "", ErrNoCanary
	}
	if cur.state == StatePromoted && cur.cw == Buckets && cur.override == nil {
		return "", nil
	}
	*cur = ctlState{state: StatePromoted, cw: Buckets, since: now, reason: "promoted by operator"}
	return evPromote, nil
}

// opRollback sends the canary to 0 %. A canary already rolled back is left as it is,
// keeping the reason (the gate that fired) and window of the first rollback. During an
// operator's weights override the rollback keeps the override, as a gate's does: the
// canary's share goes to the other routes by their override weights (a drained route
// stays drained), and the end of the override leaves the canary rolled back.
func opRollback(c *canaryCfg, cur *ctlState, now time.Time) (string, error) {
	if c == nil {
		return "", ErrNoCanary
	}
	if cur.state == StateRolledBack && (cur.override == nil || cur.override[c.route] == 0) {
		return "", nil
	}
	next := ctlState{state: StateRolledBack, cw: 0, since: now, reason: "rolled back by operator"}
	if cur.override != nil {
		next.override = overrideWithout(cur.override, c.order, c.route)
	}
	*cur = next
	return evRollback, nil
}
