package metrics

// RouteWeight is one route's live weight as the router reports it.
type RouteWeight struct {
	Endpoint, Backend, Variant string
	// Weight is the share of traffic in percent, 0..100.
	Weight float64
}

// SetRouteWeights replaces tollgate_route_weight with ws, the complete set of
// routes of every endpoint; series of routes no longer present are removed.
func (m *Metrics) SetRouteWeights(ws []RouteWeight) {
	m.mu.Lock()
	defer m.mu.Unlock()
	next := make(map[[3]string]struct{}, len(ws))
	for _, w := range ws {
		k := [3]string{w.Endpoint, w.Backend, w.Variant}
		next[k] = struct{}{}
		m.routeWeight.WithLabelValues(k[:]...).Set(w.Weight)
	}
	for k := range m.lastWeights {
		if _, ok := next[k]; !ok {
			m.routeWeight.DeleteLabelValues(k[:]...)
		}
	}
	m.lastWeights = next
}

// CanaryState is the canary state of one endpoint, one of CanaryStates.
type CanaryState struct {
	Endpoint, State string
}

// SetCanaryStates replaces tollgate_canary_state with states, the complete
// set of endpoints that have a canary. Each endpoint gets one series per
// entry of CanaryStates, 1 for its current state and 0 for the others, so
// that alerts can match state="rolled_back" == 1 and dashboards can show the
// state as a timeline. A state outside CanaryStates gets a series of its own.
func (m *Metrics) SetCanaryStates(states []CanaryState) {
	m.mu.Lock()
	defer m.mu.Unlock()
	next := make(map[string]string, len(states))
	for _, s := range states {
		next[s.Endpoint] = s.State
		known := false
		for _, name := range CanaryStates {
			v := 0.0
			if name == s.State {
				v, known = 1, true
			}
			m.canaryState.WithLabelValues(s.Endpoint, name).Set(v)
		}
		if !known {
			m.canaryState.WithLabelValues(s.Endpoint, s.State).Set(1)
		}
		if prev, ok := m.lastCanary[s.Endpoint]; ok && prev != s.State && !isCanaryState(prev) {
			m.canaryState.DeleteLabelValues(s.Endpoint, prev)
		}
	}
	for ep, prev := range m.lastCanary {
		if _, ok := next[ep]; ok {
			continue
		}
		for _, name := range CanaryStates {
			m.canaryState.DeleteLabelValues(ep, name)
		}
		if !isCanaryState(prev) {
			m.canaryState.DeleteLabelValues(ep, prev)
		}
	}
	m.lastCanary = next
}

func isCanaryState(s string) bool {
	for _, name := range CanaryStates {
		if name == s {
			return true
		}
	}
	return false
}

// TargetHealth is the health of one backend target. Target is its label value: the
// target's host:port, with its path where another target of the backend shares the
// host:port, never credentials or a query string.
type TargetHealth struct {
	Backend, Target string
	Up              bool
}

// SetBackendsUp replaces tollgate_backend_up with ts, the complete set of
// targets; series of targets no longer present are removed. Two entries with the
// same backend and target are one series, holding the later one's value: each
// target needs a label of its own.
func (m *Metrics) SetBackendsUp(ts []TargetHealth) {
	m.mu.Lock()
	defer m.mu.Unlock()
	next := make(map[[2]string]struct{}, len(ts))
	for _, t := range ts {
		k := [2]string{t.Backend, t.Target}
		next[k] = struct{}{}
		m.backendUp.WithLabelValues(k[:]...).Set(boolValue(t.Up))
	}
	for k := range m.lastUp {
		if _, ok := next[k]; !ok {
			m.backendUp.DeleteLabelValues(k[:]...)
		}
	}
	m.lastUp = next
}

// SetBackendUp updates one target's health, for health checkers that report
// transitions one at a time.
func (m *Metrics) SetBackendUp(backend, target string, up bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastUp[[2]string{backend, target}] = struct{}{}
	m.backendUp.WithLabelValues(backend, target).Set(boolValue(up))
}

// SetLimiterDegraded sets tollgate_limiter_degraded.
func (m *Metrics) SetLimiterDegraded(degraded bool) {
	m.limiterDegraded.Set(boolValue(degraded))
}

// ConfigReloaded counts one configuration reload: result="error" when err is
// not nil, else result="success"; the last one's result is kept in
// tollgate_config_last_reload_successful.
func (m *Metrics) ConfigReloaded(err error) {
	if err != nil {
		m.reloadErr.Inc()
		m.reloadOKGauge.Set(0)
		return
	}
	m.reloadOK.Inc()
	m.reloadOKGauge.Set(1)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
