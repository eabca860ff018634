package router

import (
	"testing"
	"time"
)

func benchEndpoint(b testing.TB) *Endpoint {
	r := New(Options{})
	e := mustEndpoint(b, "chat", canaryConfig(Canary{}))
	r.Apply([]*Endpoint{e})
	setCanary(b, r, e, 2500)
	return e
}

// BenchmarkPlan is the routing decision: hash, bucket lookup, plan fill.
func BenchmarkPlan(b *testing.B) {
	e := benchEndpoint(b)
	key := []byte("user-1234567890")
	now := time.Now()
	var p Plan
	b.ReportAllocs()
	for b.Loop() {
		e.Plan(key, now, &p)
	}
}

// BenchmarkPlanPending is Plan while a change shared through Redis waits for its
// instant: one comparison more.
func BenchmarkPlanPending(b *testing.B) {
	e := benchEndpoint(b)
	key := []byte("user-1234567890")
	now := time.Now()
	pendAt(e, now.Add(time.Second))
	var p Plan
	b.ReportAllocs()
	for b.Loop() {
		e.Plan(key, now, &p)
	}
}

// pendAt gives e a change pending until at, to the weights in force.
func pendAt(e *Endpoint, at time.Time) {
	st := e.st.Load()
	ts := st.tabs.Load()
	st.tabs.Store(&tables{cur: ts.cur, next: ts.cur, at: at.UnixNano()})
}

// BenchmarkPlanRandom is the routing decision without a sticky key.
func BenchmarkPlanRandom(b *testing.B) {
	e := benchEndpoint(b)
	now := time.Now()
	var p Plan
	b.ReportAllocs()
	for b.Loop() {
		e.Plan(nil, now, &p)
	}
}

// BenchmarkPlanParallel is Plan from every core at once.
func BenchmarkPlanParallel(b *testing.B) {
	e := benchEndpoint(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		key := []byte("user-1234567890")
		now := time.Now()
		var p Plan
		for pb.Next() {
			e.Plan(key, now, &p)
		}
	})
}

// BenchmarkObserve records one attempt on the canary route.
func BenchmarkObserve(b *testing.B) {
	e := benchEndpoint(b)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		e.Observe(1, now, 230*time.Millisecond, 40*time.Millisecond, false)
	}
}

// BenchmarkObserveTTFT records a first token of a canary stream with no verdict.
func BenchmarkObserveTTFT(b *testing.B) {
	e := benchEndpoint(b)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		e.ObserveTTFT(1, now, 40*time.Millisecond)
	}
}

// BenchmarkObserveParallel is Observe from every core on one route, the
// contended case.
func BenchmarkObserveParallel(b *testing.B) {
	e := benchEndpoint(b)
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e.Observe(1, now, 230*time.Millisecond, 40*time.Millisecond, false)
		}
	})
}

// BenchmarkRebuildTable is the cost of one weight change.
func BenchmarkRebuildTable(b *testing.B) {
	l := testLayout([]int32{6000, 3500, 500})
	w := make([]int32, 3)
	canaryWeights(l.home, l.byID, 2, 2500, w)
	b.ReportAllocs()
	for b.Loop() {
		_ = buildTable(&l, w)
	}
}
