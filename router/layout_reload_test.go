package router

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
)

// The bucket layout of a reload that changes an endpoint's routes is built
// afresh from the new config, so no layout can promise that exactly the
// users of the routes whose weights changed move: it cannot know which
// route's weight went where. Home buckets follow each route's identity and
// weight (weighted rendezvous hashing, then exact counts), so users move
// mostly between the routes whose weights changed. The bounds below hold for
// that layout with a wide margin; the layout of contiguous ranges in config
// order that it replaced broke each of them by far (its numbers are quoted).

// reloadTargets applies cfg1 then cfg2 to one Router under one endpoint
// name, as a config reload does (gateway/server.go calls Router.Apply), and
// returns each user's backend before and after.
func reloadTargets(t *testing.T, keys [][]byte, cfg1, cfg2 Config) (before, after []string) {
	t.Helper()
	r := New(Options{})
	e1 := mustEndpoint(t, "chat", cfg1)
	r.Apply([]*Endpoint{e1})
	var p Plan
	for _, k := range keys {
		e1.Plan(k, time.Now(), &p)
		before = append(before, p.Targets[0].Name)
	}
	e2 := mustEndpoint(t, "chat", cfg2)
	r.Apply([]*Endpoint{e2})
	for _, k := range keys {
		e2.Plan(k, time.Now(), &p)
		after = append(after, p.Targets[0].Name)
	}
	return before, after
}

// movesByName counts the users who moved, by "from→to".
func movesByName(before, after []string) map[string]int {
	m := map[string]int{}
	for i := range before {
		if before[i] != after[i] {
			m[before[i]+"→"+after[i]]++
		}
	}
	return m
}

// kept is the share of the users on backend before who are still on it after.
func kept(before, after []string, backend string) float64 {
	var had, stayed int
	for i := range before {
		if before[i] == backend {
			had++
			if after[i] == backend {
				stayed++
			}
		}
	}
	return float64(stayed) / float64(had)
}

func TestReloadAddingVariantKeepsOtherUsers(t *testing.T) {
	t.Parallel()
	keys := userKeys(stickyUsers)
	before, after := reloadTargets(t, keys,
		Config{Routes: []Route{{Backend: "a", Weight: 90}, {Backend: "b", Weight: 10}}, Sticky: &Sticky{From: StickyUser}},
		Config{Routes: []Route{{Backend: "a", Weight: 80}, {Backend: "b", Weight: 10}, {Backend: "c", Weight: 10}}, Sticky: &Sticky{From: StickyUser}})
	// c takes its 10 % from a and b alike (b's share of the users among a
	// and b rises from 10 to 11.1 %, so about 1 % of all users go a→b); at
	// most 3 % may move between a and b. The old layout moved 9,908 a→b and
	// all of b's users to c.
	var between int
	for mv, n := range movesByName(before, after) {
		if mv != "a→c" && mv != "b→c" {
			between += n
		}
	}
	if share := float64(between) / stickyUsers; share > 0.03 {
		t.Errorf("adding variant c (10 %% taken from a, b unchanged at 10 %%): %.1f %% of users moved between a and b, want at most 3 %%", share*100)
	}
	// b keeps at least 85 % of its users (about 90 %: c takes a tenth of
	// every route's buckets); the old layout kept none.
	if k := kept(before, after, "b"); k < 0.85 {
		t.Errorf("adding variant c: b kept %.1f %% of its users, want at least 85 %%", k*100)
	}
}

func TestReloadReorderingRoutesMovesNobody(t *testing.T) {
	t.Parallel()
	keys := userKeys(stickyUsers)
	tests := []struct {
		name       string
		cfg1, cfg2 Config
	}{
		{
			"reordered routes",
			Config{Routes: []Route{{Backend: "a", Weight: 90}, {Backend: "b", Weight: 10}}, Sticky: &Sticky{From: StickyUser}},
			Config{Routes: []Route{{Backend: "b", Weight: 10}, {Backend: "a", Weight: 90}}, Sticky: &Sticky{From: StickyUser}},
		},
		{
			"reordered routes with a canary",
			Config{Routes: []Route{{Backend: "c", Weight: 5}, {Backend: "a", Weight: 57}, {Backend: "b", Weight: 38}}, Sticky: &Sticky{From: StickyUser}, Canary: &Canary{Backend: "c"}},
			Config{Routes: []Route{{Backend: "a", Weight: 57}, {Backend: "b", Weight: 38}, {Backend: "c", Weight: 5}}, Sticky: &Sticky{From: StickyUser}, Canary: &Canary{Backend: "c"}},
		},
		{
			"renamed variant",
			Config{Routes: []Route{{Backend: "a", Weight: 50}, {Backend: "b", Weight: 25}, {Backend: "c", Weight: 25}}, Sticky: &Sticky{From: StickyUser}},
			Config{Routes: []Route{{Backend: "a", Weight: 50, Variant: "x"}, {Backend: "b", Weight: 25}, {Backend: "c", Weight: 25}}, Sticky: &Sticky{From: StickyUser}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, after := reloadTargets(t, keys, tt.cfg1, tt.cfg2)
			// Home buckets follow route identities, not positions or
			// variant names; the old layout swapped 20 % of users.
			for mv, n := range movesByName(before, after) {
				t.Errorf("%s (same weights): %d users moved %s", tt.name, n, mv)
			}
		})
	}
}

func TestReloadWeightChangeKeepsUnchangedRoute(t *testing.T) {
	t.Parallel()
	keys := userKeys(stickyUsers)
	before, after := reloadTargets(t, keys,
		Config{Routes: []Route{{Backend: "a", Weight: 40}, {Backend: "b", Weight: 30}, {Backend: "c", Weight: 30}}, Sticky: &Sticky{From: StickyUser}},
		Config{Routes: []Route{{Backend: "a", Weight: 50}, {Backend: "b", Weight: 30}, {Backend: "c", Weight: 20}}, Sticky: &Sticky{From: StickyUser}})
	// Only c→a is needed (10 %). b keeps its share, but c's weaker claims
	// and a's stronger ones change which of b's buckets b wins: it keeps
	// about 91 % of its users, at least 85 % here. Everything other than
	// c→a stays under 8 % of all users (about 6 %); the old layout moved
	// 10,039 c→b and 10,007 b→a (20 %) and kept two thirds of b's users.
	var other int
	for mv, n := range movesByName(before, after) {
		if mv != "c→a" {
			other += n
		}
	}
	if share := float64(other) / stickyUsers; share > 0.08 {
		t.Errorf("a 40→50, b 30→30, c 30→20: %.1f %% of users moved other than c→a, want at most 8 %%", share*100)
	}
	if k := kept(before, after, "b"); k < 0.85 {
		t.Errorf("a 40→50, b 30→30, c 30→20: b kept %.1f %% of its users, want at least 85 %%", k*100)
	}
}

func TestReloadRaisingCanaryMovesOntoIt(t *testing.T) {
	t.Parallel()
	keys := userKeys(stickyUsers)
	before, after := reloadTargets(t, keys,
		Config{Routes: []Route{{Backend: "c", Weight: 5}, {Backend: "a", Weight: 57}, {Backend: "b", Weight: 38}}, Sticky: &Sticky{From: StickyUser}, Canary: &Canary{Backend: "c"}},
		Config{Routes: []Route{{Backend: "c", Weight: 20}, {Backend: "a", Weight: 48}, {Backend: "b", Weight: 32}}, Sticky: &Sticky{From: StickyUser}, Canary: &Canary{Backend: "c"}})
	// a and b keep their proportion, so their claims on each other's
	// buckets do not change; only the exact-count fix-ups around the full
	// routes (tens of buckets) move users between them: at most 0.5 % of
	// all users (about 0.2 %). The old layout moved 5,911 b→a.
	var between int
	for mv, n := range movesByName(before, after) {
		if mv != "a→c" && mv != "b→c" {
			between += n
		}
	}
	if share := float64(between) / stickyUsers; share > 0.005 {
		t.Errorf("canary c 5→20 in the config, a and b giving in proportion: %.2f %% of users moved between a and b, want at most 0.5 %%", share*100)
	}
}

func TestLayoutHomeListsExact(t *testing.T) {
	tests := []struct {
		name    string
		backend []string
		home    []int32
	}{
		{"two routes", []string{"a", "b"}, []int32{9000, 1000}},
		{"one backend twice", []string{"a", "a", "b"}, []int32{5000, 3000, 2000}},
		{"route at 0", []string{"a", "b", "c"}, []int32{0, 9999, 1}},
		{"sixteen routes", sixteen(), sixteenWeights()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLayout(xxhashSeed("chat"), tt.backend, tt.home)
			var seen [Buckets]bool
			for i, h := range tt.home {
				own := l.list[l.first[i]:l.first[i+1]]
				if int32(len(own)) != h {
					t.Fatalf("route %d has %d home buckets, want %d", i, len(own), h)
				}
				for _, b := range own {
					if seen[b] {
						t.Fatalf("bucket %d is home to two routes", b)
					}
					seen[b] = true
				}
			}
		})
	}
}

// TestLayoutIgnoresRouteOrder checks that the table gives every bucket the
// same backend whatever the order of the routes in the config, also when
// routes of equal weight tie in the Sainte-Laguë order of the pool.
func TestLayoutIgnoresRouteOrder(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		backend    []string
		home, live []int32
	}{
		{"at home weights", []string{"a", "b", "c"}, []int32{4000, 4000, 2000}, []int32{4000, 4000, 2000}},
		{"two gainers of equal weight", []string{"a", "b", "c"}, []int32{4000, 4000, 2000}, []int32{4500, 4500, 1000}},
		{"two losers of equal weight", []string{"a", "b", "c"}, []int32{4000, 4000, 2000}, []int32{3500, 3500, 3000}},
		{"one backend twice", []string{"a", "b", "a", "c"}, []int32{3000, 3000, 3000, 1000}, []int32{2000, 4000, 2500, 1500}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := len(tt.home)
			var want, got [Buckets]uint8
			l := newLayout(xxhashSeed("chat"), tt.backend, tt.home)
			l.assign(tt.live, &want)
			// Reverse the routes; routes of one backend keep their
			// relative order, which is what tells them apart.
			rb, rh, rl := make([]string, n), make([]int32, n), make([]int32, n)
			for i := range n {
				rb[n-1-i], rh[n-1-i], rl[n-1-i] = tt.backend[i], tt.home[i], tt.live[i]
			}
			dup := map[string][]int{}
			for i, b := range tt.backend {
				dup[b] = append(dup[b], i)
			}
			for _, idx := range dup {
				for k := range len(idx) / 2 {
					x, y := n-1-idx[k], n-1-idx[len(idx)-1-k]
					rh[x], rh[y] = rh[y], rh[x]
					rl[x], rl[y] = rl[y], rl[x]
				}
			}
			rev := newLayout(xxhashSeed("chat"), rb, rh)
			rev.assign(rl, &got)
			var moved int
			for b := range want {
				if tt.backend[want[b]] != rb[got[b]] || tt.home[want[b]] != rh[got[b]] {
					moved++
				}
			}
			if moved > 0 {
				t.Errorf("reversing the routes moved %d buckets", moved)
			}
		})
	}
}

func sixteen() []string {
	names := make([]string, MaxRoutes)
	for i := range names {
		names[i] = "r" + strconv.Itoa(i)
	}
	return names
}

func sixteenWeights() []int32 {
	w := make([]int32, MaxRoutes)
	for i := range w {
		w[i] = Buckets / MaxRoutes
	}
	w[0] += Buckets - Buckets/MaxRoutes*MaxRoutes
	return w
}

// BenchmarkNewLayout is the config-build cost of the largest endpoint.
func BenchmarkNewLayout(b *testing.B) {
	names, home := sixteen(), sixteenWeights()
	l := newLayout(xxhashSeed("chat"), names, home)
	b.ReportAllocs()
	for b.Loop() {
		homeLists(xxhashSeed("chat"), names, home, l.byID, l.first, l.list)
	}
}

// BenchmarkNewLayoutKept is the layout of an endpoint built again unchanged
// (a reload's second build, or an endpoint a reload left alone).
func BenchmarkNewLayoutKept(b *testing.B) {
	names, home := sixteen(), sixteenWeights()
	_ = newLayout(xxhashSeed("chat"), names, home)
	b.ReportAllocs()
	for b.Loop() {
		_ = newLayout(xxhashSeed("chat"), names, home)
	}
}

// TestLayoutKeptListsAreTheBuiltOnes: an endpoint built again with the same
// seed, backends and weights shares the home lists built first, which are
// those homeLists builds; any difference in what they are a function of
// builds them anew. It runs alone: another test's newLayout could empty the
// package's layoutCache between its two builds.
func TestLayoutKeptListsAreTheBuiltOnes(t *testing.T) {
	names, home := sixteen(), sixteenWeights()
	a := newLayout(xxhashSeed("kept"), names, home)
	b := newLayout(xxhashSeed("kept"), names, home)
	if &a.list[0] != &b.list[0] {
		t.Errorf("the same endpoint built twice built its home lists twice")
	}
	fresh := make([]int16, len(a.list))
	homeLists(xxhashSeed("kept"), names, home, a.byID, a.first, fresh)
	if !slices.Equal(fresh, a.list) {
		t.Fatalf("kept home lists differ from the ones homeLists builds")
	}
	other := slices.Clone(home)
	other[0], other[1] = other[0]+100, other[1]-100
	for _, c := range []layout{
		newLayout(xxhashSeed("kept2"), names, home),
		newLayout(xxhashSeed("kept"), append(slices.Clone(names[:15]), "other"), home),
		newLayout(xxhashSeed("kept"), names, other),
	} {
		if &c.list[0] == &a.list[0] {
			t.Errorf("another endpoint (seed, backends or weights) shares the first one's home lists")
		}
	}
}

// testLayout is the layout of routes on backends r0, r1, … with configured
// weights home.
func testLayout(home []int32) layout {
	names := make([]string, len(home))
	for i := range names {
		names[i] = "r" + strconv.Itoa(i)
	}
	return newLayout(xxhashSeed("chat"), names, home)
}

// xxhashSeed is the sticky hash seed of the endpoint name (see NewEndpoint).
func xxhashSeed(name string) uint64 { return xxhash.Sum64String(name) }
