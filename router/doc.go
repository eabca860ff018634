// Package router turns an endpoint and a request's sticky key into a Plan:
// the backend that serves it, then the fallbacks. It owns the endpoint's
// routing config (routes and weights, sticky key, canary, retries,
// fallbacks), the sticky bucket layout, the canary controller and the
// weights and state that replicas share through Redis.
//
// The gateway uses it in three places:
//
//   - Config build: NewEndpoint(name, cfg, backendNames) per endpoint; it
//     validates and reports *FieldError values keyed relative to cfg.
//   - Config swap: Router.Apply(all endpoints) before the new snapshot
//     serves; live weights, canary state and counters carry over for every
//     endpoint whose routes are unchanged. At start, Router.Sync after the
//     first Apply and before listening, so that a new replica routes as
//     the others do (with Redis) from its first request. Router.Run runs
//     for the process's lifetime.
//   - Per request: Endpoint.Plan(key, arrival, &plan), then Endpoint.Observe for
//     every attempt on a route target (Target.Route >= 0), with the same
//     arrival, so the canary's gates see its own attempts only, and each in
//     the window of the weights that routed it.
//
// Plan and Observe take no lock and do not allocate: the live weights are
// an immutable bucket table behind an atomic pointer, rebuilt when weights
// change, with the table a change shared through Redis puts in force at its
// instant (Plan compares the request's arrival with it); counters are atomics. Choosing a replica within a backend and
// skipping an unhealthy one come after the plan, keyed by Target.Backend.
//
// The admin API calls Pause, Resume, Promote, Rollback, SetWeights and
// Snapshot; metrics read Weights and CanaryStates whenever Changes moves.
package router
