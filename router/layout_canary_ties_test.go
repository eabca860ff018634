package router

import (
	"context"
	"fmt"
	"math/rand"
	"sync/atomic"
	"testing"
)

// liveTable returns a copy of the endpoint's live bucket table.
func liveTable(e *Endpoint) [Buckets]uint8 {
	return e.st.Load().tabs.Load().newest().route
}

// stableMoves lists the buckets that moved between two routes neither of
// which is the canary (route c).
func stableMoves(cfg Config, c uint8, prev, cur *[Buckets]uint8) []string {
	var moved []string
	for b := range cur {
		if prev[b] != cur[b] && prev[b] != c && cur[b] != c {
			moved = append(moved, fmt.Sprintf("bucket %d: %s→%s", b, cfg.Routes[prev[b]].Backend, cfg.Routes[cur[b]].Backend))
		}
	}
	return moved
}

// The canary at its configured 40 % is rolled back (0 %), resumed (first
// step, 5 %) and stepped on through the default steps. The stable routes
// have equal weights and are listed in the config in the reverse of their
// identity (backend name) order. README and layout.go promise that raising
// the canary only moves users from the other routes onto it and that the
// other routes never exchange users.
func TestCanaryStepsBelowHomeKeepStableRoutesUsers(t *testing.T) {
	canary := Canary{Backend: "c"}
	cfg := Config{
		Routes: []Route{
			{Backend: "d", Weight: 20},
			{Backend: "b", Weight: 20},
			{Backend: "a", Weight: 20},
			{Backend: "c", Weight: 40},
		},
		Sticky: &Sticky{From: StickyUser},
		Canary: &canary,
	}
	const c = 3
	r := New(Options{})
	e := mustEndpoint(t, "chat", cfg)
	r.Apply([]*Endpoint{e})
	ctx := context.Background()

	if _, err := r.Rollback(ctx, "chat"); err != nil {
		t.Fatalf("Rollback: %v", err)
	}
	prev := liveTable(e)
	if _, err := r.Resume(ctx, "chat"); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if cw := e.st.Load().ctl.cw; cw != 500 {
		t.Fatalf("resumed canary at %d buckets, want 500 (first step)", cw)
	}
	cur := liveTable(e)
	if moved := stableMoves(cfg, c, &prev, &cur); len(moved) > 0 {
		t.Errorf("canary 0 %% → 5 %% (resume after rollback): users moved between stable routes, want only moves onto the canary: %v", moved)
	}

	prevW := int32(500)
	prev = cur
	for _, cw := range []int32{1000, 2500, 5000, 7500} {
		setCanary(t, r, e, cw)
		cur := liveTable(e)
		if moved := stableMoves(cfg, c, &prev, &cur); len(moved) > 0 {
			t.Errorf("canary %d → %d buckets: users moved between stable routes, want only moves onto the canary: %v", prevW, cw, moved)
		}
		prev, prevW = cur, cw
	}
}

// Random endpoints of 2-16 routes (weights 0-100 %), the canary stepping
// 0 → 5 → 10 → 25 → 50 → 75 → 100 %: the other routes must never exchange
// a bucket between two consecutive steps.
func TestCanaryChainRandomEndpoints(t *testing.T) {
	t.Parallel()
	canaryChain(t, func(l *layout, home []int32, c int, cw int32, out []int32) { canaryWeights(home, l.byID, c, cw, out) })
}

// chainTrial is one random endpoint of canaryChain: its routes' backends and
// configured weights, and which route is the canary.
type chainTrial struct {
	backend []string
	home    []int32
	c       int
}

// chainParts is how many parallel subtests share canaryChain's trials: the
// trials are CPU-bound and independent (about 25 s in all under -race).
const chainParts = 8

func canaryChain(t *testing.T, cwf func(l *layout, home []int32, c int, cw int32, out []int32)) {
	// Every trial's endpoint is drawn first, in trial order from one seed, so
	// the same trials are checked however the subtests are scheduled.
	r := rand.New(rand.NewSource(1))
	trials := make([]chainTrial, 300)
	for trial := range trials {
		n := 2 + r.Intn(15)
		home := make([]int32, n)
		left := 100
		for i := 0; i < n-1; i++ {
			x := min(r.Intn(left/(n-i)*2+1), left)
			home[i] = int32(x) * Buckets / 100
			left -= x
		}
		home[n-1] = int32(left) * Buckets / 100
		backend := make([]string, n)
		for i := range backend {
			backend[i] = fmt.Sprintf("b%02d-%d", r.Intn(100), i)
		}
		trials[trial] = chainTrial{backend: backend, home: home, c: r.Intn(n)}
	}
	// The subtests take every chainParts-th trial, so that each gets endpoints
	// of every size, and stop starting trials once five failures are reported
	// among them all.
	var bad atomic.Int32
	for part := range chainParts {
		t.Run(fmt.Sprintf("part %d", part), func(t *testing.T) {
			t.Parallel()
			for trial := part; trial < len(trials) && bad.Load() < 5; trial += chainParts {
				backend, home, c := trials[trial].backend, trials[trial].home, trials[trial].c
				n := len(home)
				lay := newLayout(uint64(trial), backend, home)
				var prev [Buckets]uint8
				prevW := int32(-1)
				for _, cw := range []int32{0, 500, 1000, 2500, 5000, 7500, 10000} {
					w := make([]int32, n)
					cwf(&lay, home, c, cw, w)
					var tb [Buckets]uint8
					lay.assign(w, &tb)
					if prevW >= 0 {
						ex := 0
						for b := range tb {
							if prev[b] != tb[b] && prev[b] != uint8(c) && tb[b] != uint8(c) {
								ex++
							}
						}
						if ex > 0 {
							t.Errorf("routes %v weights %v canary route %d: %d buckets moved between non-canary routes stepping the canary %d → %d", backend, home, c, ex, prevW, cw)
							bad.Add(1)
						}
					}
					prev, prevW = tb, cw
				}
			}
		})
	}
}
