package router

import (
	"slices"
	"time"
)

// overrideNote is what an override's snapshot says about its lifetime.
const overrideNote = "runtime override: lasts until DELETE on /admin/endpoints/{name}/weights, a canary resume or promote, " +
	"across reloads that keep the endpoint's routes (without Redis, until a restart)"

// EndpointSnapshot is an endpoint's routing as the admin API shows it.
type EndpointSnapshot struct {
	Name   string          `json:"name"`
	Routes []RouteSnapshot `json:"routes"`
	// Override is true while operator weights replace the computed ones.
	Override bool   `json:"override"`
	Note     string `json:"note,omitempty"`
	// PendingWeights are the weights (variant → percent) of a change shared
	// through Redis that every replica switches to at SwitchAt; until then the
	// routes' weights are those in force. Both are absent while nothing waits.
	PendingWeights map[string]float64 `json:"pending_weights,omitempty"`
	SwitchAt       *time.Time         `json:"switch_at,omitempty"`
	Canary         *CanarySnapshot    `json:"canary,omitempty"`
}

// RouteSnapshot is one route's live weight and counters.
type RouteSnapshot struct {
	Backend string `json:"backend"`
	Variant string `json:"variant"`
	// ConfiguredWeight is the weight in the config, in percent.
	ConfiguredWeight int `json:"configured_weight"`
	// Weight is the live weight in percent.
	Weight float64 `json:"weight"`
	// Requests and Errors count this replica's attempts on the route since
	// its routes were last changed.
	Requests uint64 `json:"requests"`
	Errors   uint64 `json:"errors"`
}

// CanarySnapshot is a canary's state and its current window.
type CanarySnapshot struct {
	Backend string `json:"backend"`
	Variant string `json:"variant"`
	// State is the state last decided; while its weights wait for their
	// instant (EndpointSnapshot.SwitchAt), Weight and Step are those in force.
	State CanaryState `json:"state"`
	// AfterOverride is, while an operator's weights override holds the canary
	// paused, the state that ending the override (ClearWeights) brings back.
	AfterOverride CanaryState `json:"after_override,omitempty"`
	// Weight is the canary's weight in force, in percent.
	Weight float64 `json:"weight"`
	// Step indexes Steps: the highest step at or below Weight, -1 below the
	// first.
	Step  int   `json:"step"`
	Steps []int `json:"steps"`
	// Reason says why the state last changed, such as the gate breached.
	Reason      string    `json:"reason,omitempty"`
	WindowStart time.Time `json:"window_start"`
	// Window is this replica's share of the canary's traffic since
	// WindowStart.
	Window WindowStats `json:"window"`
	// Recent is this replica's share since RecentStart, the last one to
	// two slots of the window, which the gates also judge.
	Recent      WindowStats `json:"recent"`
	RecentStart time.Time   `json:"recent_start"`
	// Cluster and ClusterRecent are every replica's traffic in the window
	// and its recent part as the leader last merged them; only on the
	// leader with Redis.
	Cluster       *WindowStats `json:"cluster_window,omitempty"`
	ClusterRecent *WindowStats `json:"cluster_recent,omitempty"`
	// LocalOnly is true while this replica holds a rollback that the shared
	// state in Redis does not have yet: made while Redis was unavailable, by a
	// gate on this replica's own traffic or by an operator's rollback sent to
	// this replica. It is written to Redis, and the other replicas follow it,
	// once Redis answers again.
	LocalOnly bool `json:"local_only,omitempty"`
}

// Snapshot returns every live endpoint's routing, sorted by name.
func (r *Router) Snapshot() []EndpointSnapshot {
	eps := r.live()
	out := make([]EndpointSnapshot, 0, len(eps))
	for _, e := range eps {
		out = append(out, r.snapshotOf(e))
	}
	return out
}

// EndpointSnapshot returns the routing of endpoint name, or ErrUnknownModel.
func (r *Router) EndpointSnapshot(name string) (EndpointSnapshot, error) {
	e, _, err := r.endpoint(name)
	if err != nil {
		return EndpointSnapshot{}, err
	}
	return r.snapshotOf(e), nil
}

func (r *Router) snapshotOf(e *Endpoint) EndpointSnapshot {
	st := e.st.Load()
	st.mu.Lock()
	defer st.mu.Unlock()
	now := r.now()
	ts := st.tabs.Load()
	t := ts.in(now)
	s := EndpointSnapshot{Name: e.name, Routes: make([]RouteSnapshot, len(e.backend))}
	if ts.pending(now) {
		s.PendingWeights = make(map[string]float64, len(e.variant))
		for i, v := range e.variant {
			s.PendingWeights[v] = ts.next.pct[i]
		}
		at := time.Unix(0, ts.at).UTC()
		s.SwitchAt = &at
	}
	for i := range e.backend {
		s.Routes[i] = RouteSnapshot{
			Backend:          e.backend[i],
			Variant:          e.variant[i],
			ConfiguredWeight: e.cfg.Routes[i].Weight,
			Weight:           t.pct[i],
			Requests:         st.stats[i].requests(),
			Errors:           st.stats[i].errors.Load() + st.stats[i].beforeErrors.Load(),
		}
	}
	if st.ctl.override != nil {
		s.Override = true
		s.Note = overrideNote
	}
	if st.canary >= 0 && st.cfg != nil {
		c := &CanarySnapshot{
			Backend:     e.backend[st.canary],
			Variant:     e.variant[st.canary],
			State:       st.ctl.state,
			Weight:      t.pct[st.canary],
			Step:        st.cfg.stepIndex(t.weights[st.canary]),
			Reason:      st.ctl.reason,
			WindowStart: st.ctl.since,
			LocalOnly:   st.unshared,
		}
		if st.ctl.override != nil {
			c.AfterOverride = st.ctl.prior
		}
		whole, recent, from := st.localWindows(now)
		c.Window, c.Recent, c.RecentStart = whole.summary(), recent.summary(), from
		for _, x := range st.cfg.steps {
			c.Steps = append(c.Steps, int(x)*100/Buckets)
		}
		if st.hasCluster {
			cl, rc := st.cluster, st.clusterRecent
			c.Cluster, c.ClusterRecent = &cl, &rc
		}
		s.Canary = c
	}
	return s
}

// RouteWeight is one route's weight in force, the shape of a
// tollgate_route_weight sample.
type RouteWeight struct {
	Endpoint, Backend, Variant string
	// Weight is in percent.
	Weight float64
}

// Weights returns every live route's weight in force, sorted by endpoint then
// route order, for tollgate_route_weight.
func (r *Router) Weights() []RouteWeight {
	var out []RouteWeight
	now := r.now()
	for _, e := range r.live() {
		t := e.st.Load().tabs.Load().in(now)
		for i := range e.backend {
			out = append(out, RouteWeight{Endpoint: e.name, Backend: e.backend[i], Variant: e.variant[i], Weight: t.pct[i]})
		}
	}
	return out
}

// EndpointCanaryState is one endpoint's canary state, the shape of the
// tollgate_canary_state series.
type EndpointCanaryState struct {
	Endpoint string
	State    CanaryState
}

// CanaryStates returns the canary state in force (that of the weights in force)
// of every live endpoint that has a canary, sorted by endpoint, for
// tollgate_canary_state.
func (r *Router) CanaryStates() []EndpointCanaryState {
	var out []EndpointCanaryState
	now := r.now()
	for _, e := range r.live() {
		st := e.st.Load()
		if st.canary < 0 {
			continue
		}
		out = append(out, EndpointCanaryState{Endpoint: e.name, State: st.tabs.Load().stateIn(now)})
	}
	return slices.Clip(out)
}
