package router

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

const stickyUsers = 100_000

func TestStickySameVariantEveryCallAndReplica(t *testing.T) {
	t.Parallel()
	keys := userKeys(stickyUsers)
	cfg := canaryConfig(Canary{})
	// Two routers stand for two replicas that share nothing but the config.
	r1, r2 := New(Options{}), New(Options{})
	e1, e2 := mustEndpoint(t, "chat", cfg), mustEndpoint(t, "chat", cfg)
	r1.Apply([]*Endpoint{e1})
	r2.Apply([]*Endpoint{e2})
	for _, cw := range []int32{500, 1000, 2500, 5000} {
		setCanary(t, r1, e1, cw)
		setCanary(t, r2, e2, cw)
		a1, again, a2 := assignments(e1, keys), assignments(e1, keys), assignments(e2, keys)
		for i := range keys {
			if a1[i] != again[i] || a1[i] != a2[i] {
				t.Fatalf("canary %d: user %s got routes %d, %d (again) and %d (other replica)", cw, keys[i], a1[i], again[i], a2[i])
			}
		}
	}
}

func TestStickySaltedByEndpoint(t *testing.T) {
	keys := userKeys(10_000)
	cfg := Config{Routes: []Route{{Backend: "a", Weight: 50}, {Backend: "b", Weight: 50}}}
	a, b := assignments(mustEndpoint(t, "chat", cfg), keys), assignments(mustEndpoint(t, "embed", cfg), keys)
	same := 0
	for i := range a {
		if a[i] == b[i] {
			same++
		}
	}
	// Independent 50/50 splits agree for about half the users; the same
	// split would agree for all.
	if same < 4500 || same > 5500 {
		t.Fatalf("%d of 10000 users on the same route on two endpoints, want about 5000", same)
	}
}

func TestStickySharesMatchWeights(t *testing.T) {
	t.Parallel()
	keys := userKeys(stickyUsers)
	tests := []struct {
		name    string
		weights []int
	}{
		{"95/5", []int{95, 5}},
		{"50/50", []int{50, 50}},
		{"60/30/10", []int{60, 30, 10}},
		{"1/99", []int{1, 99}},
		{"25/25/25/25", []int{25, 25, 25, 25}},
	}
	names := []string{"a", "b", "c", "d"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg Config
			for i, w := range tt.weights {
				cfg.Routes = append(cfg.Routes, Route{Backend: names[i], Weight: w})
			}
			e := mustEndpoint(t, "chat", cfg)
			count := make([]int, len(tt.weights))
			for _, r := range assignments(e, keys) {
				count[r]++
			}
			for i, w := range tt.weights {
				share := float64(count[i]) * 100 / stickyUsers
				if math.Abs(share-float64(w)) > 0.5 {
					t.Errorf("route %s: %.2f %% of users, want %d %% ± 0.5", names[i], share, w)
				}
			}
		})
	}
}

func TestStickyRandomSharesWithoutKey(t *testing.T) {
	e := mustEndpoint(t, "chat", Config{Routes: []Route{{Backend: "a", Weight: 70}, {Backend: "b", Weight: 30}}})
	var p Plan
	count := [2]int{}
	for range stickyUsers {
		e.Plan(nil, time.Now(), &p)
		if p.Sticky {
			t.Fatal("Plan without a key says Sticky")
		}
		count[p.Route]++
	}
	if share := float64(count[0]) * 100 / stickyUsers; math.Abs(share-70) > 1 {
		t.Fatalf("route a: %.2f %% without a key, want 70 ± 1", share)
	}
}

// moves returns, for each user whose route changed, from → to counts.
func moves(before, after []int) map[[2]int]int {
	m := map[[2]int]int{}
	for i := range before {
		if before[i] != after[i] {
			m[[2]int{before[i], after[i]}]++
		}
	}
	return m
}

func TestStickyCanaryStepsOnlyMoveUsersOntoTheCanary(t *testing.T) {
	t.Parallel()
	keys := userKeys(stickyUsers)
	tests := []struct {
		name   string
		cfg    Config
		canary int
	}{
		{"two routes", canaryConfig(Canary{}), 1},
		{"three routes", Config{
			Routes: []Route{{Backend: "a", Weight: 60}, {Backend: "b", Weight: 35}, {Backend: "c", Weight: 5}},
			Canary: &Canary{Backend: "c"},
		}, 2},
		{"canary first, starting at 0", Config{
			Routes: []Route{{Backend: "c", Weight: 0}, {Backend: "a", Weight: 70}, {Backend: "b", Weight: 30}},
			Canary: &Canary{Backend: "c"},
		}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New(Options{})
			e := mustEndpoint(t, "chat", tt.cfg)
			r.Apply([]*Endpoint{e})
			setCanary(t, r, e, 500)
			prev := assignments(e, keys)
			for _, step := range []int32{1000, 2500, 5000, 7500} {
				setCanary(t, r, e, step)
				cur := assignments(e, keys)
				for mv, n := range moves(prev, cur) {
					if mv[1] != tt.canary {
						t.Fatalf("step to %d %%: %d users moved from route %d to %d, not onto the canary", step/100, n, mv[0], mv[1])
					}
				}
				onCanary := 0
				for _, x := range cur {
					if x == tt.canary {
						onCanary++
					}
				}
				if share := float64(onCanary) * 100 / stickyUsers; math.Abs(share-float64(step)/100) > 0.5 {
					t.Errorf("step to %d %%: %.2f %% of users on the canary", step/100, share)
				}
				prev = cur
			}
			// Rolling back and resuming only moves users off and back on.
			for _, step := range []int32{2500, 0, 300, 500} {
				setCanary(t, r, e, step)
				cur := assignments(e, keys)
				for mv, n := range moves(prev, cur) {
					if mv[0] != tt.canary && mv[1] != tt.canary {
						t.Fatalf("canary to %d: %d users moved between non-canary routes %d and %d", step, n, mv[0], mv[1])
					}
				}
				prev = cur
			}
		})
	}
}

// TestLayoutCanaryChainIsMonotone checks every canary weight in small
// increments on the bucket table itself: raising the canary never takes a
// bucket away from it, and the other routes never trade buckets.
func TestLayoutCanaryChainIsMonotone(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		home   []int32
		canary int
	}{
		{"stable and canary", []int32{9500, 500}, 1},
		{"three rest routes", []int32{4000, 500, 3500, 2000}, 1},
		{"canary at 0", []int32{0, 6000, 3000, 1000}, 0},
		{"rest route at 0", []int32{5000, 0, 4000, 1000}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := testLayout(tt.home)
			w := make([]int32, len(tt.home))
			var prev, cur [Buckets]uint8
			canaryWeights(tt.home, l.byID, tt.canary, 0, w)
			l.assign(w, &prev)
			for cw := int32(37); cw <= Buckets; cw += 37 {
				canaryWeights(tt.home, l.byID, tt.canary, cw, w)
				var sum int32
				for _, x := range w {
					sum += x
				}
				if sum != Buckets || w[tt.canary] != cw {
					t.Fatalf("canary %d: weights %v", cw, w)
				}
				l.assign(w, &cur)
				count := make([]int32, len(w))
				for b := range cur {
					count[cur[b]]++
					if prev[b] != cur[b] && int(cur[b]) != tt.canary {
						t.Fatalf("canary %d: bucket %d moved from route %d to %d", cw, b, prev[b], cur[b])
					}
				}
				for i := range w {
					if count[i] != w[i] {
						t.Fatalf("canary %d: route %d has %d buckets, want %d", cw, i, count[i], w[i])
					}
					// Every other route keeps its configured proportion
					// within a bucket or two.
					if i != tt.canary && tt.home[i] > 0 {
						want := float64(Buckets-cw) * float64(tt.home[i]) / float64(Buckets-tt.home[tt.canary])
						if math.Abs(float64(w[i])-want) > 1.5 {
							t.Fatalf("canary %d: route %d has weight %d, want about %.1f", cw, i, w[i], want)
						}
					}
				}
				prev = cur
			}
		})
	}
}

func TestStickyMultiRouteOverride(t *testing.T) {
	t.Parallel()
	keys := userKeys(stickyUsers)
	cfg := Config{
		Routes: []Route{{Backend: "a", Weight: 40}, {Backend: "b", Weight: 30}, {Backend: "c", Weight: 20}, {Backend: "d", Weight: 10}},
		Sticky: &Sticky{From: StickyUser},
	}
	r := New(Options{})
	e := mustEndpoint(t, "chat", cfg)
	r.Apply([]*Endpoint{e})
	steps := []struct {
		name    string
		weights map[string]int
	}{
		{"c takes from a", map[string]int{"a": 30, "b": 30, "c": 30, "d": 10}},
		{"c takes from a and d", map[string]int{"a": 25, "b": 30, "c": 40, "d": 5}},
		{"a gets some back from c", map[string]int{"a": 35, "b": 30, "c": 30, "d": 5}},
		{"b and d give to c", map[string]int{"a": 35, "b": 20, "c": 45, "d": 0}},
		{"back to the config", map[string]int{"a": 40, "b": 30, "c": 20, "d": 10}},
	}
	names := []string{"a", "b", "c", "d"}
	prev := assignments(e, keys)
	prevW := map[string]int{"a": 40, "b": 30, "c": 20, "d": 10}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			snap, err := r.SetWeights(bg, "chat", s.weights)
			if err != nil {
				t.Fatal(err)
			}
			if !snap.Override || snap.Note == "" {
				t.Fatalf("snapshot does not say the weights are an override: %+v", snap)
			}
			cur := assignments(e, keys)
			count := make([]int, 4)
			for _, x := range cur {
				count[x]++
			}
			for i, n := range names {
				if share := float64(count[i]) * 100 / stickyUsers; math.Abs(share-float64(s.weights[n])) > 0.5 {
					t.Errorf("route %s: %.2f %% of users, want %d", n, share, s.weights[n])
				}
			}
			for mv, cnt := range moves(prev, cur) {
				from, to := names[mv[0]], names[mv[1]]
				if s.weights[from] >= prevW[from] || s.weights[to] <= prevW[to] {
					t.Errorf("%d users moved from %s (%d→%d) to %s (%d→%d): only losers may give to gainers",
						cnt, from, prevW[from], s.weights[from], to, prevW[to], s.weights[to])
				}
			}
			prev, prevW = cur, s.weights
		})
	}
}

// TestLayoutSingleGainerProperty checks random weight changes in which at
// most one route, g, sits above its configured weight, before and after:
// every bucket that moves goes between g and a route whose own weight moved
// the same way (it lost to g or gained from g); the other routes never
// trade with each other.
func TestLayoutSingleGainerProperty(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 2; n <= 6; n++ {
		home := randomWeights(rng, n)
		l := testLayout(home)
		for range 60 {
			g := rng.IntN(n)
			a, b := singleGainer(rng, home, g), singleGainer(rng, home, g)
			var ta, tb [Buckets]uint8
			l.assign(a, &ta)
			l.assign(b, &tb)
			for x := range ta {
				i, j := ta[x], tb[x]
				if i == j {
					continue
				}
				if !(int(j) == g && b[i] < a[i]) && !(int(i) == g && b[j] > a[j]) {
					t.Fatalf("home %v: %v → %v moved bucket %d from %d to %d", home, a, b, x, i, j)
				}
			}
		}
	}
}

func randomWeights(rng *rand.Rand, n int) []int32 {
	w := make([]int32, n)
	left := int32(Buckets)
	for i := 0; i < n-1; i++ {
		w[i] = rng.Int32N(left/2 + 1)
		left -= w[i]
	}
	w[n-1] = left
	return w
}

// singleGainer returns weights where only route g may be above home.
func singleGainer(rng *rand.Rand, home []int32, g int) []int32 {
	w := make([]int32, len(home))
	var gain int32
	for i := range home {
		if i == g {
			continue
		}
		w[i] = home[i] - rng.Int32N(home[i]+1)
		gain += home[i] - w[i]
	}
	w[g] = home[g] + gain
	return w
}
