package router

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// slice is one recorded stretch of canary traffic: n attempts, errs of them
// failed, slow of them at slowLatency, the rest at 200ms; TTFT 50ms unless
// ttft is set.
type slice struct {
	n, errs, slow int
	slowLatency   time.Duration
	ttft          time.Duration
	// after is how long the clock moves before the controller ticks.
	after time.Duration
}

func (s slice) play(e *Endpoint, route int) {
	ttft := s.ttft
	if ttft == 0 {
		ttft = 50 * time.Millisecond
	}
	for i := 0; i < s.n; i++ {
		lat := 200 * time.Millisecond
		if i < s.slow {
			lat = s.slowLatency
		}
		e.Observe(route, time.Now(), lat, ttft, i >= s.n-s.errs)
	}
}

func gatedCanary() Canary {
	return Canary{
		Interval:     time.Minute,
		MinRequests:  100,
		MaxErrorRate: rate(0.01),
		MaxP99:       time.Second,
		MaxTTFTP99:   500 * time.Millisecond,
	}
}

func TestCanaryController(t *testing.T) {
	healthy := slice{n: 200, errs: 1, after: time.Minute}
	tests := []struct {
		name   string
		feed   []slice
		weight []float64 // canary weight after each slice
		state  CanaryState
		reason string
	}{
		{
			name:   "healthy canary walks every step to promoted",
			feed:   []slice{healthy, healthy, healthy, healthy, healthy},
			weight: []float64{10, 25, 50, 75, 100},
			state:  StatePromoted,
		},
		{
			name:   "no step before the interval ends",
			feed:   []slice{{n: 200, after: 59 * time.Second}, {n: 10, after: time.Second}},
			weight: []float64{5, 10},
			state:  StateStepping,
		},
		{
			name:   "error rate breach rolls back within the first interval and stays at 0",
			feed:   []slice{{n: 200, errs: 10, after: 20 * time.Second}, healthy, healthy, healthy},
			weight: []float64{0, 0, 0, 0},
			state:  StateRolledBack,
			reason: "error rate 0.0500 above 0.01",
		},
		{
			name:   "p99 breach rolls back at the first gate",
			feed:   []slice{{n: 200, slow: 5, slowLatency: 2 * time.Second, after: 30 * time.Second}, healthy},
			weight: []float64{0, 0},
			state:  StateRolledBack,
			reason: "p99",
		},
		{
			name:   "TTFT p99 breach rolls back",
			feed:   []slice{healthy, {n: 200, ttft: 900 * time.Millisecond, after: time.Second}},
			weight: []float64{10, 0},
			state:  StateRolledBack,
			reason: "ttft p99",
		},
		{
			name:   "p99 just under the gate holds",
			feed:   []slice{{n: 200, slow: 200, slowLatency: 950 * time.Millisecond, after: time.Minute}},
			weight: []float64{10},
			state:  StateStepping,
		},
		{
			name:   "too few requests: no step, and the window keeps counting",
			feed:   []slice{{n: 60, after: time.Minute}, {n: 30, after: time.Minute}, {n: 10, after: time.Second}},
			weight: []float64{5, 5, 10},
			state:  StateStepping,
		},
		{
			name:   "too few requests to judge a failing canary",
			feed:   []slice{{n: 50, errs: 50, after: 30 * time.Second}},
			weight: []float64{5},
			state:  StateStepping,
		},
		{
			name: "a breach late in the interval is caught by the recent span",
			feed: []slice{{n: 500, after: 12 * time.Second}, {n: 500, after: 12 * time.Second},
				{n: 500, after: 12 * time.Second}, {n: 100, errs: 5, after: 12 * time.Second}},
			weight: []float64{5, 5, 5, 0},
			state:  StateRolledBack,
			reason: "error rate 0.0500 above 0.01 (5 of 100) over the last 12s",
		},
		{
			name: "a slow recent span rolls back",
			feed: []slice{{n: 2500, after: 12 * time.Second}, {n: 2500, after: 12 * time.Second},
				{n: 100, slow: 40, slowLatency: 3 * time.Second, after: 12 * time.Second}},
			weight: []float64{5, 5, 0},
			state:  StateRolledBack,
			reason: "above 1s over the last 12s",
		},
		{
			name:   "breach in a later step",
			feed:   []slice{healthy, healthy, {n: 150, errs: 3, after: 10 * time.Second}},
			weight: []float64{10, 25, 0},
			state:  StateRolledBack,
			reason: "error rate",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			r := New(Options{Now: clock.Now})
			e := mustEndpoint(t, "chat", canaryConfig(gatedCanary()))
			r.Apply([]*Endpoint{e})
			if w := canaryOf(t, r, "chat").Weight; w != 5 {
				t.Fatalf("canary starts at %v %%, want 5", w)
			}
			for i, s := range tt.feed {
				s.play(e, 1)
				clock.Advance(s.after)
				r.tick(bg)
				if c := canaryOf(t, r, "chat"); c.Weight != tt.weight[i] {
					t.Fatalf("after slice %d: canary at %v %% (%s, %s), want %v", i, c.Weight, c.State, c.Reason, tt.weight[i])
				}
			}
			c := canaryOf(t, r, "chat")
			if c.State != tt.state {
				t.Fatalf("state %s, want %s", c.State, tt.state)
			}
			if !strings.Contains(c.Reason, tt.reason) {
				t.Fatalf("reason %q, want it to contain %q", c.Reason, tt.reason)
			}
			if c.State == StateRolledBack {
				for _, route := range assignments(e, userKeys(10_000)) {
					if route == 1 {
						t.Fatal("a user still lands on a rolled-back canary")
					}
				}
			}
		})
	}
}

func TestCanaryOperatorOperations(t *testing.T) {
	type op struct {
		do      string
		feed    *slice // played before the op
		wantErr error
		weight  float64
		state   CanaryState
	}
	healthy := &slice{n: 200, after: time.Minute}
	tests := []struct {
		name string
		ops  []op
	}{
		{"pause holds the weight through healthy intervals", []op{
			{do: "pause", weight: 5, state: StatePaused},
			{do: "tick", feed: healthy, weight: 5, state: StatePaused},
			{do: "tick", feed: healthy, weight: 5, state: StatePaused},
		}},
		{"a breach while paused still rolls back", []op{
			{do: "pause", weight: 5, state: StatePaused},
			{do: "tick", feed: &slice{n: 200, errs: 20, after: time.Second}, weight: 0, state: StateRolledBack},
		}},
		{"resume after pause steps again after a full interval", []op{
			{do: "tick", feed: healthy, weight: 10, state: StateStepping},
			{do: "pause", weight: 10, state: StatePaused},
			{do: "tick", feed: &slice{n: 200, after: 50 * time.Second}, weight: 10, state: StatePaused},
			{do: "resume", weight: 10, state: StateStepping},
			{do: "tick", feed: &slice{n: 200, after: 30 * time.Second}, weight: 10, state: StateStepping},
			{do: "tick", feed: &slice{after: 30 * time.Second}, weight: 25, state: StateStepping},
		}},
		{"promote takes all the traffic", []op{
			{do: "promote", weight: 100, state: StatePromoted},
			{do: "tick", feed: &slice{n: 200, errs: 200, after: time.Minute}, weight: 100, state: StatePromoted},
			{do: "pause", wantErr: ErrCanaryState, weight: 100, state: StatePromoted},
			{do: "resume", wantErr: ErrCanaryState, weight: 100, state: StatePromoted},
			{do: "rollback", weight: 0, state: StateRolledBack},
		}},
		{"rollback holds at 0 until resumed from the first step", []op{
			{do: "tick", feed: healthy, weight: 10, state: StateStepping},
			{do: "rollback", weight: 0, state: StateRolledBack},
			{do: "tick", feed: healthy, weight: 0, state: StateRolledBack},
			{do: "pause", wantErr: ErrCanaryState, weight: 0, state: StateRolledBack},
			{do: "resume", weight: 5, state: StateStepping},
			{do: "tick", feed: healthy, weight: 10, state: StateStepping},
		}},
		{"operations repeat harmlessly", []op{
			{do: "pause", weight: 5, state: StatePaused},
			{do: "pause", weight: 5, state: StatePaused},
			{do: "resume", weight: 5, state: StateStepping},
			{do: "resume", weight: 5, state: StateStepping},
		}},
		{"weights override pauses the canary at its weight", []op{
			{do: "weights 70/30", weight: 30, state: StatePaused},
			{do: "tick", feed: healthy, weight: 30, state: StatePaused},
			{do: "resume", weight: 30, state: StateStepping},
			{do: "tick", feed: healthy, weight: 50, state: StateStepping},
		}},
		{"resume after a 0 % override steps on from the first step", []op{
			{do: "weights 100/0", weight: 0, state: StatePaused},
			{do: "tick", weight: 0, state: StatePaused},
			{do: "resume", weight: 5, state: StateStepping},
			{do: "tick", feed: healthy, weight: 10, state: StateStepping},
		}},
		{"resume after an override leaving the canary out steps on from the first step", []op{
			{do: "weights stable only", weight: 0, state: StatePaused},
			{do: "resume", weight: 5, state: StateStepping},
		}},
		{"a rolled-back canary held at 0 % by an override resumes from the first step", []op{
			{do: "rollback", weight: 0, state: StateRolledBack},
			{do: "weights 100/0", weight: 0, state: StatePaused},
			{do: "resume", weight: 5, state: StateStepping},
			{do: "tick", feed: healthy, weight: 10, state: StateStepping},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			r := New(Options{Now: clock.Now})
			e := mustEndpoint(t, "chat", canaryConfig(gatedCanary()))
			r.Apply([]*Endpoint{e})
			for i, o := range tt.ops {
				if o.feed != nil {
					o.feed.play(e, 1)
					clock.Advance(o.feed.after)
				}
				var err error
				switch o.do {
				case "tick":
					r.tick(bg)
				case "pause":
					_, err = r.Pause(bg, "chat")
				case "resume":
					_, err = r.Resume(bg, "chat")
				case "promote":
					_, err = r.Promote(bg, "chat")
				case "rollback":
					_, err = r.Rollback(bg, "chat")
				case "weights 70/30":
					_, err = r.SetWeights(bg, "chat", map[string]int{"llama": 70, "llama-v2": 30})
				case "weights 100/0":
					_, err = r.SetWeights(bg, "chat", map[string]int{"llama": 100, "llama-v2": 0})
				case "weights stable only":
					_, err = r.SetWeights(bg, "chat", map[string]int{"llama": 100})
				default:
					t.Fatalf("unknown op %q", o.do)
				}
				if !errors.Is(err, o.wantErr) {
					t.Fatalf("op %d (%s): error %v, want %v", i, o.do, err, o.wantErr)
				}
				if c := canaryOf(t, r, "chat"); c.Weight != o.weight || c.State != o.state {
					t.Fatalf("op %d (%s): canary %v %% %s, want %v %% %s", i, o.do, c.Weight, c.State, o.weight, o.state)
				}
			}
		})
	}
}

func TestOperationErrors(t *testing.T) {
	r := New(Options{})
	plain := mustEndpoint(t, "plain", Config{Routes: []Route{{Backend: "a", Weight: 60}, {Backend: "b", Weight: 40}}})
	r.Apply([]*Endpoint{plain, mustEndpoint(t, "chat", canaryConfig(Canary{}))})
	tests := []struct {
		name    string
		do      func() error
		wantErr error
		text    string
	}{
		{"unknown endpoint", func() error { _, err := r.Pause(bg, "nope"); return err }, ErrUnknownModel, ""},
		{"pause without a canary", func() error { _, err := r.Pause(bg, "plain"); return err }, ErrNoCanary, ""},
		{"promote without a canary", func() error { _, err := r.Promote(bg, "plain"); return err }, ErrNoCanary, ""},
		{"weights on unknown endpoint", func() error { _, err := r.SetWeights(bg, "nope", map[string]int{"a": 100}); return err }, ErrUnknownModel, ""},
		{"weights name a backend not routed", func() error {
			_, err := r.SetWeights(bg, "plain", map[string]int{"a": 50, "gpt": 50})
			return err
		}, ErrInvalidWeights, `"gpt" is not a route`},
		{"weights out of range", func() error {
			_, err := r.SetWeights(bg, "plain", map[string]int{"a": 150, "b": -50})
			return err
		}, ErrInvalidWeights, "must be 0..100"},
		{"weights do not add up", func() error {
			_, err := r.SetWeights(bg, "plain", map[string]int{"a": 50, "b": 40})
			return err
		}, ErrInvalidWeights, "add up to 90"},
		{"weights may leave a route out", func() error {
			_, err := r.SetWeights(bg, "plain", map[string]int{"a": 100})
			return err
		}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do()
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if tt.text != "" && !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("error %q, want it to contain %q", err, tt.text)
			}
		})
	}
	if w := r.Weights(); w[len(w)-2].Weight != 100 || w[len(w)-1].Weight != 0 {
		t.Fatalf("plain endpoint weights after override: %+v", w)
	}
}

func TestReloadKeepsOrResetsState(t *testing.T) {
	clock := newFakeClock()
	r := New(Options{Now: clock.Now})
	e := mustEndpoint(t, "chat", canaryConfig(gatedCanary()))
	r.Apply([]*Endpoint{e})
	slice{n: 200, after: time.Minute}.play(e, 1)
	clock.Advance(time.Minute)
	r.tick(bg)
	if w := canaryOf(t, r, "chat").Weight; w != 10 {
		t.Fatalf("canary at %v, want 10", w)
	}

	// Same routes, new gates and fallbacks: weight, state and counters stay.
	cfg := canaryConfig(Canary{Interval: 2 * time.Minute, MinRequests: 10})
	cfg.Fallbacks = nil
	e2 := mustEndpoint(t, "chat", cfg)
	r.Apply([]*Endpoint{e2})
	s, _ := r.EndpointSnapshot("chat")
	if s.Canary.Weight != 10 || s.Canary.State != StateStepping || s.Routes[1].Requests != 200 {
		t.Fatalf("after a reload with the same routes: %+v %+v", s.Canary, s.Routes)
	}
	var p Plan
	e2.Plan([]byte("u"), time.Now(), &p)
	if len(p.Targets) != 1 {
		t.Fatalf("new fallbacks not used: %+v", p.Targets)
	}
	// The new interval applies.
	slice{n: 20}.play(e2, 1)
	clock.Advance(time.Minute)
	r.tick(bg)
	if w := canaryOf(t, r, "chat").Weight; w != 10 {
		t.Fatalf("stepped after 1m with a 2m interval: %v", w)
	}

	// An operator's override holds across reloads that keep the routes, those
	// with new canary settings too; ClearWeights ends it.
	if _, err := r.SetWeights(bg, "chat", map[string]int{"llama": 50, "llama-v2": 50}); err != nil {
		t.Fatal(err)
	}
	r.Apply([]*Endpoint{mustEndpoint(t, "chat", cfg)})
	cfg.Canary.MinRequests = 20
	r.Apply([]*Endpoint{mustEndpoint(t, "chat", cfg)})
	s, _ = r.EndpointSnapshot("chat")
	if !s.Override || s.Canary.State != StatePaused || s.Canary.Weight != 50 || s.Canary.Reason != "weights set by operator" {
		t.Fatalf("after reloads keeping the routes: override %v, canary %+v", s.Override, s.Canary)
	}
	s, _ = r.ClearWeights(bg, "chat")
	if s.Override || s.Canary.State != StateStepping || s.Canary.Weight != 50 || s.Canary.Reason != "override ended by operator" {
		t.Fatalf("after the override ended: override %v, canary %+v", s.Override, s.Canary)
	}
	if s.Routes[0].Weight != 50 {
		t.Fatalf("stable weight %v after the override ended, want 50", s.Routes[0].Weight)
	}

	// Changed routes start over from the config.
	cfg.Routes[0].Weight, cfg.Routes[1].Weight = 90, 10
	r.Apply([]*Endpoint{mustEndpoint(t, "chat", cfg)})
	s, _ = r.EndpointSnapshot("chat")
	if s.Canary.Weight != 10 || s.Routes[1].Requests != 0 {
		t.Fatalf("after a reload with new routes: %+v %+v", s.Canary, s.Routes)
	}

	// A removed endpoint is gone.
	r.Apply(nil)
	if _, err := r.EndpointSnapshot("chat"); !errors.Is(err, ErrUnknownModel) {
		t.Fatalf("removed endpoint: %v", err)
	}
}

func TestOverrideEndAtZeroWeightStepsFromStart(t *testing.T) {
	tests := []struct {
		name    string
		before  func(r *Router) error
		weights map[string]int
	}{
		{"canary at 0 %", nil, map[string]int{"llama": 100, "llama-v2": 0}},
		{"canary left out", nil, map[string]int{"llama": 100}},
		{"canary paused by the override of an override", func(r *Router) error {
			_, err := r.SetWeights(bg, "chat", map[string]int{"llama": 80, "llama-v2": 20})
			return err
		}, map[string]int{"llama": 100, "llama-v2": 0}},
	}
	for _, tt := range tests {
		for _, how := range overrideEnds {
			t.Run(tt.name+", "+how.name, func(t *testing.T) {
				clock := newFakeClock()
				r := New(Options{Now: clock.Now})
				cfg := canaryConfig(gatedCanary())
				live := mustEndpoint(t, "chat", cfg)
				r.Apply([]*Endpoint{live})
				if tt.before != nil {
					if err := tt.before(r); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := r.SetWeights(bg, "chat", tt.weights); err != nil {
					t.Fatal(err)
				}
				e := how.end(t, r, live, cfg)
				s, _ := r.EndpointSnapshot("chat")
				if s.Override || s.Canary.State != StateStepping || s.Canary.Weight != 5 {
					t.Fatalf("after the override ended: override %v, canary %v %% %s, want stepping at 5 %%",
						s.Override, s.Canary.Weight, s.Canary.State)
				}
				// The canary gets its share of real traffic and earns its steps.
				for _, want := range []float64{10, 25} {
					serveTraffic(e, 5000, 100*time.Millisecond)
					clock.Advance(time.Minute)
					r.tick(bg)
					if c := canaryOf(t, r, "chat"); c.Weight != want || c.State != StateStepping {
						t.Fatalf("canary %v %% %s (%s), want stepping at %v %%", c.Weight, c.State, c.Reason, want)
					}
				}
			})
		}
	}
}

// The end of an override brings back the state the override interrupted: a canary an
// operator or a gate stopped is not restarted by it.
func TestOverrideEndRestoresState(t *testing.T) {
	tests := []struct {
		name   string
		before func(r *Router) error
		state  CanaryState
		weight float64
	}{
		{"stepping steps on", nil, StateStepping, 20},
		{"paused stays paused where the operator paused it", func(r *Router) error {
			_, err := r.Pause(bg, "chat")
			return err
		}, StatePaused, 5},
		{"rolled back stays rolled back", func(r *Router) error {
			_, err := r.Rollback(bg, "chat")
			return err
		}, StateRolledBack, 0},
		{"promoted stays promoted", func(r *Router) error {
			_, err := r.Promote(bg, "chat")
			return err
		}, StatePromoted, 100},
	}
	for _, tt := range tests {
		for _, how := range overrideEnds {
			t.Run(tt.name+", "+how.name, func(t *testing.T) {
				clock := newFakeClock()
				r := New(Options{Now: clock.Now})
				cfg := canaryConfig(gatedCanary())
				live := mustEndpoint(t, "chat", cfg)
				r.Apply([]*Endpoint{live})
				if tt.before != nil {
					if err := tt.before(r); err != nil {
						t.Fatal(err)
					}
				}
				for _, w := range []map[string]int{{"llama": 90, "llama-v2": 10}, {"stable": 80, "canary": 20}} {
					if _, err := r.SetWeights(bg, "chat", w); err != nil {
						t.Fatal(err)
					}
					if c := canaryOf(t, r, "chat"); c.State != StatePaused || c.AfterOverride != tt.state {
						t.Fatalf("during the override: %s (after it: %s), want paused (after it: %s)", c.State, c.AfterOverride, tt.state)
					}
				}
				clock.Advance(time.Hour)
				how.end(t, r, live, cfg)
				s, _ := r.EndpointSnapshot("chat")
				if s.Override || s.Canary.State != tt.state || s.Canary.Weight != tt.weight {
					t.Fatalf("after the override ended: override %v, canary %s at %v %% (%s), want %s at %v %%",
						s.Override, s.Canary.State, s.Canary.Weight, s.Canary.Reason, tt.state, tt.weight)
				}
			})
		}
	}
}

// Weights name routes by backend or by variant, not both ways at once.
func TestSetWeightsByVariant(t *testing.T) {
	r := New(Options{})
	r.Apply([]*Endpoint{mustEndpoint(t, "chat", canaryConfig(gatedCanary()))})
	s, err := r.SetWeights(bg, "chat", map[string]int{"stable": 70, "canary": 30})
	if err != nil {
		t.Fatal(err)
	}
	if s.Routes[0].Weight != 70 || s.Routes[1].Weight != 30 {
		t.Fatalf("weights %v / %v, want 70 / 30", s.Routes[0].Weight, s.Routes[1].Weight)
	}
	if _, err := r.SetWeights(bg, "chat", map[string]int{"llama": 70, "canary": 30}); err != nil {
		t.Fatalf("backend and variant of two routes: %v", err)
	}
	_, err = r.SetWeights(bg, "chat", map[string]int{"llama": 70, "stable": 30})
	if !errors.Is(err, ErrInvalidWeights) || !strings.Contains(err.Error(), `"llama" and "stable" name the same route`) {
		t.Fatalf("one route twice: %v", err)
	}
}

func TestTTFTGateNeedsMinRequestsStreams(t *testing.T) {
	tests := []struct {
		name    string
		streams int // streamed attempts with a 900ms first token
		state   CanaryState
	}{
		{"one slow stream among unstreamed attempts holds", 1, StateStepping},
		{"slow streams short of min_requests hold", 99, StateStepping},
		{"min_requests slow streams roll back", 100, StateRolledBack},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			r := New(Options{Now: clock.Now})
			e := mustEndpoint(t, "chat", canaryConfig(gatedCanary())) // min_requests 100, max_ttft_p99 500ms
			r.Apply([]*Endpoint{e})
			feed(e, 1, 300, 0, 200*time.Millisecond, 0)
			feed(e, 1, tt.streams, 0, 900*time.Millisecond, 900*time.Millisecond)
			clock.Advance(10 * time.Second)
			r.tick(bg)
			c := canaryOf(t, r, "chat")
			if c.State != tt.state {
				t.Fatalf("state %s (%q), want %s", c.State, c.Reason, tt.state)
			}
			if tt.state == StateRolledBack && !strings.Contains(c.Reason, "ttft p99") {
				t.Fatalf("reason %q, want the TTFT gate", c.Reason)
			}
		})
	}
}

func TestMinRequests(t *testing.T) {
	// The README's canary without min_requests: 1 % error rate, 1s p99.
	readme := Canary{Interval: 5 * time.Minute, MaxErrorRate: rate(0.01), MaxP99: time.Second}
	explicit := readme
	explicit.MinRequests = 1
	tests := []struct {
		name   string
		canary Canary
		weight float64
		state  CanaryState
	}{
		// 1 failure in 1000 (0.1 %), the failure first and alone in the
		// window when the controller first looks.
		{"by default one early failure neither rolls back nor stops the step", readme, 10, StateStepping},
		{"an explicit min_requests is kept", explicit, 0, StateRolledBack},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			r := New(Options{Now: clock.Now})
			e := mustEndpoint(t, "chat", canaryConfig(tt.canary))
			r.Apply([]*Endpoint{e})
			feed(e, 1, 1, 1, 200*time.Millisecond, 0)
			clock.Advance(500 * time.Millisecond)
			r.tick(bg)
			feed(e, 1, 999, 0, 200*time.Millisecond, 0)
			clock.Advance(5 * time.Minute)
			r.tick(bg)
			if c := canaryOf(t, r, "chat"); c.Weight != tt.weight || c.State != tt.state {
				t.Fatalf("canary %v %% %s (%q), want %v %% %s", c.Weight, c.State, c.Reason, tt.weight, tt.state)
			}
		})
	}

	t.Run("by default a step needs 100 attempts", func(t *testing.T) {
		clock := newFakeClock()
		r := New(Options{Now: clock.Now})
		e := mustEndpoint(t, "chat", canaryConfig(readme))
		r.Apply([]*Endpoint{e})
		feed(e, 1, 99, 0, 200*time.Millisecond, 0)
		clock.Advance(5 * time.Minute)
		r.tick(bg)
		if w := canaryOf(t, r, "chat").Weight; w != 5 {
			t.Fatalf("stepped to %v %% on 99 attempts", w)
		}
		feed(e, 1, 1, 0, 200*time.Millisecond, 0)
		r.tick(bg)
		if w := canaryOf(t, r, "chat").Weight; w != 10 {
			t.Fatalf("canary at %v %% after 100 healthy attempts, want 10", w)
		}
	})
}

func TestEventsLoggedAndCounted(t *testing.T) {
	var logs syncBuffer
	clock := newFakeClock()
	r := New(Options{Now: clock.Now, Logger: testLogger(&logs)})
	e := mustEndpoint(t, "chat", canaryConfig(gatedCanary()))
	r.Apply([]*Endpoint{e})
	before := r.Changes()
	slice{n: 200}.play(e, 1)
	clock.Advance(time.Minute)
	r.tick(bg)
	slice{n: 200, errs: 50}.play(e, 1)
	r.tick(bg)
	if got := r.Changes() - before; got != 2 {
		t.Fatalf("Changes moved by %d, want 2", got)
	}
	out := logs.String()
	for _, want := range []string{
		"level=INFO msg=\"route weights changed\" endpoint=chat event=step weights=\"stable=90 canary=10\"",
		"level=WARN msg=\"route weights changed\" endpoint=chat event=rollback weights=\"stable=100 canary=0\"",
		"canary_state=rolled_back previous_state=stepping reason=\"error rate 0.2500 above 0.01 (50 of 200)\"",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	states := r.CanaryStates()
	if len(states) != 1 || states[0].State != StateRolledBack || states[0].State.String() != "rolled_back" {
		t.Fatalf("CanaryStates: %+v", states)
	}
}

func TestRunDrivenByTicker(t *testing.T) {
	defer goleak.VerifyNone(t)
	clock := newFakeClock()
	ticks := make(chan time.Time)
	stopped := make(chan struct{})
	r := New(Options{
		Now: clock.Now,
		NewTicker: func(time.Duration) (<-chan time.Time, func()) {
			return ticks, func() { close(stopped) }
		},
	})
	e := mustEndpoint(t, "chat", canaryConfig(gatedCanary()))
	r.Apply([]*Endpoint{e})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	for range 3 {
		slice{n: 200}.play(e, 1)
		clock.Advance(time.Minute)
		ticks <- clock.Now()
		// A second tick returns only after the first has been handled.
		ticks <- clock.Now()
	}
	if w := canaryOf(t, r, "chat").Weight; w != 50 {
		t.Fatalf("canary at %v after three ticked intervals, want 50", w)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	<-stopped
}

// Every attempt is under max_p99 but in the same histogram bucket as the gate: no
// breach (the gate compares with the bucket's lower end, not its midpoint).
func TestP99GateNoFalseBreach(t *testing.T) {
	clock := newFakeClock()
	r := New(Options{Now: clock.Now})
	e := mustEndpoint(t, "chat", canaryConfig(Canary{Interval: time.Minute, MinRequests: 100, MaxP99: 990 * time.Millisecond}))
	r.Apply([]*Endpoint{e})
	feed(e, 1, 200, 0, 985*time.Millisecond, 0)
	clock.Advance(time.Minute)
	r.tick(bg)
	if c := canaryOf(t, r, "chat"); c.State != StateStepping || c.Weight != 10 {
		t.Fatalf("every attempt took 985ms under max_p99 990ms: canary %s at %v %% (%s), want stepping at 10 %%", c.State, c.Weight, c.Reason)
	}
}
