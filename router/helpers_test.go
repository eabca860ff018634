package router

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testLogger(buf *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

var testBackends = []string{"llama", "llama-v2", "gpt", "a", "b", "c", "d"}

func mustEndpoint(t testing.TB, name string, cfg Config) *Endpoint {
	t.Helper()
	e, err := NewEndpoint(name, cfg, testBackends)
	if err != nil {
		t.Fatalf("NewEndpoint(%s): %v", name, err)
	}
	return e
}

func rate(x float64) *float64 { return &x }

// canaryConfig is stable 95 / canary 5 with the default steps.
func canaryConfig(c Canary) Config {
	c.Backend = "llama-v2"
	return Config{
		Routes: []Route{
			{Backend: "llama", Weight: 95, Variant: "stable"},
			{Backend: "llama-v2", Weight: 5, Variant: "canary"},
		},
		Sticky:    &Sticky{From: StickyHeader, Name: "X-User-ID"},
		Canary:    &c,
		Fallbacks: []string{"gpt"},
	}
}

// userKeys returns n distinct sticky keys.
func userKeys(n int) [][]byte {
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = strconv.AppendInt([]byte("user-"), int64(i), 10)
	}
	return keys
}

// assignments returns the route each key is planned to.
func assignments(e *Endpoint, keys [][]byte) []int {
	out := make([]int, len(keys))
	var p Plan
	for i, k := range keys {
		e.Plan(k, time.Now(), &p)
		out[i] = p.Route
	}
	return out
}

// serveTraffic plans n requests from distinct users and observes each
// attempt on the route it was planned to, as the gateway does: a route at
// weight 0 sees nothing.
func serveTraffic(e *Endpoint, n int, latency time.Duration) {
	var p Plan
	for i := 0; i < n; i++ {
		e.Plan(strconv.AppendInt([]byte("served-"), int64(i), 10), time.Now(), &p)
		e.Observe(p.Route, time.Now(), latency, 0, false)
	}
}

// setCanary moves an applied endpoint's canary to cw buckets as the
// controller would.
func setCanary(t testing.TB, r *Router, e *Endpoint, cw int32) {
	t.Helper()
	st := e.st.Load()
	st.mu.Lock()
	defer st.mu.Unlock()
	c := st.ctl
	c.cw = cw
	r.setLocked(e.name, st, c, evStep, nil, time.Time{})
}

// feed records n canary attempts, the first errs of them failed, each with
// the given latency and TTFT. Their requests arrived at the real clock's now, as
// serveTraffic's are planned: after every instant the fake clocks reach, so they
// count toward the window open when they are fed.
func feed(e *Endpoint, route, n, errs int, latency, ttft time.Duration) {
	arrival := time.Now()
	for i := 0; i < n; i++ {
		e.Observe(route, arrival, latency, ttft, i < errs)
	}
}

func canaryOf(t testing.TB, r *Router, name string) CanarySnapshot {
	t.Helper()
	s, err := r.EndpointSnapshot(name)
	if err != nil {
		t.Fatal(err)
	}
	if s.Canary == nil {
		t.Fatalf("endpoint %s has no canary in its snapshot", name)
	}
	return *s.Canary
}

var bg = context.Background()

// overrideEnd is a way to end an operator's weights override: ClearWeights, at once
// or after a reload with new canary settings, which keeps the override. end ends the
// override of endpoint name, live now and built from cfg, and returns the endpoint
// live after it.
type overrideEnd struct {
	name string
	end  func(t *testing.T, r *Router, live *Endpoint, cfg Config) *Endpoint
}

var overrideEnds = []overrideEnd{
	{"ClearWeights", func(t *testing.T, r *Router, live *Endpoint, _ Config) *Endpoint {
		t.Helper()
		clearWeights(t, r, live.Name())
		return live
	}},
	{"ClearWeights after a reload with new canary settings", func(t *testing.T, r *Router, live *Endpoint, cfg Config) *Endpoint {
		t.Helper()
		before, _ := r.EndpointSnapshot(live.Name())
		c := *cfg.Canary
		c.MaxP99 += time.Second
		cfg.Canary = &c
		e := mustEndpoint(t, live.Name(), cfg)
		r.Apply([]*Endpoint{e})
		if after, _ := r.EndpointSnapshot(live.Name()); after.Override != before.Override ||
			!slices.Equal(routeWeights(after), routeWeights(before)) {
			t.Fatalf("a reload keeping the routes changed the override: %v %v before, %v %v after",
				before.Override, routeWeights(before), after.Override, routeWeights(after))
		}
		clearWeights(t, r, live.Name())
		return e
	}},
}

func clearWeights(t *testing.T, r *Router, name string) {
	t.Helper()
	if _, err := r.ClearWeights(bg, name); err != nil {
		t.Fatal(err)
	}
}

func routeWeights(s EndpointSnapshot) []float64 {
	w := make([]float64, len(s.Routes))
	for i, r := range s.Routes {
		w[i] = r.Weight
	}
	return w
}
